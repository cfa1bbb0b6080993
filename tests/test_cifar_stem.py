"""The CIFAR ResNets (issue 12, item 1): the authors' stem on torchvision's ResNet, and θ_p
loaded into everything but conv1 and the head."""

import pytest
import torch
from torch import nn
from torchvision import models as tv_models

from ray_lth.imp import load_theta_p
from ray_lth.models import build_model, get_model_spec, prunable_parameter_names
from ray_lth.spaces import load_space

REFERENCES = {"resnet18_cifar": tv_models.resnet18, "resnet50_cifar": tv_models.resnet50,
              "resnet152_cifar": tv_models.resnet152}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_cifar_stem_is_3x3_stride_1_without_max_pool_and_all_else_is_torchvision(name):
    model = build_model(name, 10)
    reference = REFERENCES[name](weights=None, num_classes=10)
    conv1 = model.conv1
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size, conv1.stride, conv1.padding, conv1.bias) == \
        (3, 64, (3, 3), (1, 1), (1, 1), None)
    assert isinstance(model.maxpool, nn.Identity) and isinstance(reference.maxpool, nn.MaxPool2d)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert set(ours) == set(theirs)  # torchvision's key names: a θ_p file fits
    assert {k for k in ours if ours[k].shape != theirs[k].shape} == {"conv1.weight"}
    stem = {"conv1", "maxpool"}
    assert [(n, type(m)) for n, m in model.named_modules() if n not in stem] == \
        [(n, type(m)) for n, m in reference.named_modules() if n not in stem]
    # conv1 and the head are never pruned; the prunable weights are the ImageNet model's, so a mask
    # found on ImageNet (m_Img, resnet50) fits the CIFAR network
    spec = get_model_spec(name)
    names = prunable_parameter_names(model, spec.never_pruned)
    assert "conv1.weight" not in names and "fc.weight" not in names
    assert names == prunable_parameter_names(reference, spec.never_pruned)


def test_layer4_is_4x4_on_a_32_pixel_image():
    model = build_model("resnet50_cifar", 10).eval()
    reference = tv_models.resnet50(weights=None).eval()
    seen = {}
    model.layer4.register_forward_hook(lambda m, i, out: seen.__setitem__("ours", out.shape))
    reference.layer4.register_forward_hook(lambda m, i, out: seen.__setitem__("imagenet", out.shape))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        reference(torch.randn(2, 3, 32, 32))
    assert seen == {"ours": (2, 2048, 4, 4), "imagenet": (2, 2048, 1, 1)}


def test_theta_p_fills_every_key_but_conv1_and_the_head_and_says_why(tmp_path, capsys):
    torch.manual_seed(0)
    source = tv_models.resnet50(weights=None)  # a torchvision-format θ_p: random values, real keys
    for buffer in source.buffers():
        if buffer.is_floating_point():
            buffer.uniform_(0.5, 1.5)  # BN statistics differ from a fresh model's, so loading shows
    theta_p = {k: v.clone() for k, v in source.state_dict().items()}
    torch.save(theta_p, tmp_path / "resnet50.pth")
    torch.manual_seed(1)
    model = build_model("resnet50_cifar", 10)
    fresh_conv1 = model.conv1.weight.detach().clone()
    assert load_theta_p(model, get_model_spec("resnet50_cifar"), "cifar10", tmp_path / "resnet50.pth",
                        "auto") == "torchvision"
    state = model.state_dict()
    skipped = {k for k in theta_p if k.startswith(("conv1.", "fc."))}
    assert skipped == {"conv1.weight", "fc.weight", "fc.bias"}
    for key in set(theta_p) - skipped:
        assert torch.equal(state[key], theta_p[key]), key  # bit-exact
    assert torch.equal(state["conv1.weight"], fresh_conv1) and state["conv1.weight"].shape == (64, 3, 3, 3)
    assert state["fc.weight"].shape == (10, 2048)
    line = capsys.readouterr().err
    assert "conv1.weight (conv1: CIFAR stem 3×3/1, freshly initialised, as the authors' code)" in line
    assert "fc.weight, fc.bias (fc: task head, new for this task)" in line
    assert f"{len(theta_p) - 3} keys loaded" in line


def test_paper_cifar_runs_the_cifar_network():
    space = load_space("paper_cifar")
    assert space.model == "resnet50_cifar"
    assert space.fixed["image_size"] == 32


def test_paper_cifar_from_the_random_init_needs_no_weights_file():
    """(m_T, θ_0) of Figure 3: `--space paper_cifar --set rewind=init` runs without --weights."""
    from pathlib import Path

    from ray_lth.spaces import load_space, resolve_weights

    space = load_space("paper_cifar")
    with pytest.raises(ValueError, match="needs pre-trained weights"):
        resolve_weights(space, None, Path("unused"))
    from_init = resolve_weights(space.with_overrides({"rewind": "init"}), None, Path("unused"))
    assert [c.rewind for c in from_init.validate()] == ["init"] * 3 and "weights" not in from_init.fixed
