"""Table 2's temperature ablation as a Ray Tune experiment: a ``tune.grid_search`` over the
temperatures (and seeds), each trial with fractional resources (e.g. 0.25 GPU: four trials share
one GPU); the trials run ``ray_lth.ablation.run_ablation_trial``. Writes ``trials.csv`` (one row
per trial) and ``temperature_table.csv`` (Table 2) under ``<storage>/<name>/``; ``run_ablation``
is the runner ``spaces.SPACE_KINDS`` names for this kind.
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from ray import tune

from .. import experiment_layout as layout
from ..ablation import TemperatureAblationSpace, run_ablation_trial, temperature_table
from ..spaces import space_to_json
from ..storage import Location, location, on_filesystem, storage_path_for_ray
from .outcome_text import ablation_text
from .sweep import SweepError, check_resources, write_summary
from .trial_errors import fail_once, trial_failures


@dataclass
class AblationOutcome:
    experiment: Location  # <storage>/<name>, local or in an object store
    rows: List[dict]  # one per trial
    table: List[dict]  # one per temperature
    errors: List[str]
    upstream_ticket: str = ""  # the mask file every trial started from

    @property
    def experiment_dir(self) -> Optional[Path]:
        """The experiment folder on this machine; None when it is in an object store."""
        return self.experiment.local_path

    def text(self) -> str:
        return ablation_text(self)


@fail_once  # a deterministic error ends the trial once, with one line (trial_errors.py)
def ablation_trainable(config: dict) -> None:
    space = TemperatureAblationSpace(**config["space"])
    workdir = Path(tune.get_context().get_trial_dir())
    row = run_ablation_trial(space, config["temperature"], config["seed"], workdir)
    storage = tune.get_context().get_storage()
    trial = on_filesystem(storage.storage_filesystem, storage.trial_fs_path)
    if not trial.is_local:  # the worker's folder goes with its node: the ticket goes where the experiment is
        (trial / Path(row["ticket_file"]).name).write_bytes(Path(row["ticket_file"]).read_bytes())
        row["ticket_file"] = str(trial / Path(row["ticket_file"]).name)
    tune.report(row)


def build_tuner(space: TemperatureAblationSpace, storage, name: str, trainable: Callable = ablation_trainable,
                verbose: int = 1) -> tune.Tuner:
    param_space = {"space": dataclasses.asdict(space), "temperature": tune.grid_search(list(space.temperatures)),
                   "seed": tune.grid_search(list(space.seeds))}
    return tune.Tuner(
        tune.with_resources(trainable, space.trial_resources()),
        param_space=param_space,
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True,  # as the grid's (tune/sweep.py)
                                    trial_name_creator=lambda t: f"T{t.config['temperature']:g}-seed{t.config['seed']}",
                                    trial_dirname_creator=lambda t: f"T{t.config['temperature']:g}-seed{t.config['seed']}"),
        run_config=tune.RunConfig(name=name, storage_path=storage_path_for_ray(storage), verbose=verbose,
                                  progress_reporter=tune.CLIReporter(
                                      parameter_columns=["temperature", "seed"],
                                      metric_columns=["simclr_metric", "sparsity", "accuracy"],
                                      max_report_frequency=15, sort_by_metric=False)),
    )


def run_ablation(space: TemperatureAblationSpace, storage, name: str, resume: bool = False, verbose: int = 1,
                 max_concurrent: Optional[int] = None, launched_at: Optional[float] = None) -> AblationOutcome:
    """The runner of this kind: every trial, once (``launcher_flags`` offers no --resume)."""
    return run_temperature_ablation(space, storage, name, verbose=verbose)


def run_temperature_ablation(space: TemperatureAblationSpace, storage, name: str,
                             trainable: Callable = ablation_trainable, verbose: int = 1,
                             tuner: Optional[tune.Tuner] = None) -> AblationOutcome:
    """Run every (temperature, seed) trial; Ray must already be initialised. The space must hold
    its ``mask_file`` (``ablation.derive_upstream_mask``) and weights."""
    experiment = location(storage) / name
    if experiment.exists():
        raise SweepError(f"experiment {experiment} exists: choose another --name (an ablation is not resumed)")
    check_resources(space)
    (experiment / layout.SPACE_FILE).write_text(json.dumps(space_to_json(space), indent=1))
    grid = (tuner or build_tuner(space, storage, name, trainable, verbose)).fit()
    errors = trial_failures(grid)
    keys = ("temperature", "seed", "upstream_sparsity", "sparsity", "simclr_metric", "simclr_train_loss",
            "downstream_task", "accuracy", "seconds", "ticket_file")
    rows = sorted(({k: result.metrics[k] for k in keys if k in result.metrics}
                   for result in grid if result.error is None and "accuracy" in result.metrics),
                  key=lambda r: (r["temperature"], r["seed"]))
    table = temperature_table(rows) if rows else []
    write_summary(experiment / layout.ABLATION_TRIALS_FILE, rows)
    write_summary(experiment / layout.TEMPERATURE_TABLE_FILE, table)
    return AblationOutcome(experiment, rows, table, errors, str(space.mask_file))
