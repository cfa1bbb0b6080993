"""The embedded default (`quick`, README command 1): two arms on one θ_p, its grid, the extra
results.csv columns and the console a person reads (tests/test_sweep.py runs it end to end)."""

import csv
import io
import re
import sys
import weakref

from ray.tune.experiment import Trial

from ray_lth.config import ImpConfig
from ray_lth.matching import MatchingTracker
from ray_lth.naming import group_name
from ray_lth.progress import EpochProgressPrinter
from ray_lth.spaces import load_space
from ray_lth.tasks import build_task
from ray_lth.tune.console import RoundLines, arms_sentence, format_status, quiet_ray_worker, stopped_sentence
from ray_lth.tune.results import COLUMNS, ResultsCallback
from ray_lth.tune.sweep import core_utilisation


def test_default_space_has_an_imp_arm_and_a_random_arm_on_the_same_theta_p_task_and_seeds(tmp_path):
    space = load_space("quick")
    assert space.group_fields == ["pruning"]
    weights = tmp_path / "theta_p.pt"
    weights.write_bytes(b"stand-in: validate only checks that the file exists")
    configs = space.with_overrides({"weights": str(weights)}).validate()
    assert len(configs) == 6
    arms = {}
    for config in configs:
        arms.setdefault(config.pruning, []).append(config)
    assert sorted(arms) == ["global", "random"]
    assert all(sorted(c.seed for c in arm) == [0, 1, 2] for arm in arms.values())
    # the two arms differ in the pruning method and nothing else
    strip = lambda c: {k: v for k, v in c.to_dict().items() if k not in ("pruning", "seed")}  # noqa: E731
    assert all(strip(c) == strip(configs[0]) for c in configs)
    assert configs[0].rewind == "pretrained" and configs[0].weights == str(weights)
    # the grid: 18 rounds of 20 % of the remaining weights end at 1 - 0.8^18 = 98.20 %
    assert configs[0].rounds == 18 and configs[0].prune_fraction == 0.2
    assert f"{100 * configs[0].sparsity_after(18):.2f}" == "98.20"
    assert len({group_name(c.to_dict()) for c in configs}) == 2  # one group per arm


def test_default_task_has_a_test_set_where_one_image_is_at_most_a_tenth_of_a_point():
    config = ImpConfig.from_dict({"task": load_space("quick").fixed["task"], "rewind": "init"})
    task = build_task(config.task, image_size=config.image_size)
    assert len(task.test_set) >= 1000 and 100 / len(task.test_set) <= 0.1
    train_images = task.train_set.tensors[0]
    test_images = task.test_set.tensors[0][:50]
    assert not any(bool((train_images[:200] == image).all(dim=(1, 2, 3)).any()) for image in test_images)


class FakeTrial:
    def __init__(self, name, config, status=Trial.RUNNING, last_result=None):
        self.name, self.config, self.status, self.last_result = name, config, status, last_result or {}
        self.trial_id = name[-5:]

    def __str__(self):
        return self.name


def _config(pruning, seed, rounds=3):
    return dict(model="resnet8", task="camo_shapes", rewind="pretrained", rounds=rounds, pruning=pruning, seed=seed)


