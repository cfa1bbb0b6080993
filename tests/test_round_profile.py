"""benchmarks/round_profile.py: its timing wrappers split a round into phases without changing
what the round computes, and two checkouts' results are compared field by field."""

import importlib.util
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from ray_lth.masks import ones_mask
from ray_lth.models import build_model, get_model_spec, prunable_parameters
from ray_lth.pruning import global_magnitude_prune
from ray_lth.tasks import ClassificationTask
from ray_lth.train import TrainHparams, train_masked

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def _round_profile():
    spec = importlib.util.spec_from_file_location("round_profile", ROOT / "benchmarks" / "round_profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_and_score(task):
    torch.manual_seed(0)
    model = build_model("resnet8", 4)
    weights = prunable_parameters(model, get_model_spec("resnet8").never_pruned)
    mask = global_magnitude_prune({n: p.detach() for n, p in weights.items()}, ones_mask(weights), 0.5)
    hparams = TrainHparams(epochs=2, batch_size=16, lr=0.05)
    stats = train_masked(model, task, hparams, mask, CPU, torch.Generator().manual_seed(1))
    return model.state_dict(), stats, task.evaluate(model, CPU)


def test_timed_task_splits_training_into_phases_and_leaves_the_results_bit_identical():
    profile = _round_profile()
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(40, 3, 8, 8, generator=g), torch.randint(0, 4, (40,), generator=g))
    clock = profile.PhaseClock()
    timed = _train_and_score(profile.TimedTask(ClassificationTask("tiny", data, data, 4), clock))
    plain = _train_and_score(ClassificationTask("tiny", data, data, 4))
    assert timed[1:] == plain[1:] and all(torch.equal(timed[0][k], plain[0][k]) for k in plain[0])
    assert clock.images == 2 * 40
    for phase in ("data", "forward", "backward", "optimiser + masking", "evaluation"):
        wall, cpu = clock.seconds[phase]
        assert wall > 0 and cpu >= 0, phase
    assert clock.seconds["bookkeeping"] == [0.0, 0.0]  # booked by the trajectory runner, not the task


def test_results_of_two_checkouts_differ_exactly_where_a_field_does():
    differences = _round_profile()._differences
    rounds = [{"round": 0, "metric": "0.9", "mask_digest": "a"}, {"round": 1, "metric": "0.8", "mask_digest": "b"}]
    assert differences(rounds, [dict(r) for r in rounds]) == []
    changed = [rounds[0], {**rounds[1], "metric": "0.8000000000000002"}]
    assert [d.split(":")[0] for d in differences(rounds, changed)] == ["round 1"]
    assert differences(rounds, rounds[:1]) == ["2 rounds before, 1 after"]
