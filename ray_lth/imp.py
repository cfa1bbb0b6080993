"""An IMP trajectory: round 0 trains the dense model; every round rewinds, trains under the
mask, evaluates and prunes (paper, Algorithm 1).

``run_trajectory`` yields one ``RoundResult`` per round with the ``TrajectoryState`` needed to
resume after it; the caller decides where to save it (a folder for ``launchers/imp.py``, a Tune
checkpoint for the sweep). Every random draw of round k comes from a generator seeded by
(seed, k), so a resumed trajectory reproduces the uninterrupted one without storing RNG state.
"""

import copy
import functools
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch

from .config import ImpConfig
from .device import prepare_model, resolve_device
from .masks import check_compatible, load_mask, mask_digest, ones_mask, sparsity
from .models import build_model, get_model_spec, prunable_parameters
from .perturbation import perturb_mask
from .pruning import prune
from .rewind import (WRAPPER_PREFIX, CarriedState, apply_mask, capture_state, carry_over, check_state_keys,
                     early_rewind_iteration, restore_state, restored_keys, state_digest)
from .selection import epoch_selection
from .tasks import TASKS, build_task, load_pretrained_heads, task_loading, wrap_for_training
from .train import train_masked
from .experiment_layout import REWIND_FILE
from .trajectory_state import RewindReference, RoundRecord, TrajectoryState
from .weights import keys_from_weights, load_pretrained, load_weights_only


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


def theta_p_keys(model, spec, task_name: str):
    """The entries of ``model`` that ``load_theta_p`` fills from the file."""
    return keys_from_weights(model.state_dict(), spec.heads, TASKS.get(task_name).weights_trained_on_it,
                             spec.not_from_weights)


def start_backbone(config: ImpConfig, num_outputs: int):
    """Round 0's backbone before training: θ_0 as drawn for (seed, round 0), θ_p loaded into it
    where weights are given. Returns (spec, model, the weights format found or None)."""
    spec, model = _fresh_model(config, num_outputs, 0)
    found = load_theta_p(model, spec, config.task, config.weights, config.weights_format) if config.weights else None
    return spec, model, found


def start_state(config: ImpConfig, task) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], Optional[List[str]]]:
    """Round 0's whole model before training, the backbone's prunable weights, and the entries
    later rounds restore from the rewind point (``config.rewind_scope``; None: all): θ_p (or θ_0)
    with the heads γ as round 0 draws them (the same draws as run_trajectory's round 0), or loads
    them from the file; or ``rewind_file``'s θ_k%. What a trajectory starts from, and what a
    resumed one rebuilds instead of reading a saved copy."""
    spec, model, found = start_backbone(config, task.num_outputs)
    trained_model = wrap_for_training(task, model, spec)
    head_modules = []
    if config.weights:
        line, head_modules = load_pretrained_heads(task, trained_model, spec, config.weights, config.weights_format,
                                                   found)
        print(line, file=sys.stderr, flush=True)
    rewind_state = capture_state(model, trained_model)
    from_file = (theta_p_keys(model, spec, config.task) if config.weights else []) + [
        key for key in rewind_state if any(key.startswith(f"{WRAPPER_PREFIX}{module}.") for module in head_modules)]
    if config.rewind_file:
        # the θ_k% of the trajectory that found mask_file: a perturbed mask restarts where it did
        rewind_state = load_weights_only(config.rewind_file, "rewind_file")
        check_state_keys(rewind_state, model, trained_model, f"rewind_file {config.rewind_file}")
    prunable = prunable_parameters(model, spec.never_pruned)
    return rewind_state, prunable, restored_keys(config.rewind_scope, prunable, from_file)


def rebuilt_rewind_state(config: ImpConfig, task, reference: RewindReference) -> Dict[str, torch.Tensor]:
    """The rewind state a saved trajectory names (θ_p file or θ_0 seed, or rewind_file), rebuilt
    as round 0 built it; a ValueError naming the file and both digests when it is not the state
    the trajectory started from (weights replaced, code changed), never a silent restart."""
    if reference.kind == "captured":
        raise ValueError("a captured θ_k% is read from its trajectory folder (TrajectoryState.load), not rebuilt")
    reference.check_source()
    return reference.check_state(start_state(config, task)[0])


