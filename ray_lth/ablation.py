"""Table 2's temperature ablation, without Ray: how the simCLR temperature used to *find* a
ticket changes how well it transfers.

One trial (one temperature, one seed): take the upstream simCLR ticket at 67.23 % sparsity (a
mask file, or the embedded default's own IMP on simCLR to round 5), train it from θ_p for one
round on the simCLR task at temperature T, prune globally to 73.79 % (the next IMP round),
fine-tune (m, θ_p) on the downstream task (CIFAR-100 in the paper; embedded: digits) and report
its accuracy. ``ray_lth.tune.ablation`` runs the trials as a ``tune.grid_search``.
"""

import hashlib
import json
import math
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Dict, List, Optional, Tuple

from .config import ImpConfig
from .imp import run_trajectory
from .storage import is_file, join_uri, location
from .experiment_layout import MASK_FILE, STATE_FILE
from .trajectory_state import TrajectoryState
from .masks import load_mask, read_mask_header, save_mask, sparsity
from .resources import PerTrialResources
from .tasks.ssl import SIMCLR_OPTIONS, check_simclr_options

TABLE2_TEMPERATURES = [0.1, 0.2, 0.5, 1.0, 2.0, 10.0, 20.0]
DOWNSTREAM_PREFIX = "downstream_"  # --set downstream_epochs=2 changes the fine-tune only


