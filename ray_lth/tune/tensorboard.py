"""TensorBoard logs with readable trial names: the metric against round and against sparsity,
and the trial's hyperparameters, under ``<experiment>/tensorboard/<trial name>/``.

(Ray's own TBX logs sit in each trial folder, keyed by training iteration; these add the
LTH axes.) Sparsity is logged as a step in basis points (8926 = 89.26 %), since TensorBoard
steps are integers.

``SummaryWriter`` writes local files only. With local (or NFS) storage it writes into the
experiment folder itself; with an object store it writes into a local staging folder, and the
trial's event files are uploaded after every flush, i.e. once per reported round and once when
the trial ends. A round takes seconds to hours and an event file holds a few KB per round, so
this costs one small PUT per round, while a driver killed mid-sweep loses at most the round
being reported (an object cannot be appended to, so each upload replaces the whole file).
"""

import shutil
import tempfile
from pathlib import Path
from typing import Optional

from ray.tune import Callback
from torch.utils.tensorboard import SummaryWriter

from ..storage import Location, location

_HPARAM_TYPES = (int, float, str, bool)


class TensorBoardCallback(Callback):
    def __init__(self, log_dir):
        self.log_dir: Location = location(log_dir)
        self.writers = {}
        self.best = {}
        self._staging: Optional[str] = None  # the local folder the writers write to, for an object store

    def _local_dir(self) -> Path:
        if self.log_dir.is_local:
            return self.log_dir.local_path
        if self._staging is None or not Path(self._staging).is_dir():  # also after a restore, in a new driver
            self._staging = tempfile.mkdtemp(prefix="ray_lth_tensorboard_")
        return Path(self._staging)

    def _writer(self, trial):
        if trial.trial_id not in self.writers:
            self.writers[trial.trial_id] = SummaryWriter(str(self._local_dir() / str(trial)))
        return self.writers[trial.trial_id]

    def _upload(self, trial) -> None:
        if not self.log_dir.is_local:
            (self.log_dir / str(trial)).upload(self._local_dir() / str(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        writer = self._writer(trial)
        round_index, sparsity_bp = int(result["round"]), int(round(10000 * result["sparsity"]))
        writer.add_scalar("metric/by_round", result["metric"], round_index)
        writer.add_scalar("metric/by_sparsity_bp", result["metric"], sparsity_bp)
        writer.add_scalar("sparsity/by_round", result["sparsity"], round_index)
        for key, value in result.items():
            if key.startswith("m_") and isinstance(value, (int, float)):
                writer.add_scalar(f"{key[2:]}/by_round", value, round_index)
        if result.get("matching") == "yes":
            self.best[trial.trial_id] = max(self.best.get(trial.trial_id, 0.0), result["sparsity"])
        writer.flush()
        self._upload(trial)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        writer = self._writer(trial)
        hparams = {k: v for k, v in trial.config.items() if isinstance(v, _HPARAM_TYPES)}
        last = trial.last_result or {}
        writer.add_hparams(hparams, {"hparam/final_metric": float(last.get("metric", float("nan"))),
                                     "hparam/max_matching_sparsity": self.best.get(trial.trial_id, 0.0)},
                           run_name=".")
        writer.close()
        self.writers.pop(trial.trial_id, None)
        self._upload(trial)

    def on_experiment_end(self, trials, **info) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
        if self._staging is not None:  # an object store: the last events up, the staging folder removed
            for trial in trials:
                if (Path(self._staging) / str(trial)).is_dir():
                    self._upload(trial)
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
