"""Ray Tune pieces fed by hand: no trial runs (as Tune's own scheduler tests do)."""

import random
import shutil

import numpy as np

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.matching import MatchingTracker
from ray_lth.spaces import SweepSpace, load_space
from ray_lth.naming import group_name
from ray_lth.tune.scheduler import MAX_LEAD, MatchingScheduler
from ray_lth.tune.trainable import resume_state


class FakeTrial:
    def __init__(self, trial_id, seed, status=Trial.RUNNING, rounds=5, **config):
        self.trial_id, self.status, self.is_saving = trial_id, status, False
        self.config = dict(model="resnet8", task="digits", rewind="pretrained", seed=seed, rounds=rounds, **config)

    def __str__(self):
        return self.trial_id


class FakeController:
    """What MatchingScheduler uses of Tune's controller: the trials, and stopping one."""

    def __init__(self, trials):
        self.trials = trials

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        trial.status = Trial.TERMINATED


def _result(trial, round_index, metric):
    return {"group": group_name(trial.config), "round": round_index, "sparsity": 1 - 0.8**round_index,
            "metric": metric}


def _report(scheduler, controller, trial, metrics):
    """Feed one trial's rounds; returns the decisions."""
    return [scheduler.on_trial_result(controller, trial, _result(trial, k, m)) for k, m in metrics]


def test_one_noisy_seed_failing_alone_stops_nothing():
    trials = [FakeTrial("a", 0), FakeTrial("b", 1), FakeTrial("c", 2)]
    controller = FakeController(trials)
    scheduler = MatchingScheduler(MatchingTracker(seeds_per_group=3, patience=1))
    decisions = []
    for k, metrics in enumerate([(0.90, 0.90, 0.90), (0.95, 0.95, 0.82), (0.96, 0.94, 0.81), (0.95, 0.95, 0.82)]):
        for trial, metric in zip(trials, metrics):  # seed c fails the band (0.90) alone at every pruned round
            decisions += _report(scheduler, controller, trial, [(k, metric)])
    assert decisions == [TrialScheduler.CONTINUE] * 12 and scheduler.stopped == {}


def test_a_group_stops_together_on_its_seed_mean_and_waiting_seeds_are_ended_at_once():
    trials = [FakeTrial("a", 0), FakeTrial("b", 1), FakeTrial("c", 2), FakeTrial("x", 0, lr=0.5)]
    controller = FakeController(trials)
    scheduler = MatchingScheduler(MatchingTracker(seeds_per_group=2, patience=1))
    a, b, c, other = trials
    c.config["seed"] = 0
    c.config["lr"] = 0.5  # c and x: another group, which must go on
    assert _report(scheduler, controller, a, [(0, 0.90), (1, 0.95), (2, 0.80), (3, 0.80)]) == [TrialScheduler.CONTINUE] * 4
    b.status = Trial.PAUSED
    assert _report(scheduler, controller, c, [(0, 0.90)]) == [TrialScheduler.CONTINUE]
    b.status = Trial.RUNNING
    assert _report(scheduler, controller, b, [(0, 0.90), (1, 0.91)]) == [TrialScheduler.CONTINUE] * 2
    # round 2's seed-mean (0.80 + 0.85) / 2 fails the band 0.90: b stops, and a, which ran ahead, too
    assert _report(scheduler, controller, b, [(2, 0.85)]) == [TrialScheduler.STOP]
    assert _report(scheduler, controller, a, [(4, 0.95)]) == [TrialScheduler.STOP]
    assert scheduler.stopped == {"b": {"group": group_name(b.config), "round": 2, "stop_round": 2},
                                 "a": {"group": group_name(a.config), "round": 4, "stop_round": 2}}
    assert _report(scheduler, controller, other, [(0, 0.90), (1, 0.10)]) == [TrialScheduler.CONTINUE] * 2


