"""The grid kind of space (``SweepSpace``): fixed values, grid axes or Optuna-sampled fields,
weights and per-trial resources; one IMP trajectory per grid point (and seed).

A module in ``search_spaces/`` returns one; the launcher applies ``--set`` overrides, and
``validate`` builds the ImpConfig of every grid point, so an invalid space is rejected with the
field named *before* Ray starts. No Ray here: ``ray_lth.tune.sweep.run_grid`` turns the grid into
``tune.grid_search`` (or Optuna's search). The other kinds and their shared protocol: spaces.py.
"""

import itertools
from dataclasses import dataclass, field, replace
from typing import ClassVar, Dict, List, Optional, Tuple

from .config import ImpConfig
from .matching import check_patience
from .resources import ResourceNeed, per_trial, per_trial_needs, per_worker


@dataclass(frozen=True)
class SweepSpace:
    kind: ClassVar[str] = "grid"
    launcher_flags: ClassVar[Tuple[str, ...]] = ("resume", "patience", "workers_per_trial", "gpus_per_worker",
                                                 "cpus_per_worker")

    description: str
    fixed: Dict[str, object]
    grid: Dict[str, list] = field(default_factory=lambda: {"seed": [0, 1, 2]})
    weights: str = "embedded"  # "embedded" (pre-trained here, cached), "required" (--weights) or "none"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    # a data-parallel trial (workers_per_trial > 1 in fixed) reserves almost nothing itself; each of
    # its Ray Train workers holds these
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    # pruned rounds in a row whose seed-mean fails to match before the group stops; None: never,
    # every round runs (the authors' protocol); a paper figure needs >= 2 or None (matching.py)
    patience: Optional[int] = 1
    # Optuna: field -> ("loguniform"|"uniform", low, high) or ("choice", [values]); searched by
    # OptunaSearch for ``num_samples`` trials, maximising ``objective`` (a key every result carries)
    sample: Dict[str, tuple] = field(default_factory=dict)
    num_samples: int = 1
    objective: str = "own_max_matching_sparsity"

    @property
    def seeds_per_group(self) -> int:
        return len(self.grid.get("seed", [self.fixed.get("seed", 0)]))

    @property
    def group_fields(self) -> List[str]:
        """The fields that tell the groups apart (grid axes other than the seed, sampled fields)."""
        return [k for k, v in self.grid.items() if k != "seed" and len(v) > 1] + sorted(self.sample)

    @property
    def workers_per_trial(self) -> int:
        return int(self.fixed.get("workers_per_trial", 1))

    @property
    def model(self) -> str:
        return str(self.fixed.get("model", "resnet20"))

    def needs_pretrained_weights(self) -> bool:
        return self.fixed.get("rewind") != "init"  # θ_0 runs need no θ_p

    def prepare(self, cache_uri: str) -> "SweepSpace":
        return self

    def transfer_plan(self):
        return None

    def trial_resources(self) -> Dict[str, float]:
        if self.workers_per_trial > 1:  # the trial only coordinates; its workers hold the rest (resources.py)
            return per_worker()
        return per_trial(self.cpus_per_trial, self.gpus_per_trial)

    def resource_needs(self) -> List[ResourceNeed]:
        if self.workers_per_trial > 1:
            workers = self.workers_per_trial
            return [ResourceNeed("GPU", workers * self.gpus_per_worker, f"{workers} workers × --gpus-per-worker"),
                    ResourceNeed("CPU", workers * self.cpus_per_worker, f"{workers} workers × --cpus-per-worker")]
        return per_trial_needs(self.cpus_per_trial, self.gpus_per_trial)

    def with_overrides(self, overrides: Dict[str, object]) -> "SweepSpace":
        """``--set`` values: a list becomes a grid axis, anything else a fixed value."""
        fixed, grid = dict(self.fixed), dict(self.grid)
        for key, value in overrides.items():
            fixed.pop(key, None)
            grid.pop(key, None)
            if isinstance(value, list) and key != "milestones":
                grid[key] = value
            else:
                fixed[key] = value
        return replace(self, fixed=fixed, grid=grid)

    def configs(self) -> List[dict]:
        keys = list(self.grid)
        return [{**self.fixed, **dict(zip(keys, values))} for values in itertools.product(*self.grid.values())]

    def validate(self) -> List[ImpConfig]:
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid axis {key!r} must be a non-empty list, got {values!r}")
        if not 0 < self.cpus_per_trial:
            raise ValueError(f"cpus_per_trial must be > 0, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial must be >= 0, got {self.gpus_per_trial}")
        check_patience(self.patience)
        if "workers_per_trial" in self.grid or "workers_per_trial" in self.sample:
            raise ValueError("workers_per_trial is one value for the whole sweep (every trial reserves its workers "
                             "alike): give it as a fixed value, e.g. --workers-per-trial 2")
        if not 0 < self.cpus_per_worker:
            raise ValueError(f"cpus_per_worker must be > 0, got {self.cpus_per_worker}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if self.workers_per_trial > 1 and self.fixed.get("task") == "simclr" and self.gpus_per_worker == 0:
            raise ValueError("task 'simclr' over several workers synchronises BatchNorm over the global batch, which "
                             "torch runs on GPUs only: give --gpus-per-worker")
        if self.sample and any(len(v) > 1 for v in self.grid.values()):
            raise ValueError(f"an Optuna space samples {sorted(self.sample)}: it takes no grid axes, got {sorted(self.grid)}")
        if self.sample and self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        configs = self.configs()
        for key, spec in self.sample.items():  # every bound and choice must make a valid config
            configs += [{**configs[0], key: value} for value in _sample_extremes(key, spec)]
        return [ImpConfig.from_dict(config) for config in configs]


SAMPLE_KINDS = ("loguniform", "uniform", "choice")


def _sample_extremes(key: str, spec) -> list:
    if not isinstance(spec, (tuple, list)) or not spec or spec[0] not in SAMPLE_KINDS:
        raise ValueError(f"sample[{key!r}] must be (kind, ...) with kind in {list(SAMPLE_KINDS)}, got {spec!r}")
    if spec[0] == "choice":
        if len(spec) != 2 or not isinstance(spec[1], (list, tuple)) or not spec[1]:
            raise ValueError(f"sample[{key!r}] = ('choice', [values]) needs a non-empty list, got {spec!r}")
        return list(spec[1])
    if len(spec) != 3 or not spec[1] < spec[2] or (spec[0] == "loguniform" and spec[1] <= 0):
        raise ValueError(f"sample[{key!r}] = ({spec[0]!r}, low, high) needs 0 < low < high for loguniform, "
                         f"low < high for uniform; got {spec!r}")
    return [spec[1], spec[2]]
