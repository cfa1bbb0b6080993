"""The exported sparse model computes what the masked dense model computes (to 1e-4)."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ray_lth.masks import ones_mask
from ray_lth.models import build_model, get_model_spec, prunable_parameters
from ray_lth.pruning import global_magnitude_prune
from ray_lth.sparse_export import SparseConv2d, export_sparse


def _model(name):
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    with torch.no_grad():  # BatchNorm statistics away from (0, 1), so folding is really tested
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
    return model


def _mask(model, name, fraction):
    weights = {n: p.detach() for n, p in prunable_parameters(model, get_model_spec(name).never_pruned).items()}
    return global_magnitude_prune(weights, ones_mask(weights), fraction)


def _reference(model, mask):
    """The masked dense model built with torch's own pruning utility, independent of ray_lth."""
    reference = copy.deepcopy(model)
    modules = dict(reference.named_modules())
    for name, keep in mask.items():
        torch_prune.custom_from_mask(modules[name.rsplit(".", 1)[0]], "weight", keep)
    return reference.eval()


@pytest.mark.parametrize("name,size,batch", [("resnet8", 16, 1), ("resnet8", 16, 3), ("convnet", 16, 2),
                                             ("resnet50", 32, 2)])
def test_exported_outputs_equal_the_masked_dense_model(name, size, batch):
    model = _model(name)
    mask = _mask(model, name, 0.9)
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    # min_speedup=0 forces every pruned layer onto the sparse kernel, whatever the timing says
    export = export_sparse(model, mask, x, min_speedup=0.0, repeats=1)
    sparse_layers = [m for m in export.model.modules() if isinstance(m, SparseConv2d)]
    assert len(sparse_layers) == len(mask)  # every pruned conv (conv1 and fc are never pruned)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in export.model.modules())  # folded
    with torch.no_grad():
        expected = _reference(model, mask)(x)
        assert torch.allclose(export.model(x), expected, atol=1e-4, rtol=0)
        other = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
        assert torch.allclose(export.model(other), _reference(model, mask)(other), atol=1e-4, rtol=0)


def test_timed_choice_keeps_outputs_and_reports_every_layer():
    model = _model("resnet8")
    mask = _mask(model, "resnet8", 0.95)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    export = export_sparse(model, mask, x, repeats=2)
    assert [c.name for c in export.layers if c.kernel == "sparse"] == [
        n for n, m in export.model.named_modules() if isinstance(m, SparseConv2d)]
    assert all(c.kernel == "dense" or c.dense_ms >= 1.05 * c.sparse_ms for c in export.layers)
    with torch.no_grad():
        assert torch.allclose(export.model(x), _reference(model, mask)(x), atol=1e-4, rtol=0)


def test_dead_inner_channels_are_removed_exactly():
    model = _model("resnet8")
    mask = ones_mask({n: p for n, p in prunable_parameters(model, get_model_spec("resnet8").never_pruned).items()})
    # layer2.0: conv1's output channels 0-4 pruned whole with BN bias < 0 (ReLU gives exactly 0),
    # conv2's input channels 10-12 pruned whole (never read); channel 20: pruned output, bias > 0
    mask["layer2.0.conv1.weight"][0:5] = False
    mask["layer2.0.conv1.weight"][20] = False
    mask["layer2.0.conv2.weight"][:, 10:13] = False
    with torch.no_grad():
        model.layer2[0].bn1.bias[0:5] = -1.0
        model.layer2[0].bn1.bias[20] = 0.5  # ReLU(0.5·γ...) > 0: a constant channel, must stay
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    export = export_sparse(model, mask, x, sparse_kernels=False)
    block = export.model.layer2[0]
    assert block.conv1.out_channels == block.conv2.in_channels == 32 - 5 - 3
    assert block.conv2.out_channels == 32  # block outputs feed the residual sum: kept
    assert {c.name: c.channels_removed for c in export.layers}["layer2.0.conv1"] == 8
    with torch.no_grad():
        assert torch.allclose(export.model(x), _reference(model, mask)(x), atol=1e-4, rtol=0)


def test_sparse_linear_matches_the_masked_linear():
    from ray_lth.sparse_export import SparseLinear

    torch.manual_seed(5)
    linear = nn.Linear(40, 7)
    with torch.no_grad():
        linear.weight.mul_(torch.rand(7, 40) > 0.9)
    x = torch.randn(2, 3, 40)
    with torch.no_grad():
        assert torch.allclose(SparseLinear(linear)(x), linear(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kernel,stride,padding,dilation", [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (5, 2, 2, 1),
                                                            (1, 1, 0, 1), (1, 2, 0, 1), (1, 1, 1, 1)])
@pytest.mark.parametrize("batch,channels_last", [(1, False), (1, True), (3, False), (3, True)])
def test_sparse_convolution_equals_torch_convolution(kernel, stride, padding, dilation, batch, channels_last):
    torch.manual_seed(6)
    conv = nn.Conv2d(6, 5, kernel, stride, padding, dilation).eval()
    with torch.no_grad():
        conv.weight.mul_(torch.rand_like(conv.weight) > 0.7)
    x = torch.randn(batch, 6, 13, 11)
    if channels_last:  # how the export's dense layers hand activations on
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.allclose(SparseConv2d(conv)(x), conv(x), atol=1e-5, rtol=0)


def test_channels_last_changes_the_layout_only():
    model = _model("resnet8")
    mask = _mask(model, "resnet8", 0.9)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    last = export_sparse(model, mask, x, sparse_kernels=False).model
    first = export_sparse(model, mask, x, sparse_kernels=False, channels_last=False).model
    last_weights = [m.weight for m in last.modules() if isinstance(m, nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in last_weights)
    assert not all(w.is_contiguous() for w in last_weights)
    assert all(m.weight.is_contiguous() for m in first.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        expected = _reference(model, mask)(x)
        assert torch.allclose(last(x), expected, atol=1e-4, rtol=0)
        assert torch.allclose(first(x), expected, atol=1e-4, rtol=0)
