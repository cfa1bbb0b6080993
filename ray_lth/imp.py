"""An IMP trajectory: round 0 trains the dense model; every round rewinds, trains under the
mask, evaluates and prunes (paper, Algorithm 1).

``run_trajectory`` yields one ``RoundResult`` per round with the ``TrajectoryState`` needed to
resume after it; the caller decides where to save it (a folder for ``launchers/imp.py``, a Tune
checkpoint for the sweep). Every random draw of round k comes from a generator seeded by
(seed, k), so a resumed trajectory reproduces the uninterrupted one without storing RNG state.
"""

import functools
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import torch

from .config import ImpConfig
from .device import prepare_model, resolve_device
from .masks import Mask, check_compatible, load_mask, mask_digest, ones_mask, save_mask, sparsity
from .models import build_model, get_model_spec, prunable_parameters
from .perturbation import perturb_mask
from .pruning import prune
from .rewind import apply_mask, capture_state, check_state_keys, early_rewind_iteration, restore_state, state_digest
from .selection import epoch_selection
from .tasks import TASKS, build_task, load_pretrained_heads, task_loading, wrap_for_training
from .train import train_masked
from .weights import load_pretrained

STATE_FILE = "trajectory.json"
MASK_FILE = "mask_round_{:02d}.rlthmask"
REWIND_FILE = "rewind_state.pt"


@dataclass
class RoundRecord:
    round: int
    sparsity: float  # over the prunable weights
    metrics: Dict[str, float]
    metric: float  # the task's primary metric (higher is better)
    epochs: int  # epochs spent by the trajectory so far, this round included
    seconds: float  # wall time of this round's training and evaluation
    mask_digest: str
    # SHA-256 of the whole model (backbone + heads, rewind_state's key layout) as the round started
    start_digest: str = ""