def test_a_stop_reaches_a_seed_that_waits_for_a_core_and_spares_one_that_finished():
    trials = [FakeTrial("a", 0, rounds=2), FakeTrial("b", 1, rounds=2), FakeTrial("c", 2, rounds=2)]
    controller = FakeController(trials)
    scheduler = MatchingScheduler(MatchingTracker(seeds_per_group=3, patience=1))
    a, b, c = trials
    _report(scheduler, controller, a, [(0, 0.9), (1, 0.5), (2, 0.5)])  # a reached its last round: not "stopped"
    a.status = Trial.TERMINATED
    _report(scheduler, controller, b, [(0, 0.9)])
    b.status = Trial.PAUSED
    assert _report(scheduler, controller, c, [(0, 0.9)]) == [TrialScheduler.CONTINUE]
    c.status = Trial.PENDING
    b.status = Trial.RUNNING
    assert _report(scheduler, controller, b, [(1, 0.5)]) == [TrialScheduler.CONTINUE]  # c's round 1 is not in yet
    b.status, c.status = Trial.PENDING, Trial.RUNNING
    assert _report(scheduler, controller, c, [(1, 0.5)]) == [TrialScheduler.STOP]
    assert b.status == Trial.TERMINATED  # waiting for a core: ended, not restarted to be stopped
    assert sorted(scheduler.stopped) == ["b", "c"]
    assert scheduler.debug_string().startswith("MatchingScheduler: 2 trajectories ended before their last round")


def test_patience_counts_consecutive_seed_mean_failures():
    trials = [FakeTrial("a", 0, rounds=8), FakeTrial("b", 1, rounds=8)]
    controller = FakeController(trials)
    scheduler = MatchingScheduler(MatchingTracker(seeds_per_group=2, patience=2))
    a, b = trials
    # seed-means: 0.90, 0.85 (fail), 0.92, 0.85 (fail), 0.85 (fail: second in a row)
    curves = {a: [0.90, 0.80, 0.94, 0.95, 0.80], b: [0.90, 0.90, 0.90, 0.75, 0.90]}
    decisions = [scheduler.on_trial_result(controller, t, _result(t, k, curves[t][k])) for k in range(5) for t in trials]
    assert decisions == [TrialScheduler.CONTINUE] * 9 + [TrialScheduler.STOP]


def test_a_seed_running_ahead_yields_its_core_to_a_waiting_group_mate_behind_it():
    rounds = 2 * MAX_LEAD + 1
    trials = [FakeTrial("a", 0, rounds=rounds), FakeTrial("b", 1, rounds=rounds),
              FakeTrial("c", 2, status=Trial.PENDING, rounds=rounds)]
    controller = FakeController(trials)
    scheduler = MatchingScheduler(MatchingTracker(seeds_per_group=3))
    a, b, c = trials
    # c has not started: a may run MAX_LEAD rounds (0 .. MAX_LEAD - 1) before it yields
    assert _report(scheduler, controller, a, [(k, 0.9) for k in range(MAX_LEAD)]) == \
        [TrialScheduler.CONTINUE] * (MAX_LEAD - 1) + [TrialScheduler.PAUSE]
    a.status = Trial.PAUSED
    assert scheduler.choose_trial_to_run(controller) is c  # the waiting seed furthest behind first
    c.status = Trial.RUNNING
    # no group-mate waits now except a, which is ahead: b goes on
    assert _report(scheduler, controller, b, [(k, 0.9) for k in range(2 * MAX_LEAD)]) == \
        [TrialScheduler.CONTINUE] * (2 * MAX_LEAD - 1) + [TrialScheduler.PAUSE]  # MAX_LEAD rounds ahead of a
    b.status = Trial.PAUSED
    assert scheduler.choose_trial_to_run(controller) is a
    last = FakeTrial("d", 3, rounds=0)  # a one-round trial has nothing left to pause for
    controller.trials.append(last)
    assert _report(scheduler, controller, last, [(0, 0.9)]) == [TrialScheduler.CONTINUE]
    unpaused = MatchingScheduler(MatchingTracker(seeds_per_group=3), pause_ahead=False)
    assert _report(unpaused, controller, c, [(k, 0.9) for k in range(MAX_LEAD + 3)]) == [TrialScheduler.CONTINUE] * (MAX_LEAD + 3)


