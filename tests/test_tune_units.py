"""Ray Tune pieces fed by hand: no trial runs (as Tune's own scheduler tests do)."""

import shutil

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.matching import MatchingTracker
from ray_lth.spaces import SweepSpace, load_space
from ray_lth.naming import group_name
from ray_lth.tune.scheduler import MatchingScheduler
from ray_lth.tune.trainable import resume_state


class FakeTrial:
    def __init__(self, trial_id, seed, status=Trial.RUNNING):
        self.trial_id, self.status = trial_id, status
        self.config = dict(model="resnet8", task="digits", rewind="pretrained", seed=seed, rounds=5)

    def __str__(self):
        return self.trial_id


class FakeController:
    def __init__(self, trials):
        self.trials = trials

    def get_trials(self):
        return self.trials


def _result(trial, round_index, metric):
    return {"group": group_name(trial.config), "round": round_index, "sparsity": 1 - 0.8**round_index,
            "metric": metric}


def test_scheduler_stops_a_trajectory_that_no_longer_matches_and_lets_a_matching_one_go_on():
    trials = [FakeTrial("a", 0), FakeTrial("b", 1)]
    controller = FakeController(trials)
    scheduler = MatchingScheduler(MatchingTracker(seeds_per_group=2))
    assert scheduler.on_trial_result(controller, trials[0], _result(trials[0], 0, 0.90)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(controller, trials[1], _result(trials[1], 0, 0.92)) == TrialScheduler.CONTINUE
    # band = 0.91 - 0.0141
    assert scheduler.on_trial_result(controller, trials[0], _result(trials[0], 1, 0.91)) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(controller, trials[1], _result(trials[1], 1, 0.80)) == TrialScheduler.STOP
    assert scheduler.stopped["b"] == {"group": group_name(trials[1].config), "round": 1, "last_matching_round": 0}
    assert scheduler.on_trial_result(controller, trials[0], _result(trials[0], 2, 0.905)) == TrialScheduler.CONTINUE


def test_scheduler_never_judges_on_a_partial_band_and_pauses_while_a_seed_waits():
    trials = [FakeTrial("a", 0), FakeTrial("b", 1), FakeTrial("c", 2, status=Trial.PENDING)]
    controller = FakeController(trials)
    scheduler = MatchingScheduler(MatchingTracker(seeds_per_group=3))
    scheduler.on_trial_result(controller, trials[1], _result(trials[1], 0, 0.99))
    decision = scheduler.on_trial_result(controller, trials[0], _result(trials[0], 0, 0.90))
    assert decision == TrialScheduler.PAUSE  # seed 2 has not started: give it the slot
    last_round = FakeTrial("d", 3)
    last_round.config["rounds"] = 0  # a one-round trial has nothing left to pause for
    assert scheduler.on_trial_result(controller, last_round, _result(last_round, 0, 0.9)) == TrialScheduler.CONTINUE
    trials[2].status = Trial.RUNNING
    assert scheduler.on_trial_result(controller, trials[0], _result(trials[0], 1, 0.10)) == TrialScheduler.CONTINUE
    scheduler.on_trial_result(controller, trials[2], _result(trials[2], 0, 0.95))
    assert scheduler.on_trial_result(controller, trials[0], _result(trials[0], 2, 0.10)) == TrialScheduler.STOP


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