@dataclass
class TrajectoryState:
    """Everything needed to start round ``next_round``."""

    next_round: int
    mask: Mask  # the mask round ``next_round`` trains under
    round_mask: Mask  # the mask the last finished round trained under
    rewind_state: Dict[str, torch.Tensor]  # the whole model at θ_p, θ_0 or θ_k% (round 0's start for "reinit"); see rewind.py
    records: List[RoundRecord] = field(default_factory=list)

    def save(self, folder) -> Path:
        """Write the state into ``folder``; ``trajectory.json`` goes last and atomically, so a
        kill mid-save leaves the previous state readable. Masks are named by the round that trains
        under them, so saving every round into one folder keeps every round's mask."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        last = self.next_round - 1
        if not (folder / MASK_FILE.format(last)).exists():
            save_mask(self.round_mask, folder / MASK_FILE.format(last), {"round": last})
        save_mask(self.mask, folder / MASK_FILE.format(self.next_round), {"round": self.next_round})
        _atomic_torch_save(self.rewind_state, folder / REWIND_FILE)
        state = {"next_round": self.next_round, "records": [asdict(r) for r in self.records]}
        tmp = folder / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, folder / STATE_FILE)
        return folder

    @staticmethod
    def peek_next_round(folder) -> int:
        state_path = Path(folder) / STATE_FILE
        try:
            return int(json.loads(state_path.read_text())["next_round"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{state_path}: unreadable trajectory state ({error})") from None

    @classmethod
    def load(cls, folder, next_round: Optional[int] = None) -> "TrajectoryState":
        """Read a saved state, or an earlier round's (``next_round``) from a folder that kept
        its masks. Raises ValueError (MaskFileError for a bad mask) naming the file."""
        folder = Path(folder)
        state_path = folder / STATE_FILE
        newest = cls.peek_next_round(folder)
        next_round = newest if next_round is None else next_round
        if not 1 <= next_round <= newest:
            raise ValueError(f"{state_path}: holds rounds up to {newest - 1}, not {next_round - 1}")
        try:
            records = [RoundRecord(**r) for r in json.loads(state_path.read_text())["records"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{state_path}: unreadable trajectory state ({error})") from None
        try:
            rewind_state = torch.load(folder / REWIND_FILE, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"{folder / REWIND_FILE}: unreadable rewind weights ({error})") from None
        return cls(
            next_round=next_round,
            mask=load_mask(folder / MASK_FILE.format(next_round)),
            round_mask=load_mask(folder / MASK_FILE.format(next_round - 1)),
            rewind_state=rewind_state,
            records=[r for r in records if r.round < next_round],
        )


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@dataclass
class RoundResult:
    record: RoundRecord
    state: TrajectoryState


def round_generator(seed: int, round_index: int, purpose: int) -> torch.Generator:
    """A generator for one purpose of one round, independent of everything run before it."""
    return torch.Generator().manual_seed(1_000_003 * seed + 1_009 * round_index + purpose)


_INIT, _DATA, _PRUNE, _PERTURB = 0, 1, 2, 3


def _fresh_model(config: ImpConfig, num_outputs: int, round_index: int):
    spec = get_model_spec(config.model)
    # builders draw from the global RNG: seed it so that θ_0 (and the head) is reproducible
    torch.manual_seed(round_generator(config.seed, round_index, _INIT).initial_seed())
    return spec, build_model(config.model, num_outputs)


def load_theta_p(model, spec, task_name: str, path, weights_format: str) -> str:
    """θ_p into a freshly built model: the backbone always; the head only where the task is the one
    the weights were trained on (``TaskEntry.weights_trained_on_it``); never the modules the model
    keeps fresh (``ModelSpec.not_from_weights``, the CIFAR stem). Returns the format found."""
    return load_pretrained(model, path, spec.heads, weights_format, load_heads=TASKS.get(task_name).weights_trained_on_it,
                           not_from_weights=spec.not_from_weights)


def run_trajectory(config: ImpConfig, state: Optional[TrajectoryState] = None, task=None,
                   progress: Optional[Callable[..., None]] = None, cpus: Optional[float] = None) -> Iterator[RoundResult]:
    """Run rounds ``state.next_round``..``config.rounds`` (all of them when ``state`` is None).

    ``progress(round, epochs_done, epochs, epoch_loss, seconds)`` runs after every epoch.
    ``cpus``: the CPUs this trajectory may use (a trial's; None: this process's), which size the
    data loader's workers on a GPU (``tasks.loading``).

    With ``config.mask_file`` round 0 fine-tunes a transferred ticket under that fixed mask
    (``rounds=0`` for a transfer trial: no further pruning)."""
    device = resolve_device(config.device)
    loading = task_loading(config.task, config.task_options, config.num_workers, device, cpus)
    task = task or build_task(config.task, config.data_root, config.image_size, loading,
                              val_images=config.val_images, **config.task_options)
    if state is None:
        spec, model = _fresh_model(config, task.num_outputs, 0)
        found = load_theta_p(model, spec, config.task, config.weights, config.weights_format) if config.weights else None
        prunable = prunable_parameters(model, spec.never_pruned)
        first_mask = ones_mask(prunable)
        if config.mask_file:
            first_mask = load_mask(config.mask_file)
            check_compatible(first_mask, prunable, what=f"mask_file {config.mask_file}")
            first_mask = perturb_mask(first_mask, config.mask_perturbation, config.perturbation_fraction,
                                      round_generator(config.seed, 0, _PERTURB))
        elif config.mask_perturbation != "none":
            raise ValueError(f"mask_perturbation={config.mask_perturbation!r} perturbs a found mask: give mask_file")
        # round 0's whole model before training: θ_p (or θ_0) with the heads γ as round 0 draws
        # them (the same draws as the loop's round 0 below), or loads them from the file
        trained_model = wrap_for_training(task, model, spec)
        if config.weights:
            print(load_pretrained_heads(task, trained_model, spec, config.weights, config.weights_format, found),
                  file=sys.stderr, flush=True)
        rewind_state = capture_state(model, trained_model)
        if config.rewind_file:
            # the θ_k% of the trajectory that found mask_file: a perturbed mask restarts where it did
            rewind_state = torch.load(config.rewind_file, map_location="cpu", weights_only=True)
            check_state_keys(rewind_state, model, trained_model, f"rewind_file {config.rewind_file}")
        state = TrajectoryState(next_round=0, mask=first_mask, round_mask=first_mask, rewind_state=rewind_state)
    records = list(state.records)

    for round_index in range(state.next_round, config.rounds + 1):
        started = time.perf_counter()
        mask = state.mask
        spec, model = _fresh_model(config, task.num_outputs, round_index)
        # the task may train the backbone inside a wrapper (projection head, detector) that shares
        # its parameters: the mask and pruning stay the backbone's
        trained_model = wrap_for_training(task, model, spec)
        if round_index > 0 and config.rewind == "reinit":
            apply_mask(model, mask, trained_model)  # this round's own fresh random init, heads included
        else:
            # every round restarts from the whole model at the rewind point (Algorithm 1's
            # (θ_p, γ_p)); round 0 from θ_p or θ_0, held as the rewind state until θ_k% replaces it
            restore_state(model, state.rewind_state, mask, trained_model)
        start_digest = state_digest(capture_state(model, trained_model))
        prepare_model(trained_model, device)

        rewind_state = state.rewind_state
        step_hook = None
        if round_index == 0 and config.rewind == "early" and not config.rewind_file:
            capture_at = early_rewind_iteration(config.train.epochs * task.batches_per_epoch(config.train.batch_size),
                                                config.rewind_fraction)
            captured = {}

            def step_hook(iteration, model=model, trained_model=trained_model, captured=captured,
                          capture_at=capture_at):
                if iteration == capture_at:
                    captured["state"] = capture_state(model, trained_model)

        if round_index == 0 and not config.train_dense:
            # θ_p is the dense network trained on this very task: score it, prune its magnitudes
            metrics = {**task.evaluate(trained_model, device), "iterations": 0}
        else:
            selection = epoch_selection(config.selection, task, trained_model, device)
            stats = train_masked(trained_model, task, config.train, mask, device,
                                 round_generator(config.seed, round_index, _DATA), step_hook, masked_module=model,
                                 epoch_hook=selection.after_epoch,
                                 progress=None if progress is None else functools.partial(progress, round_index))
            if step_hook is not None:
                rewind_state = captured["state"]
            metrics = {**selection.round_metrics(), **stats}

        record = RoundRecord(
            round=round_index,
            sparsity=sparsity(mask),
            metrics=metrics,
            metric=float(metrics[task.metric]),
            epochs=config.train.epochs * (round_index + int(config.train_dense)),
            seconds=time.perf_counter() - started,
            mask_digest=mask_digest(mask)[:16],
            start_digest=start_digest,
        )
        records.append(record)
        trained = {name: p.detach() for name, p in prunable_parameters(model, spec.never_pruned).items()}
        next_mask = prune(config.pruning, trained, mask, config.prune_fraction,
                          round_generator(config.seed, round_index, _PRUNE))
        state = TrajectoryState(next_round=round_index + 1, mask=next_mask, round_mask=mask,
                                rewind_state=rewind_state, records=list(records))
        yield RoundResult(record, state)