def test_results_csv_carries_the_field_that_tells_the_arms_apart_in_every_row(tmp_path):
    tracker = MatchingTracker(seeds_per_group=1)
    callback = ResultsCallback(tmp_path / "results.csv", tracker, ["pruning"])
    for pruning in ("global", "random"):
        trial = FakeTrial(f"{pruning}-seed0", _config(pruning, 0))
        for k in range(2):
            result = {"group": group_name(trial.config), "seed": 0, "rewind_scope": "all", "round": k, "sparsity": 1 - 0.8**k,
                      "nominal_sparsity": 1 - 0.8**k, "metric": 0.9, "epochs": k + 1, "round_seconds": 1.0,
                      "bookkeeping_seconds": 0.0}
            tracker.add(result["group"], str(trial), k, result["sparsity"], result["metric"])
            callback.on_trial_result(0, [], trial, result)
    with open(tmp_path / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS[:3] + ["pruning"] + COLUMNS[3:]
    assert sorted((r["pruning"], r["round"]) for r in rows) == [("global", "0"), ("global", "1"),
                                                                ("random", "0"), ("random", "1")]
    assert all(r["pruning"] in r["trial_name"] for r in rows)
    assert {r["rewind_scope"] for r in rows} == {"all"}  # what the rounds restored, as the trial resolved it


def test_console_lines_are_in_percent_and_say_the_group_verdict_once_every_seed_reported():
    tracker = MatchingTracker(seeds_per_group=2)
    out = io.StringIO()
    lines = RoundLines(tracker, ["pruning"], stream=out)
    trials = [FakeTrial(f"t{s}", _config("random", s)) for s in (0, 1)]
    group = group_name(trials[0].config)
    for k, metrics in enumerate([(0.95, 0.97), (0.90, 0.91)]):  # band 96 ± 1.41: threshold 94.59 %
        for trial, metric in zip(trials, metrics):
            tracker.add(group, str(trial), k, 1 - 0.8**k, metric)
            lines.on_trial_result(0, trials, trial, {"group": group, "round": k, "sparsity": 1 - 0.8**k,
                                                     "metric": metric})
    text = out.getvalue()
    assert re.search(r"pruning=random seed0 +round  1  sparsity  20\.00 %  metric  90\.00 %  below band", text)
    assert "dense band 96.00 ± 1.41 % over 2 seeds, matching means a seed-mean ≥ 94.59 %" in text
    assert "round 1 (20.00 % sparse) seed-mean 90.50 % does NOT match" in text
    assert text.count("seed-mean 90.50 %") == 1
    assert not re.search(r"(?<![\d.])0\.(2|95|9)\b", text)  # no fraction anywhere


def test_status_table_shows_a_paused_trial_waiting_and_counts_only_early_ends_as_stopped():
    tracker = MatchingTracker(seeds_per_group=1)
    result = lambda k: {"group": "g", "round": k, "sparsity": 1 - 0.8**k, "metric": 0.9}  # noqa: E731
    trials = [FakeTrial("a", _config("global", 0), Trial.PAUSED, result(0)),
              FakeTrial("b", _config("global", 1), Trial.TERMINATED, result(3)),  # its last round: finished
              FakeTrial("c", _config("random", 0), Trial.TERMINATED, result(1)),  # stopped by the scheduler
              FakeTrial("d", _config("random", 1), Trial.PENDING)]
    table = format_status(trials, tracker, ["pruning"], 75.0)
    assert table.startswith("== 1 min 15 s: 1 waiting for its group, 1 pending, 1 finished, 1 stopped early ==")
    assert "waiting for its group" in table.splitlines()[3] and "stopped after round 1" in table
    assert "48.80" in table and "PAUSED" not in table and "PENDING" not in table
    assert stopped_sentence(["c"]).startswith("1 trajectories stopped before their last round")


def test_the_end_names_both_arms_in_one_sentence():
    summary = [{"group": "a", "pruning": "random", "max_matching_sparsity": 0.2, "max_sparsity_run": 0.488},
               {"group": "b", "pruning": "global", "max_matching_sparsity": 0.9313, "max_sparsity_run": 0.9645}]
    assert arms_sentence(summary).startswith("IMP tickets match up to 93.13 %, random masks up to 20.00 % sparsity")
    summary[1]["max_sparsity_run"] = 0.9313
    assert "93.13 % (every round matched: the boundary lies beyond)" in arms_sentence(summary)
    assert arms_sentence(summary[:1]) is None


def test_core_utilisation_is_round_seconds_over_cores_times_tuning_wall():
    timing = core_utilisation([{"round_seconds": "30"}, {"round_seconds": "60"}], 2, 50.0, 70.0)
    assert timing["core_utilisation"] == 0.9 and timing["round_seconds"] == 90 and timing["total_wall_s"] == 70


def test_epoch_progress_is_quiet_in_short_rounds_and_at_most_once_per_interval():
    now = [0.0]
    out = io.StringIO()
    printer = EpochProgressPrinter("trial", every_s=10, stream=out, clock=lambda: now[0])
    for epoch in range(1, 5):  # 4 epochs of 2 s: shorter than the interval, nothing printed
        now[0] += 2
        printer(0, epoch, 4, 0.5, 2.0 * epoch)
    assert out.getvalue() == ""
    for epoch in range(1, 21):  # 20 epochs of 3 s: at 12, 24, 36, 48 s
        now[0] += 3
        printer(1, epoch, 20, 0.25, 3.0 * epoch)
    lines = out.getvalue().splitlines()
    assert [int(re.search(r"epoch (\d+)/", line).group(1)) for line in lines] == [4, 8, 12, 16]
    assert lines[0] == "trial round 1: epoch 4/20, loss 0.2500, ETA of the round 48 s"


def test_a_trial_actor_ended_by_sigterm_prints_no_traceback_and_other_errors_still_show(monkeypatch, capsys):
    """The launchers' worker hook: Ray's SIGTERM handler raises SystemExit, and where that lands in a
    weakref callback Python prints "Exception ignored" and a traceback (seen under a failed sweep's
    one line); a real error in such a callback must still be printed."""
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # a plain worker's (not pytest's); restored after
    quiet_ray_worker()

    class Referent:
        pass

    def collected_while_raising(error):
        def callback(_):
            raise error
        referent = Referent()
        ref = weakref.ref(referent, callback)  # noqa: F841 - kept alive so that the callback runs
        del referent

    collected_while_raising(SystemExit(1))
    assert capsys.readouterr().err == ""
    collected_while_raising(ValueError("a real error"))
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: a real error" in err
