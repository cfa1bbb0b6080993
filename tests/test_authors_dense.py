"""The detection and segmentation transfers as the authors' code computes them (issue 19), each
pinned against a reference written here from their code (VITA-Group/CV_LTH_Pre-training)."""

import pytest
import torch
from torch import nn

import ray_lth.imp as imp
from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.tasks import TASKS


# ---- item 10: what a detection round restores from θ_p and what it carries over, trained ----
# (wt-carry) Detection/train_imp.py, round imp_num > 0: build the detector, load θ_p into its
# backbone, then load every key of the previous round's trained and pruned model
# (backbone_imp{k}.pth 'all_state_dict') that the fresh model has: torch.nn.utils.prune renamed the
# pruned convs' weights to weight_orig, so those keys are not loaded and stay θ_p; everything else
# (neck, heads, the backbone's batch norms, its first conv, reloaded again from 'first_conv1')
# comes from the last round. Detection/pruning.py pruning_model(exclude_first=True) prunes every
# Conv2d of the backbone but the first.

DETECTION = dict(model="resnet8", task="detection_shapes", rewind="pretrained", rounds=1, epochs=1, lr=0.02,
                 device="cpu", prune_fraction=0.5, image_size=32, scenes_train=16, scenes_test=8, batch_size=8)


@pytest.fixture
def detector_rounds(monkeypatch):
    """Per call of ``train_masked``: the detector's state_dict as training starts and ends, and
    the detector's key of every backbone Conv2d weight but the first conv's (by module identity,
    from the backbone's own named modules), with the backbone's name for it."""
    rounds = []
    real = imp.train_masked

    def recording(model, task, hparams, mask, device, generator, step_hook=None, masked_module=None, **hooks):
        pruned_convs = {id(m): name for name, m in masked_module.named_modules()
                        if isinstance(m, nn.Conv2d) and name != "conv1"}
        convs = {f"{name}.weight": f"{pruned_convs[id(m)]}.weight" for name, m in model.named_modules()
                 if id(m) in pruned_convs}
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        stats = real(model, task, hparams, mask, device, generator, step_hook, masked_module, **hooks)
        rounds.append({"start": start, "end": {k: v.detach().clone() for k, v in model.state_dict().items()},
                       "convs": convs})
        return stats

    monkeypatch.setattr(imp, "train_masked", recording)
    return rounds


def test_detection_rounds_restore_the_pruned_convs_and_carry_the_rest_over_trained(resnet8_weights,
                                                                                   detector_rounds):
    config = ImpConfig.from_dict({**DETECTION, "weights": str(resnet8_weights)})
    assert (config.rewind_scope, config.carry_optimizer) == ("pruned", False)  # a new SGD every round, as theirs
    results = list(run_trajectory(config))
    round_0, round_1 = detector_rounds
    mask = results[0].state.mask
    restored = round_0["convs"]
    assert sorted(restored.values()) == sorted(mask)  # the authors' pruned convs are the mask's weights
    carried = set(round_1["start"]) - set(restored)
    for key, name in restored.items():  # θ_p under this round's mask
        assert torch.equal(round_1["start"][key], round_0["start"][key] * mask[name]), key
    for key in carried:  # round 0's trained values, not θ_p or the heads' draw
        assert torch.equal(round_1["start"][key], round_0["end"][key]), key
    trained_on = [k for k in carried if not torch.equal(round_0["end"][k], round_0["start"][k])]
    first_conv = [k for k in carried if k.endswith("body.conv1.weight")]
    assert len(first_conv) == 1 and any("fpn" in k for k in trained_on) and any("roi_heads" in k for k in trained_on)
    assert any(k.endswith(("bn1.weight", "bn1.running_mean")) for k in carried)


def test_rewind_scope_all_restores_the_whole_detector_and_the_scope_is_checked(resnet8_weights, detector_rounds):
    config = ImpConfig.from_dict({**DETECTION, "weights": str(resnet8_weights), "rewind_scope": "all"})
    results = list(run_trajectory(config))
    round_0, round_1 = detector_rounds
    mask = results[0].state.mask
    names = round_0["convs"]
    for key, value in round_1["start"].items():
        expected = round_0["start"][key] * mask[names[key]] if key in names else round_0["start"][key]
        assert torch.equal(value, expected), key
    assert TASKS.get("voc_detection").rewind_scope == "pruned"  # the paper's detection space, as the embedded one
    with pytest.raises(ValueError, match=r"rewind_scope='neck' is not allowed"):
        ImpConfig.from_dict({**DETECTION, "weights": str(resnet8_weights), "rewind_scope": "neck"})
