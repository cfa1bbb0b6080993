"""The detectron2 backend, against a detectron2 built from its public source. detectron2 has no
working package on the registry, so these tests skip where it is not installed."""

import pytest
import torch
from torchvision.models import resnet50

from ray_lth.tasks.detection.detectron2_backend import (detectron2_available, map_state_dict,
                                                         torchvision_to_detectron2_key)

pytestmark = pytest.mark.skipif(
    not detectron2_available(),
    reason="detectron2 is not installed: it has no working distribution on the package registry; build it from "
           "its source (pip install --no-build-isolation -e <detectron2 checkout>, setuptools<81) to run these")


def test_key_mapping_by_hand():
    assert torchvision_to_detectron2_key("conv1.weight") == "stem.conv1.weight"
    assert torchvision_to_detectron2_key("bn1.running_var") == "stem.conv1.norm.running_var"
    assert torchvision_to_detectron2_key("layer1.0.conv1.weight") == "res2.0.conv1.weight"
    assert torchvision_to_detectron2_key("layer4.2.bn3.bias") == "res5.2.conv3.norm.bias"
    assert torchvision_to_detectron2_key("layer2.0.downsample.0.weight") == "res3.0.shortcut.weight"
    assert torchvision_to_detectron2_key("layer2.0.downsample.1.weight") == "res3.0.shortcut.norm.weight"
    assert torchvision_to_detectron2_key("fc.weight") is None


def _detector(theta_p, tmp_path, image_size=64):
    from ray_lth.models import build_model
    from ray_lth.tasks.detection.detectors import DetectorSettings
    from ray_lth.tasks.detection.detectron2_backend import build_detectron2_detector
    from ray_lth.weights import load_pretrained

    torch.save(theta_p, tmp_path / "r50.pt")
    backbone = build_model("resnet50", 4)
    load_pretrained(backbone, str(tmp_path / "r50.pt"), ("fc",))
    settings = DetectorSettings(num_classes=4, image_size=image_size, max_size=image_size,
                                image_mean=(0.5,) * 3, image_std=(0.25,) * 3)
    return backbone, build_detectron2_detector(backbone, settings)


def test_mapped_theta_p_covers_detectron2s_resnet50_and_computes_the_same_features(tmp_path):
    torch.manual_seed(0)
    theta_p = resnet50().state_dict()
    backbone, detector = _detector(theta_p, tmp_path)
    bottom_up = detector.model.backbone.bottom_up
    d2_state = bottom_up.state_dict()
    mapped = map_state_dict(theta_p)
    assert set(mapped) == set(d2_state)  # every key has a counterpart, none is left over
    for key, value in mapped.items():
        assert torch.equal(d2_state[key], value), key
    assert bottom_up.res2[0].conv1.weight is backbone.layer1[0].conv1.weight  # shared, not copied
    # torchvision's stride-in-3x3 ResNet in eval mode = detectron2's with STRIDE_IN_1X1 False, frozen BN
    x = torch.randn(2, 3, 64, 64)
    backbone.eval()
    reference = backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(
        backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))))))
    assert torch.allclose(bottom_up(x)["res5"], reference, atol=1e-4)


def test_a_masked_fine_tune_keeps_pruned_weights_at_zero_and_scores_ap(tmp_path):
    from ray_lth.masks import ones_mask
    from ray_lth.models import get_model_spec, prunable_parameters
    from ray_lth.pruning import global_magnitude_prune
    from ray_lth.tasks import build_task
    from ray_lth.train import schedule_for, train_masked

    torch.manual_seed(0)
    backbone, _ = _detector(resnet50().state_dict(), tmp_path)
    spec = get_model_spec("resnet50")
    prunable = prunable_parameters(backbone, spec.never_pruned)
    mask = global_magnitude_prune({n: p.detach() for n, p in prunable.items()}, ones_mask(prunable), 0.5)
    task = build_task("detection_shapes", image_size=64, detector="detectron2", scenes_train=8, scenes_test=4)
    model = task.wrap(backbone, spec)
    stats = train_masked(model, task, schedule_for("embedded_detection", epochs=1, batch_size=4), mask,
                         torch.device("cpu"), torch.Generator().manual_seed(0), masked_module=backbone)
    assert stats["iterations"] == 2 and stats["train_loss"] > 0
    for name, param in prunable.items():
        assert (param.detach()[~mask[name]] == 0).all(), name
    assert set(task.evaluate(model, torch.device("cpu"))) == {"AP", "AP50", "AP75"}