@dataclass(frozen=True)
class TemperatureAblationSpace(PerTrialResources):
    kind: ClassVar[str] = "temperature_ablation"
    launcher_flags: ClassVar[Tuple[str, ...]] = ()  # runs once, to the end: no --resume, no --patience
    group_fields: ClassVar[Tuple[str, ...]] = ("temperature",)
    patience: ClassVar[Optional[int]] = None  # every trial runs to its end

    description: str
    upstream: Dict[str, object]  # ImpConfig fields of the simCLR round (model, schedule, dataset, ...)
    downstream: Dict[str, object]  # ImpConfig fields of the fine-tune (task, schedule, ...)
    temperatures: List[float] = field(default_factory=lambda: list(TABLE2_TEMPERATURES))
    seeds: List[int] = field(default_factory=lambda: [0])
    mask_file: Optional[str] = None  # the upstream ticket; None: derived by IMP on simCLR to mask_round
    mask_round: int = 5  # the IMP round whose mask is derived: sparsity 1 - 0.8^5 = 67.23 %
    target_sparsity: float = 1.0 - 0.8**6  # 73.79 %: one more IMP round
    weights: str = "embedded"
    cpus_per_trial: float = 0.5
    gpus_per_trial: float = 0.0

    @property
    def model(self) -> str:
        return str(self.upstream.get("model", "resnet20"))

    @property
    def seeds_per_group(self) -> int:
        return len(self.seeds)

    def needs_pretrained_weights(self) -> bool:
        return True  # the simCLR round and the fine-tune start from θ_p

    def prepare(self, cache_uri: str) -> "TemperatureAblationSpace":
        """The space with its upstream ticket (``derive_upstream_mask``), checked again."""
        space = derive_upstream_mask(self, cache_uri)
        space.validate()
        return space

    def transfer_plan(self):
        return None

    def with_overrides(self, overrides: Dict[str, object]) -> "TemperatureAblationSpace":
        """``temperature=[..]`` and ``seed=[..]`` set the grid; ``mask_file``, ``mask_round`` and
        ``target_sparsity`` the ticket; ``downstream_<key>`` a fine-tune field; a simCLR option
        (``dataset``, ``projection_dim``, ...) the simCLR round; any other key both."""
        values = dict(overrides)
        space = self
        if "temperature" in values:
            t = values.pop("temperature")
            space = replace(space, temperatures=list(t) if isinstance(t, (list, tuple)) else [t])
        if "seed" in values:
            s = values.pop("seed")
            space = replace(space, seeds=list(s) if isinstance(s, (list, tuple)) else [s])
        for key in ("mask_file", "mask_round", "target_sparsity"):
            if key in values:
                space = replace(space, **{key: values.pop(key)})
        downstream = {k[len(DOWNSTREAM_PREFIX):]: values.pop(k) for k in list(values) if k.startswith(DOWNSTREAM_PREFIX)}
        upstream_only = {k: values.pop(k) for k in list(values) if k in SIMCLR_OPTIONS}
        return replace(space, upstream={**space.upstream, **values, **upstream_only},
                       downstream={**space.downstream, **values, **downstream})

    def trials(self) -> List[dict]:
        """One (temperature, seed) per trial; the Ray side turns both into grid axes."""
        return [{"temperature": t, "seed": s} for t in self.temperatures for s in self.seeds]

    def upstream_config(self, temperature: float, seed: int, mask_file: str, prune_fraction: float) -> dict:
        return {**self.upstream, "task": "simclr", "rewind": "pretrained", "rounds": 0, "temperature": temperature,
                "seed": seed, "mask_file": mask_file, "prune_fraction": prune_fraction}

    def downstream_config(self, seed: int, mask_file: str) -> dict:
        shared = {k: self.upstream[k] for k in ("model", "weights", "weights_format", "image_size", "device")
                  if k in self.upstream}
        return {**shared, **self.downstream, "rewind": "pretrained", "rounds": 0, "seed": seed, "mask_file": mask_file}

    def validate(self) -> List[ImpConfig]:
        """Every trial's two configs, built before Ray starts; a bad field raises ValueError naming it."""
        if not self.temperatures:
            raise ValueError("temperature must list at least one value")
        for t in self.temperatures:
            check_simclr_options({"temperature": t})
        if not self.seeds:
            raise ValueError("seed must list at least one value")
        if not 0.0 < float(self.target_sparsity) < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {self.target_sparsity}")
        if isinstance(self.mask_round, bool) or not isinstance(self.mask_round, int) or self.mask_round < 1:
            raise ValueError(f"mask_round must be an integer >= 1, got {self.mask_round!r}")
        if not self.cpus_per_trial > 0:
            raise ValueError(f"cpus_per_trial must be > 0, got {self.cpus_per_trial}")
        if self.gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial must be >= 0, got {self.gpus_per_trial}")
        if "task" in self.upstream and self.upstream["task"] != "simclr":
            raise ValueError(f"the ablation trains on the simclr task, not task={self.upstream['task']!r}")
        if self.mask_file is not None:
            if not is_file(self.mask_file):
                raise ValueError(f"mask_file={self.mask_file!r}: no such file")
            upstream_sparsity = read_mask_header(self.mask_file)["sparsity"]
            if upstream_sparsity >= self.target_sparsity:
                raise ValueError(f"mask_file has sparsity {upstream_sparsity:.4f}, not below target_sparsity "
                                 f"{self.target_sparsity:.4f}: there is nothing left to prune")
        # stand-in mask path and fraction: the configs only need to be well formed here
        probe = str(self.mask_file) if self.mask_file else None
        configs = []
        for trial in self.trials():
            upstream = {k: v for k, v in self.upstream_config(trial["temperature"], trial["seed"], probe, 0.2).items()
                        if v is not None}
            config = ImpConfig.from_dict(upstream)
            check_simclr_options(config.task_options)
            configs += [config, ImpConfig.from_dict({k: v for k, v in self.downstream_config(trial["seed"], probe).items()
                                                     if v is not None})]
        return configs


def fraction_to_prune(current: float, target: float) -> float:
    """The fraction of the remaining weights to prune to go from ``current`` to ``target`` sparsity."""
    return 1.0 - (1.0 - target) / (1.0 - current)