def test_two_seeds_ahead_of_one_waiting_seed_do_not_both_yield():
    rounds = 2 * MAX_LEAD + 1
    trials = [FakeTrial("a", 0, rounds=rounds), FakeTrial("b", 1, rounds=rounds),
              FakeTrial("c", 2, status=Trial.PENDING, rounds=rounds)]
    controller = FakeController(trials)
    scheduler = MatchingScheduler(MatchingTracker(seeds_per_group=3))
    a, b, _ = trials
    _report(scheduler, controller, a, [(k, 0.9) for k in range(MAX_LEAD - 1)])
    assert _report(scheduler, controller, b, [(k, 0.9) for k in range(MAX_LEAD)])[-1] == TrialScheduler.PAUSE
    b.status = Trial.PAUSED  # c gets b's core; a yielding too would only swap places with b
    assert _report(scheduler, controller, a, [(MAX_LEAD - 1, 0.9)]) == [TrialScheduler.CONTINUE]


def _footnote7(curves):
    """Straight from the full curves (seeds x rounds): threshold = mean - sample std of the seeds'
    round-0 metrics; per round, whether the seed-mean is at or above it; the largest such sparsity."""
    table = np.array(curves)
    threshold = table[:, 0].mean() - table[:, 0].std(ddof=1)
    matches = table.mean(axis=0) >= threshold
    return max(1 - 0.8**k for k in range(table.shape[1]) if matches[k]), matches, table >= threshold


def _first_stop(matches, patience):
    """The round ending the first ``patience`` failures in a row (pruned rounds), or None."""
    run = 0
    for k in range(1, len(matches)):
        run = 0 if matches[k] else run + 1
        if run >= patience:
            return k
    return None


def _simulate_sweep(curves, patience, slots, rng):
    """Run the scheduler over hand-made curves as Tune would: ``slots`` trials at a time, a random
    running trial reports its next round, STOP and PAUSE honoured; returns the rows results.csv holds."""
    rounds = len(curves[0]) - 1
    trials = [FakeTrial(f"seed{s}", s, status=Trial.PENDING, rounds=rounds) for s in range(len(curves))]
    controller = FakeController(trials)
    scheduler = MatchingScheduler(MatchingTracker(len(curves), patience))
    next_round, rows = {t: 0 for t in trials}, []
    while True:
        while sum(t.status == Trial.RUNNING for t in trials) < slots and (chosen := scheduler.choose_trial_to_run(controller)):
            chosen.status = Trial.RUNNING
        running = [t for t in trials if t.status == Trial.RUNNING]
        if not running:
            return rows, scheduler
        trial = running[rng.randrange(len(running))]
        k = next_round[trial]
        result = _result(trial, k, curves[trial.config["seed"]][k])
        rows.append((str(trial), result))
        next_round[trial] += 1
        decision = scheduler.on_trial_result(controller, trial, result)
        trial.status = {TrialScheduler.PAUSE: Trial.PAUSED, TrialScheduler.STOP: Trial.TERMINATED}.get(
            decision, Trial.TERMINATED if k == rounds else Trial.RUNNING)


def test_reported_max_matching_equals_the_full_curves_whenever_the_seed_mean_does_not_recover():
    rng = random.Random(7)
    checked = stopped_early = a_seed_alone_would_have_stopped_earlier = 0
    for _ in range(200):
        seeds, rounds, patience = rng.randint(2, 4), rng.randint(6, 12), rng.randint(1, 3)
        boundary, slope = rng.randint(1, rounds + 3), rng.uniform(0.005, 0.03)
        trend = [0.90 - max(0, k - boundary) * slope for k in range(rounds + 1)]
        curves = [[m + rng.gauss(0, 0.012) for m in trend] for _ in range(seeds)]
        full_best, matches, seed_matches = _footnote7(curves)
        rows, scheduler = _simulate_sweep(curves, patience, slots=rng.randint(1, seeds), rng=rng)
        tracker = MatchingTracker(seeds, patience)  # as run_sweep's summary: every row results.csv holds
        for name, r in rows:
            tracker.add(r["group"], name, r["round"], r["sparsity"], r["metric"])
        reported = tracker.group_summary(rows[0][1]["group"])["max_matching_sparsity"]
        stop = _first_stop(matches, patience)
        stopped_early += stop is not None and stop < rounds
        a_seed_alone_would_have_stopped_earlier += any(
            (_first_stop(own, patience) or rounds + 1) < (stop or rounds + 1) for own in seed_matches)
        if stop is not None and matches[stop + 1:].any():  # the seed-mean recovers after the stop
            assert reported <= full_best + 1e-9
            continue
        checked += 1
        assert reported == pytest.approx(full_best, abs=1e-9)  # sparsities 1 - 0.8^k lie >= 1e-2 apart
    assert checked >= 150 and stopped_early >= 100 and a_seed_alone_would_have_stopped_earlier >= 80


