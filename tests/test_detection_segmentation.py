"""Detectors and segmenters around the pruned backbone: shared parameters, the mask holding
through fine-tuning, θ_p keys all landing in the backbone, and an embedded fine-tune that beats
the untrained model."""

import pytest
import torch
from torchvision.models import resnet50

from ray_lth.masks import ones_mask
from ray_lth.models import build_model, get_model_spec, prunable_parameters
from ray_lth.pruning import global_magnitude_prune
from ray_lth.tasks import build_task
from ray_lth.tasks.backbone_features import dilate_last_stage
from ray_lth.tasks.detection.detectors import DetectorSettings, build_detector
from ray_lth.tasks.segmentation.segmenters import DeepLab
from ray_lth.train import schedule_for, train_masked
from ray_lth.weights import load_pretrained

CPU = torch.device("cpu")


def _pruned_backbone(weights, fraction=0.5):
    spec = get_model_spec("resnet8")
    torch.manual_seed(0)
    backbone = build_model("resnet8", 4)
    load_pretrained(backbone, str(weights), spec.heads)
    prunable = prunable_parameters(backbone, spec.never_pruned)
    mask = global_magnitude_prune({n: p.detach() for n, p in prunable.items()}, ones_mask(prunable), fraction)
    return spec, backbone, mask


def _fine_tune(task, weights, schedule, epochs):
    spec, backbone, mask = _pruned_backbone(weights)
    model = task.wrap(backbone, spec)
    before = task.evaluate(model, CPU)
    train_masked(model, task, schedule_for(schedule, epochs=epochs), mask, CPU, torch.Generator().manual_seed(0),
                 masked_module=backbone)
    after = task.evaluate(model, CPU)
    backbone_params = {id(p) for p in backbone.parameters()}
    head_params = [n for n, p in model.named_parameters() if id(p) not in backbone_params]
    for name, param in prunable_parameters(backbone, spec.never_pruned).items():
        assert (param.detach()[~mask[name]] == 0).all(), f"{name}: a pruned weight moved"
    assert "conv1.weight" not in mask and head_params  # the first conv and every head are dense
    return before, after


@pytest.mark.parametrize("detector", ["faster_rcnn", "retinanet"])
def test_embedded_detection_fine_tune_beats_the_untrained_detector(resnet8_weights, detector):
    task = build_task("detection_shapes", image_size=48, detector=detector, scenes_train=128, scenes_test=48)
    before, after = _fine_tune(task, resnet8_weights, "embedded_detection", epochs=4)
    assert set(after) == {"AP", "AP50", "AP75"}
    assert after["AP50"] > before["AP50"] + 0.1, (before, after)


@pytest.mark.parametrize("segmenter", ["deeplabv3plus", "deeplabv3"])
def test_embedded_segmentation_fine_tune_beats_the_untrained_segmenter(resnet8_weights, segmenter):
    task = build_task("segmentation_shapes", image_size=48, segmenter=segmenter, scenes_train=128, scenes_test=48)
    before, after = _fine_tune(task, resnet8_weights, "embedded_segmentation", epochs=3)
    assert after["mIoU"] > before["mIoU"] + 0.1, (before, after)


def test_dilated_resnet50_equals_torchvisions_output_stride_16_build():
    torch.manual_seed(0)
    ours, reference = resnet50(), resnet50(replace_stride_with_dilation=[False, False, True])
    reference.load_state_dict(ours.state_dict())
    dilate_last_stage(ours)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(ours.eval()(x), reference.eval()(x))


def _wrap(kind, backbone):
    if kind == "deeplabv3plus":
        return DeepLab(kind, backbone, 21, 128)
    settings = DetectorSettings(num_classes=20, image_size=128, max_size=160, image_mean=(0.5,) * 3,
                                image_std=(0.25,) * 3)
    return build_detector(kind, backbone, settings)


@pytest.mark.parametrize("kind", ["faster_rcnn", "retinanet", "deeplabv3plus"])
def test_every_torchvision_resnet50_backbone_key_lands_in_the_wrapper(tmp_path, kind):
    torch.manual_seed(1)
    theta_p = resnet50().state_dict()
    torch.save(theta_p, tmp_path / "r50.pt")
    backbone = build_model("resnet50", 21)
    load_pretrained(backbone, str(tmp_path / "r50.pt"), ("fc",))
    state = _wrap(kind, backbone).state_dict()
    # the wrapper reads the stages it needs through ".body."; stages it does not read are absent
    inside = {("." + k).split(".body.", 1)[1]: v for k, v in state.items() if ".body." in "." + k}
    assert "layer1.0.conv1.weight" in inside and "layer4.2.conv3.weight" in inside
    for key in (k for k in theta_p if not k.startswith("fc.")):
        assert torch.equal(inside[key], theta_p[key]), f"{kind}: {key} missing or different"


def test_detection_tasks_name_what_they_need():
    with pytest.raises(ValueError, match="needs image_size >= 32"):
        build_task("detection_shapes", image_size=16)
    with pytest.raises(ValueError, match=r"detector='yolo' is not allowed"):
        build_task("detection_shapes", image_size=48, detector="yolo", scenes_train=2, scenes_test=2)
    with pytest.raises(FileNotFoundError, match="pass --data-root"):
        build_task("voc_detection", image_size=600)
    # option values are checked with the config, so a space is refused before Ray starts
    from ray_lth.config import ImpConfig

    with pytest.raises(ValueError, match=r"detector='yolo' is not allowed"):
        ImpConfig.from_dict(dict(task="detection_shapes", rewind="init", detector="yolo"))
    with pytest.raises(ValueError, match=r"segmenter='unet' is not allowed"):
        ImpConfig.from_dict(dict(task="voc_segmentation", rewind="init", segmenter="unet"))
    with pytest.raises(ValueError, match="scenes_train must be an integer >= 1"):
        ImpConfig.from_dict(dict(task="segmentation_shapes", rewind="init", scenes_train=0))


@pytest.mark.parametrize("name, option, value", [("detection", "detector", "retinanet"),
                                                 ("segmentation", "segmenter", "deeplabv3")])
def test_dense_prediction_spaces_plan_dependent_trials_and_route_task_options(resnet8_weights, name, option, value):
    from ray_lth.spaces import load_space

    space = load_space(name).with_overrides({"weights": str(resnet8_weights), option: value})
    configs = space.validate()  # every trial's config, checked as before Ray starts
    plan = space.plan()
    assert option not in plan.upstream[0]  # the classification upstream has no such option
    downstream = [c for c in configs if c.task.endswith("_shapes") and c.task != "shapes"]
    assert downstream and all(c.task_options[option] == value for c in downstream)
    assert {c.mask_label for c in downstream} >= {"m_shapes-r2", "m_shapes-r4", "m_shapes-r6"}
    assert all(c.train.lr_schedule == ("cosine" if name == "detection" else "poly") for c in downstream)
    assert space.cpus_per_trial == 2
