"""TensorBoard logs with readable trial names: the metric against round and against sparsity,
and the trial's hyperparameters, under ``<experiment>/tensorboard/<trial name>/``.

(Ray's own TBX logs sit in each trial folder, keyed by training iteration; these add the
LTH axes.) Sparsity is logged as a step in basis points (8926 = 89.26 %), since TensorBoard
steps are integers.
"""

from pathlib import Path

from ray.tune import Callback
from torch.utils.tensorboard import SummaryWriter

_HPARAM_TYPES = (int, float, str, bool)


class TensorBoardCallback(Callback):
    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self.writers = {}
        self.best = {}

    def _writer(self, trial):
        if trial.trial_id not in self.writers:
            self.writers[trial.trial_id] = SummaryWriter(str(self.log_dir / str(trial)))
        return self.writers[trial.trial_id]

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

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        writer = self._writer(trial)
        hparams = {k: v for k, v in trial.config.items() if isinstance(v, _HPARAM_TYPES)}
        last = trial.last_result or {}
        writer.add_hparams(hparams, {"hparam/final_metric": float(last.get("metric", float("nan"))),
                                     "hparam/max_matching_sparsity": self.best.get(trial.trial_id, 0.0)},
                           run_name=".")
        writer.close()
        self.writers.pop(trial.trial_id, None)

    def on_experiment_end(self, trials, **info) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