def initial_state(config: ImpConfig, task) -> TrajectoryState:
    """Round 0's state: the rewind state, and the first mask (dense, or the transferred ``mask_file``,
    perturbed as the config says)."""
    rewind_state, prunable, restored = start_state(config, task)
    first_mask = ones_mask(prunable)
    if config.mask_file:
        first_mask = load_mask(config.mask_file)
        check_compatible(first_mask, prunable, what=f"mask_file {config.mask_file}")
        first_mask = perturb_mask(first_mask, config.mask_perturbation, config.perturbation_fraction,
                                  round_generator(config.seed, 0, _PERTURB))
    elif config.mask_perturbation != "none":
        raise ValueError(f"mask_perturbation={config.mask_perturbation!r} perturbs a found mask: give mask_file")
    reference = RewindReference.of(rewind_state, "file" if config.rewind_file else "recompute", task.num_outputs,
                                   config.rewind_file or config.weights)
    return TrajectoryState(next_round=0, mask=first_mask, round_mask=first_mask, rewind_state=rewind_state,
                           rewind=reference, restored_keys=restored)


def run_trajectory(config: ImpConfig, state: Optional[TrajectoryState] = None, task=None,
                   progress: Optional[Callable[..., None]] = None,
                   round_runner: Optional[Callable[..., "TrainedRound"]] = None,
                   cpus: Optional[float] = None) -> Iterator[RoundResult]:
    """Run rounds ``state.next_round``..``config.rounds`` (all of them when ``state`` is None).

    ``progress(round, epochs_done, epochs, epoch_loss, seconds)`` runs after every epoch.
    ``round_runner`` trains each round (``train_round``'s signature; by default ``train_round``
    itself, here): the data-parallel runner of ``ray_lth/tune/data_parallel.py`` runs it over
    several workers instead. Pruning and the records stay here either way.
    ``cpus``: the CPUs this trajectory may use (a trial's; None: this process's), which size the
    data loader's workers on a GPU (``tasks.loading``).

    With ``config.mask_file`` round 0 fine-tunes a transferred ticket under that fixed mask
    (``rounds=0`` for a transfer trial: no further pruning)."""
    if config.workers_per_trial > 1 and round_runner is None:
        raise ValueError(f"workers_per_trial={config.workers_per_trial}: data-parallel rounds run in a sweep "
                         f"(launchers/sweep.py --workers-per-trial), which starts their workers")
    device = resolve_device(config.device)
    round_runner = round_runner or train_round
    loading = task_loading(config.task, config.task_options, config.num_workers, device, cpus,
                           config.train.precision)
    task = task or build_task(config.task, config.data_root, config.image_size, loading,
                              val_images=config.val_images, **config.task_options)
    if state is None:
        state = initial_state(config, task)
    elif state.rewind_state is None and state.next_round <= config.rounds:
        # saved by reference (θ_p file or θ_0 seed, rewind_file): rebuilt as round 0 built it, verified
        state = replace(state, rewind_state=rebuilt_rewind_state(config, task, state.rewind))
    records = list(state.records)

    for round_index in range(state.next_round, config.rounds + 1):
        started = time.perf_counter()
        mask = state.mask
        trained_round = round_runner(config, task, round_index, state, device, progress)
        metrics = trained_round.metrics
        rewind_state, rewind = trained_round.rewind_state, state.rewind
        if rewind_state is not state.rewind_state:  # θ_k%, captured in this round: saved once, by reference
            rewind = RewindReference.of(rewind_state, "captured", task.num_outputs, REWIND_FILE)
        start_digest = trained_round.start_digest

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
        next_mask = prune(config.pruning, trained_round.trained, mask, config.prune_fraction,
                          round_generator(config.seed, round_index, _PRUNE))
        state = TrajectoryState(next_round=round_index + 1, mask=next_mask, round_mask=mask,
                                rewind_state=rewind_state, rewind=rewind, records=list(records),
                                restored_keys=state.restored_keys, carried=trained_round.carried)
        yield RoundResult(record, state)


@dataclass
class TrainedRound:
    """What training one round gives back to its trajectory."""

    metrics: Dict[str, float]  # the round's reported scores and training statistics
    trained: Dict[str, torch.Tensor]  # the prunable weights after training: what pruning ranks
    rewind_state: Dict[str, torch.Tensor]  # what later rounds restart from: θ_k% once round 0 captured it
    start_digest: str  # state_digest of the whole model as the round started
    carried: Optional[CarriedState] = None  # what the next round takes over from this one's end


