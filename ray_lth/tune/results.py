"""results.csv: one row per (trial, round), rewritten atomically after every result.

Rows are keyed by (trial name, round) — names are unique per configuration, and stable when a
restored sweep re-creates a trial under a new id — so a round re-run after a restart replaces its
row instead of duplicating it, and a resumed sweep starts from the rows already on disk. The ``matching``
column is the round's verdict on the seed-mean (the same for every seed of a group), filled from the
MatchingTracker once the dense band and every seed's result of that round are known; a round only
some seeds reached (a seed ran past its group's stop) stays empty.
The fields that tell the groups apart (e.g. ``pruning``: global or random) follow ``group`` in
every row, so a reader or a script can tell the arms apart without parsing trial names.

The file lives in the experiment's storage (a local folder or an object store): each rewrite is
one atomic write there, write-then-rename locally, one PUT on S3/GCS. One PUT per result is fine
at this scale (a result per trial and round, minutes apart; the file is a few KB per 100 rounds).
"""

import csv
import io
import json
from typing import Dict, List, Sequence, Tuple

from ray.tune import Callback

from ..matching import MatchingTracker
from ..storage import location

COLUMNS = ["trial_id", "trial_name", "group", "seed", "rewind_scope", "round", "sparsity", "nominal_sparsity",
           "metric", "matching", "epochs", "round_seconds", "bookkeeping_seconds"]


def results_columns(group_fields: Sequence[str] = ()) -> List[str]:
    """COLUMNS with the group-distinguishing fields after ``group``."""
    at = COLUMNS.index("group") + 1
    return COLUMNS[:at] + [f for f in group_fields if f not in COLUMNS] + COLUMNS[at:]


def field_value(value) -> str:
    """A config value as one CSV cell: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def read_results(path) -> Dict[Tuple[str, int], dict]:
    """The rows of results.csv (a local path or a storage Location) by (trial name, round)."""
    source = location(path)
    if not source.exists():
        return {}
    reader = csv.DictReader(io.StringIO(source.read_text(), newline=""))
    return {(row["trial_name"], int(row["round"])): row for row in reader}


def feed_tracker(tracker: MatchingTracker, rows) -> None:
    for row in rows:
        tracker.add(row["group"], row["trial_name"], int(row["round"]), float(row["sparsity"]), float(row["metric"]))


class ResultsCallback(Callback):
    def __init__(self, path, tracker: MatchingTracker, group_fields: Sequence[str] = ()):
        self.path = location(path)  # a Location: local or in an object store
        self.tracker = tracker
        self.group_fields = [f for f in group_fields if f not in COLUMNS]
        self.columns = results_columns(self.group_fields)
        self.rows: Dict[Tuple[str, int], dict] = {}
        # trials that ended by finishing or by the scheduler's STOP (an interrupted sweep's trials
        # never complete): with their last round, they tell stopped trajectories from cut-off ones
        self.completed: Dict[str, int] = {}

    def setup(self, **info) -> None:
        # also runs after Tuner.restore: the rows and the band survive a driver restart
        self.rows = read_results(self.path)
        feed_tracker(self.tracker, self.rows.values())

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        key = (str(trial), int(result["round"]))
        self.rows[key] = {"trial_id": trial.trial_id, "trial_name": str(trial), "group": result["group"],
                          "seed": result["seed"], "rewind_scope": result["rewind_scope"],
                          "round": int(result["round"]), "sparsity": result["sparsity"],
                          "nominal_sparsity": result["nominal_sparsity"], "metric": result["metric"],
                          "epochs": result["epochs"], "round_seconds": result["round_seconds"],
                          "bookkeeping_seconds": result["bookkeeping_seconds"],
                          **{f: field_value(trial.config.get(f, "")) for f in self.group_fields}}
        verdict = self.tracker.round_verdict(result["group"], int(result["round"]))
        result["matching"] = "?" if verdict is None else ("yes" if verdict else "no")  # shown in the progress table
        self._write()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = (trial.last_result or {}).get("round")
        if last is not None:
            self.completed[str(trial)] = int(last)

    def on_experiment_end(self, trials, **info) -> None:
        self._write()

    def _write(self) -> None:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.columns)
        writer.writeheader()
        for (_, round_index), row in sorted(self.rows.items(), key=lambda kv: (kv[1]["group"], kv[0])):
            verdict = self.tracker.round_verdict(row["group"], round_index)
            writer.writerow({**row, "matching": "" if verdict is None else int(verdict)})
        self.path.write_text(text.getvalue())  # atomic: rename locally, one PUT on an object store
