import pytest
import torch
from torch import nn

from ray_lth.models import build_model, get_model_spec, prunable_parameter_names


def _conv_and_linear_weights(model):
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@pytest.mark.parametrize("name, expected", [("resnet18", 19), ("resnet50", 52), ("resnet20", 20), ("resnet56", 56), ("resnet8", 8)])
def test_prunable_are_all_convs_but_the_first_and_no_head(name, expected):
    model = build_model(name, num_classes=7)
    spec = get_model_spec(name)
    names = prunable_parameter_names(model, spec.never_pruned)
    assert len(names) == expected
    assert set(names) == _conv_and_linear_weights(model) - {"conv1.weight", "fc.weight"}


def test_biases_and_batchnorm_are_never_prunable():
    model = build_model("resnet18", 10)
    names = prunable_parameter_names(model, get_model_spec("resnet18").never_pruned)
    modules = dict(model.named_modules())
    assert all(n.endswith(".weight") for n in names)
    assert not any(isinstance(modules[n.rsplit(".", 1)[0]], nn.BatchNorm2d) for n in names)


def test_nested_head_is_excluded_by_module_path_not_substring():
    model = build_model("resnet8", 10)
    model.fc = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    model.fc_like = nn.Linear(3, 3)  # a module whose name merely starts with "fc"
    names = prunable_parameter_names(model, ("conv1", "fc"))
    assert "fc.0.weight" not in names and "fc.2.weight" not in names
    assert "fc_like.weight" in names


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="No such model: 'resnet9000'"):
        build_model("resnet9000", 10)


def test_builders_give_the_requested_head_and_run():
    for name in ("resnet8", "resnet20", "convnet"):
        model = build_model(name, 5)
        assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