def _early_rewind_capture(config: ImpConfig, task, round_index: int, model, trained_model) -> Optional[dict]:
    """In round 0 of an early-rewind trajectory, ``{"hook": step_hook}`` whose hook fills in
    ``"state"`` (θ_k%) at the rewind iteration; None in every other round."""
    if not (round_index == 0 and config.rewind == "early" and not config.rewind_file):
        return None
    capture_at = early_rewind_iteration(config.train.epochs * task.batches_per_epoch(config.train.batch_size),
                                        config.rewind_fraction)
    captured = {}

    def hook(iteration):
        if iteration == capture_at:
            captured["state"] = capture_state(model, trained_model)

    captured["hook"] = hook
    return captured


def train_round(config: ImpConfig, task, round_index: int, state: TrajectoryState, device: torch.device,
                progress: Optional[Callable[..., None]] = None, distributed=None) -> TrainedRound:
    """Build the model, restore the rewind state under ``state.mask``, then train (or, for a
    round 0 that only scores θ_p, evaluate) and collect what pruning and the next rounds need.

    ``distributed`` (a ``ray_lth.distributed.DataParallel``) makes this one rank of a data-parallel
    round: the model trains under DDP on the rank's share of every global batch; only the main
    rank evaluates (on the full test set, as one process would), the others report no scores."""
    mask = state.mask
    spec, model = _fresh_model(config, task.num_outputs, round_index)
    # the task may train the backbone inside a wrapper (projection head, detector) that shares
    # its parameters: the mask and pruning stay the backbone's
    trained_model = wrap_for_training(task, model, spec)
    if round_index > 0 and config.rewind == "reinit":
        apply_mask(model, mask, trained_model)  # this round's own fresh random init, heads included
    else:
        # every round restarts from the model at the rewind point (Algorithm 1's (θ_p, γ_p)) but
        # for what it carries over from the last round (rewind_scope); round 0 from θ_p or θ_0,
        # held as the rewind state until θ_k% replaces it
        restore_state(model, state.rewind_state, mask, trained_model, state.carried and state.carried.entries)
    start_digest = state_digest(capture_state(model, trained_model))
    prepare_model(trained_model, device, config.train.precision)
    scores = distributed is None or distributed.is_main

    rewind_state = state.rewind_state
    optimizer_state = None  # for train_masked, where the momentum goes on from round to round
    if config.carry_optimizer:  # a copy: training updates the buffers it loads in place
        optimizer_state = copy.deepcopy(state.carried.optimizer or {}) if state.carried else {}
    captured = _early_rewind_capture(config, task, round_index, model, trained_model)
    step_hook = captured["hook"] if captured else None
    if round_index == 0 and not config.train_dense:
        # θ_p is the dense network trained on this very task: score it, prune its magnitudes
        metrics = {**(task.evaluate(trained_model, device) if scores else {}), "iterations": 0}
    else:
        # selection scores the unwrapped model: evaluation runs no collective, on the main rank only
        selection = epoch_selection(config.selection, task, trained_model, device) if scores else None
        training_model, training_task = trained_model, task
        if distributed is not None:
            training_model, training_task = distributed.wrap_model(trained_model, task), distributed.shard(task)
        stats = train_masked(training_model, training_task, config.train, mask, device,
                             round_generator(config.seed, round_index, _DATA), step_hook, masked_module=model,
                             epoch_hook=None if selection is None else selection.after_epoch,
                             progress=None if progress is None else functools.partial(progress, round_index),
                             optimizer_state=optimizer_state)
        if step_hook is not None:
            rewind_state = captured["state"]
        if distributed is not None:  # each rank's loss is its weighted share: their mean is the global loss
            stats["train_loss"] = distributed.mean_over_ranks(stats["train_loss"])
        metrics = {**(selection.round_metrics() if selection is not None else {}), **stats}
    trained = {name: p.detach() for name, p in prunable_parameters(model, spec.never_pruned).items()}
    carried = carry_over(capture_state(model, trained_model), state.restored_keys, optimizer_state)
    return TrainedRound(metrics, trained, rewind_state, start_digest, carried)
