"""Every kind of experiment a ``search_spaces/`` module can return, behind one protocol, and the
registry that maps a kind to its space class and its Ray runner.

Kinds: ``grid`` (``SweepSpace``: one IMP trajectory per grid point or Optuna sample),
``transfer`` (``TransferSpace``: upstream IMP, then dependent fine-tunes of its masks) and
``temperature_ablation`` (``TemperatureAblationSpace``: Table 2). A fourth kind is its space
module (the protocol below), its runner under ``ray_lth/tune/`` and one line in ``SPACE_KINDS``.
Both are named by their import paths, imported when used: no Ray here until a sweep starts.
"""

import dataclasses
import importlib
from pathlib import Path
from typing import Callable, ClassVar, Dict, List, NamedTuple, Optional, Protocol, Tuple

from .ablation import TemperatureAblationSpace
from .config import ImpConfig
from .grid_space import SweepSpace
from .registry import Registry
from .resources import ResourceNeed
from .storage import is_uri
from .transfer import TransferPlan, TransferSpace

SPACES_DIR = Path(__file__).resolve().parents[1] / "search_spaces"


class Space(Protocol):
    """What the launcher, the runners and the report use of a space; frozen dataclasses all."""

    kind: ClassVar[str]  # its key in SPACE_KINDS, saved with the experiment
    launcher_flags: ClassVar[Tuple[str, ...]]  # launchers/sweep.py flags it takes beyond the common ones
    description: str
    weights: str  # "embedded" (pre-trained here, cached), "required" (--weights) or "none"
    cpus_per_trial: float
    gpus_per_trial: float

    @property
    def model(self) -> str: ...

    @property
    def seeds_per_group(self) -> int: ...

    def with_overrides(self, overrides: Dict[str, object]) -> "Space":
        """``--set`` values applied."""

    def validate(self) -> List[ImpConfig]:
        """Every trial's configs; raises ValueError naming a bad field (before Ray starts)."""

    def needs_pretrained_weights(self) -> bool:
        """False when every trial starts from θ_0 (rewind=init): then no θ_p is needed."""

    def prepare(self, cache_uri: str) -> "Space":
        """Driver-side work before Ray starts (e.g. the ablation's upstream ticket); ``cache_uri``
        is where every node can read what it writes."""

    def transfer_plan(self) -> Optional[TransferPlan]:
        """The dependent-trial plan of a transfer, None for the other kinds."""

    def trial_resources(self) -> Dict[str, float]:
        """What one trial reserves (``tune.with_resources``)."""

    def resource_needs(self) -> List[ResourceNeed]:
        """What one trial needs in all, its workers included."""


class SpaceKind(NamedTuple):
    space: str  # "module:Class" of the space
    runner: str  # "module:function": runner(space, storage, name, *, resume, verbose, max_concurrent, launched_at)


SPACE_KINDS: Registry[SpaceKind] = Registry("kind of space")
SPACE_KINDS.register("grid")(SpaceKind("ray_lth.grid_space:SweepSpace", "ray_lth.tune.sweep:run_grid"))
SPACE_KINDS.register("transfer")(SpaceKind("ray_lth.transfer:TransferSpace", "ray_lth.tune.sweep:run_transfer"))
SPACE_KINDS.register("temperature_ablation")(SpaceKind("ray_lth.ablation:TemperatureAblationSpace",
                                                       "ray_lth.tune.ablation:run_ablation"))


def _imported(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def space_class(kind: str) -> type:
    return _imported(SPACE_KINDS.get(kind).space)


def runner_of(space: Space) -> Callable:
    return _imported(SPACE_KINDS.get(space.kind).runner)


def space_to_json(space: Space) -> dict:
    return {"kind": space.kind, "space": dataclasses.asdict(space)}


def space_from_json(saved: dict) -> Space:
    return space_class(saved["kind"])(**saved["space"])


def space_names() -> List[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.py") if not p.stem.startswith("_"))


def load_space(name: str) -> Space:
    """The space of ``search_spaces/<name>.py``."""
    if name not in space_names():
        raise ValueError(f"No such search space: {name!r}; choose one of {space_names()} (files in {SPACES_DIR})")
    space = importlib.import_module(f"search_spaces.{name}").space()
    kind = getattr(space, "kind", None)
    if kind not in SPACE_KINDS or type(space) is not space_class(kind):
        raise ValueError(f"search_spaces/{name}.py: space() must return a space of a kind in SPACE_KINDS "
                         f"({', '.join(SPACE_KINDS.names())}), got {type(space).__name__}")
    return space


def resolve_weights(space: Space, weights: Optional[str], cache_dir: Optional[Path]) -> Space:
    """Fill in the ``weights`` field: the user's file, or the embedded θ_p (pre-trained once)."""
    if weights:
        # a URI as given (its options too): every node reads it through the storage layer
        return space.with_overrides({"weights": weights if is_uri(weights) else str(Path(weights).resolve())})
    if space.weights == "required" and space.needs_pretrained_weights():
        raise ValueError(f"this space needs pre-trained weights: pass --weights FILE ({space.description})")
    if space.weights == "embedded":
        from .pretrain import embedded_weights

        return space.with_overrides({"weights": str(embedded_weights(space.model, cache_dir))})
    return space


__all__ = ["SPACE_KINDS", "Space", "SpaceKind", "SweepSpace", "TemperatureAblationSpace", "TransferSpace",
           "load_space", "resolve_weights", "runner_of", "space_from_json", "space_names", "space_to_json"]