def test_corrupt_round_is_reported_by_name_and_the_previous_round_resumes(tmp_path, capsys, resnet8_weights):
    config = ImpConfig.from_dict(dict(model="resnet8", weights=str(resnet8_weights), rounds=2, epochs=1, device="cpu"))
    for result in run_trajectory(config):
        result.state.save(tmp_path / "trajectory")
    assert resume_state(tmp_path / "trajectory", None).next_round == 3
    shutil.copytree(tmp_path / "trajectory", tmp_path / "checkpoint")
    corrupt = tmp_path / "trajectory" / "mask_round_03.rlthmask"
    data = bytearray(corrupt.read_bytes())
    data[40] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    state = resume_state(tmp_path / "trajectory", None)
    assert state.next_round == 2 and [r.round for r in state.records] == [0, 1]
    assert "mask_round_03.rlthmask" in capsys.readouterr().err
    # the most advanced valid state wins: here the intact Tune checkpoint of round 2
    assert resume_state(tmp_path / "trajectory", tmp_path / "checkpoint").next_round == 3


def test_spaces_validate_before_ray_starts():
    quick = load_space("quick")
    assert quick.seeds_per_group == 3 and quick.fixed["rounds"] >= 10  # 1 - 0.8^10 = 89.26 %
    with pytest.raises(ValueError, match="prune_fraction must be in"):
        quick.with_overrides({"prune_fraction": 1.5, "rewind": "init"}).validate()
    with pytest.raises(ValueError, match="model='alexnet'"):
        quick.with_overrides({"model": "alexnet", "rewind": "init"}).validate()
    with pytest.raises(ValueError, match="rewind='rewound'"):
        quick.with_overrides({"rewind": "rewound"}).validate()
    with pytest.raises(ValueError, match="No such search space: 'nope'"):
        load_space("nope")
    grid = SweepSpace("t", fixed=dict(rewind="init"), grid=dict(seed=[0, 1], lr=[0.1, 0.01]))
    assert len(grid.validate()) == 4
    assert grid.with_overrides({"seed": [0, 1, 2, 3]}).seeds_per_group == 4


def test_optuna_spaces_are_checked_before_ray_starts():
    optuna = load_space("optuna_hparams")
    assert optuna.sample and optuna.num_samples >= 10
    base = SweepSpace("t", fixed=dict(rewind="init"), grid=dict(seed=[0]))
    ok = SweepSpace(**{**base.__dict__, "sample": {"lr": ("loguniform", 0.01, 0.1), "rewind": ("choice", ["init"])}})
    assert len(ok.validate()) == 1 + 2 + 1
    with pytest.raises(ValueError, match=r"sample\['lr'\].*0 < low < high"):
        SweepSpace(**{**base.__dict__, "sample": {"lr": ("loguniform", 0.0, 0.1)}}).validate()
    with pytest.raises(ValueError, match="kind in"):
        SweepSpace(**{**base.__dict__, "sample": {"lr": ("gaussian", 0.1, 0.2)}}).validate()
    with pytest.raises(ValueError, match="prune_fraction must be in"):
        SweepSpace(**{**base.__dict__, "sample": {"prune_fraction": ("uniform", 0.1, 1.5)}}).validate()
    with pytest.raises(ValueError, match="takes no grid axes"):
        SweepSpace(**{**base.__dict__, "grid": {"seed": [0, 1]}, "sample": {"lr": ("uniform", 0.1, 0.2)}}).validate()