def run_ablation_trial(space: TemperatureAblationSpace, temperature: float, seed: int, workdir) -> dict:
    """simCLR round at ``temperature`` under the upstream mask -> prune to the target -> fine-tune."""
    started = time.perf_counter()
    workdir = Path(workdir)
    upstream_sparsity = sparsity(load_mask(space.mask_file))
    fraction = fraction_to_prune(upstream_sparsity, space.target_sparsity)
    upstream = ImpConfig.from_dict(space.upstream_config(temperature, seed, str(space.mask_file), fraction))
    (simclr_round,) = list(run_trajectory(upstream, cpus=space.cpus_per_trial))  # the trial's CPUs size its loaders
    ticket = workdir / "ticket.rlthmask"
    save_mask(simclr_round.state.mask, ticket, {"temperature": temperature, "seed": seed,
                                                "upstream_mask": str(space.mask_file)})
    downstream = ImpConfig.from_dict(space.downstream_config(seed, str(ticket)))
    (fine_tune,) = list(run_trajectory(downstream, cpus=space.cpus_per_trial))
    return {"temperature": temperature, "seed": seed, "upstream_sparsity": upstream_sparsity,
            "sparsity": sparsity(simclr_round.state.mask), "simclr_metric": simclr_round.record.metric,
            "simclr_train_loss": simclr_round.record.metrics["train_loss"], "downstream_task": downstream.task,
            "accuracy": fine_tune.record.metric, "ticket_file": str(ticket),
            "seconds": time.perf_counter() - started}


def derive_upstream_mask(space: TemperatureAblationSpace, cache_dir) -> TemperatureAblationSpace:
    """The space with ``mask_file`` set: as given, or the mask of IMP on simCLR (seed 0, the
    space's simCLR settings and default temperature) at ``mask_round``, run once and cached by its
    configuration (an interrupted run resumes). ``cache_dir``: a local path or a storage URI (its
    options kept in the returned ``mask_file``, which every node then reads)."""
    if space.mask_file:
        return space
    config = ImpConfig.from_dict({**space.upstream, "task": "simclr", "rewind": "pretrained",
                                  "rounds": space.mask_round - 1, "seed": 0})
    key = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:10]
    name = f"simclr-imp-{space.model}-{key}"
    folder = location(cache_dir) / name
    state = TrajectoryState.load(folder) if (folder / STATE_FILE).exists() else None
    if not (folder / MASK_FILE.format(space.mask_round)).exists():
        for result in run_trajectory(config, state):
            result.state.save(folder)
            print(f"upstream IMP on simclr: round {result.record.round}, sparsity {100 * result.record.sparsity:.2f} %, "
                  f"{config.task_options['eval_metric']} {result.record.metric:.4f}", flush=True)
    return replace(space, mask_file=join_uri(cache_dir, name, MASK_FILE.format(space.mask_round)))


def temperature_table(rows: List[dict]) -> List[dict]:
    """Table 2: per temperature, the mean accuracy (and std over seeds) of the transferred tickets."""
    table = []
    for t in sorted({r["temperature"] for r in rows}):
        accuracies = [r["accuracy"] for r in rows if r["temperature"] == t]
        retrievals = [r["simclr_metric"] for r in rows if r["temperature"] == t]
        table.append({"temperature": t, "accuracy_mean": statistics.fmean(accuracies),
                      "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                      "seeds": len(accuracies), "simclr_metric_mean": statistics.fmean(retrievals),
                      "sparsity": statistics.fmean(r["sparsity"] for r in rows if r["temperature"] == t)})
    return table


def format_temperature_table(table: List[dict]) -> str:
    """Table 2's layout: temperatures across, accuracy (%) below (± std when seeds > 1)."""
    def accuracy(row):
        text = f"{100 * row['accuracy_mean']:.2f}"
        return text + (f"±{100 * row['accuracy_std']:.2f}" if row["seeds"] > 1 else "")

    columns = [("Temperature", [_number(r["temperature"]) for r in table]),
               ("Accuracy (%)", [accuracy(r) for r in table]),
               ("simCLR metric (%)", [f"{100 * r['simclr_metric_mean']:.2f}" for r in table]),
               ("Sparsity (%)", [f"{100 * r['sparsity']:.2f}" for r in table])]
    label_width = max(len(label) for label, _ in columns)
    widths = [max(len(cells[i]) for _, cells in columns) for i in range(len(table))]
    return "\n".join(label.ljust(label_width) + "  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths))
                     for label, cells in columns)


def _number(value: float) -> str:
    return f"{value:g}" if math.isfinite(value) else str(value)
