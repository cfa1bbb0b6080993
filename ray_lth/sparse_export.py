"""Export a ticket as a model that runs faster on the CPU, not just one full of zeros.

``export_sparse(model, mask, example_input)`` returns an inference-only copy (eval mode) whose
outputs equal the masked dense model's up to float rounding:

1. the mask is applied and every BatchNorm that follows a convolution is folded into it
   (w·γ/σ, β − μ·γ/σ as a bias): one op instead of two, and zeros stay zeros;
2. channels that carry nothing are removed inside residual blocks: an inner channel whose
   consumer weights are all pruned, or whose producer weights are all pruned and whose folded
   bias is ≤ 0 (so ReLU makes it exactly 0); the block's output channels stay, the residual
   sum needs them;
3. every remaining pruned convolution or linear layer becomes a CSR sparse-times-dense matmul
   (``torch.sparse.addmm``, int32 indices; a convolution as im2col, a strided view of the padded
   input copied once) *where it pays*: both versions are timed on the layer's own input from
   ``example_input`` and the sparse one is kept only if it is faster. Which layers win depends
   on the shapes and the per-layer sparsity, so it is measured: torch's CSR kernel does a few
   GFLOP/s on one CPU thread where oneDNN's dense convolution does tens, so in ResNet-50 at 90 %
   global sparsity only the layers at <= ~13 % density win (layer3's and layer4's 3x3 and
   expanding 1x1 convolutions); layer1 and layer2 (11-71 % dense) stay dense;
4. the dense convolutions' weights are stored channels-last, so oneDNN runs them on NHWC
   activations without reordering input, weight and output on every call (the sparse layers read
   either layout).

Inference only: the export has no BatchNorm statistics to update and no gradients.
"""

import copy
import time
import warnings
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .rewind import apply_mask


def _to_csr(weight: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        # torch marks CSR support beta; these ops are exact here, checked by tests/test_sparse_export.py
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        csr = weight.to_sparse_csr()
        # int32 indices are what MKL's sparse BLAS takes; int64 ones are converted on every call
        return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape,
                                       check_invariants=True)


class SparseConv2d(nn.Module):
    """A (groups=1) convolution as CSR weight [out, in·kh·kw] times the unfolded input."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"SparseConv2d supports groups=1 and numeric zero padding, got {conv}")
        self.out_channels, self.in_channels = conv.out_channels, conv.in_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        weight = conv.weight.detach()
        self.weight = _to_csr(weight.reshape(weight.shape[0], -1))  # [out, in·kh·kw]
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(weight.shape[0])
        self.bias = bias.unsqueeze(1)  # [out, 1], broadcast over positions
        self.pointwise = self.kernel_size == (1, 1) and self.padding == (0, 0)

    def forward(self, x):
        n = x.shape[0]
        cols, height, width = self._columns(x)  # [in·kh·kw, n·h·w]
        out = torch.sparse.addmm(self.bias, self.weight, cols)  # [out, n·h·w]
        out = out.reshape(self.out_channels, n, height, width)
        return out[:, 0].unsqueeze(0) if n == 1 else out.transpose(0, 1).contiguous()

    def _columns(self, x):
        if self.pointwise:
            x = x[:, :, :: self.stride[0], :: self.stride[1]]
            return x.transpose(0, 1).reshape(self.in_channels, -1), x.shape[2], x.shape[3]  # [in, n·h·w]
        # im2col as a strided view of the padded input and one copy: several times faster than
        # F.unfold on a CPU, whose im2col dominated the sparse 3x3 convolutions' time
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        x = F.pad(x, (self.padding[1], self.padding[1], self.padding[0], self.padding[0]))
        patches = x.unfold(2, dh * (kh - 1) + 1, self.stride[0]).unfold(3, dw * (kw - 1) + 1, self.stride[1])
        patches = patches[..., ::dh, ::dw]  # [n, in, h, w, kh, kw]
        height, width = patches.shape[2:4]
        return patches.permute(1, 4, 5, 0, 2, 3).reshape(-1, x.shape[0] * height * width), height, width  # [in·kh·kw, n·h·w]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"nnz={self.weight.values().numel()}")


class SparseLinear(nn.Module):
    """A linear layer as CSR weight [out, in] times the transposed input."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight = _to_csr(linear.weight.detach())
        bias = linear.bias.detach() if linear.bias is not None else torch.zeros(linear.out_features)
        self.bias = bias.unsqueeze(1)

    def forward(self, x):
        flat = x.reshape(-1, x.shape[-1])
        out = torch.sparse.addmm(self.bias, self.weight, flat.t())  # [out, batch]
        return out.t().reshape(*x.shape[:-1], -1)


@dataclass
class LayerChoice:
    name: str
    shape: Tuple[int, ...]  # after channel removal
    density: float  # kept fraction of the weight
    channels_removed: int  # inner channels removed from this layer's output
    dense_ms: Optional[float]
    sparse_ms: Optional[float]
    kernel: str  # "sparse" or "dense"


@dataclass
class SparseExport:
    model: nn.Module
    layers: List[LayerChoice]

    def summary_rows(self) -> List[list]:
        return [[c.name, "x".join(map(str, c.shape)), f"{100 * c.density:.1f}", c.channels_removed,
                 "-" if c.dense_ms is None else f"{c.dense_ms:.3f}", "-" if c.sparse_ms is None else f"{c.sparse_ms:.3f}",
                 c.kernel] for c in self.layers]


@torch.no_grad()
def export_sparse(model: nn.Module, mask: Mapping[str, torch.Tensor], example_input: torch.Tensor,
                  min_speedup: float = 1.05, repeats: int = 7, remove_channels: bool = True,
                  sparse_kernels: bool = True, channels_last: bool = True) -> SparseExport:
    """An inference copy of ``model`` under ``mask`` (CPU), faster where measurements say so.

    ``example_input`` should have the batch size the model will serve: which kernel wins depends
    on it. A layer goes sparse when its measured time drops by at least ``min_speedup``.
    ``remove_channels``, ``sparse_kernels`` and ``channels_last`` turn steps 2, 3 and 4 off (to
    measure each alone)."""
    model = copy.deepcopy(model).cpu().eval()
    apply_mask(model, mask)
    _fold_batchnorms(model)
    removed = _remove_dead_channels(model) if remove_channels else {}
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    inputs = _layer_inputs(model, example_input)
    layers = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or name not in inputs:
            continue
        density = float((module.weight != 0).float().mean())
        choice = LayerChoice(name, tuple(module.weight.shape), density, removed.get(name, 0), None, None, "dense")
        supported = isinstance(module, nn.Linear) or (module.groups == 1 and not isinstance(module.padding, str))
        if sparse_kernels and density < 1.0 and supported:
            sparse = SparseConv2d(module) if isinstance(module, nn.Conv2d) else SparseLinear(module)
            x = inputs[name]
            choice.dense_ms, choice.sparse_ms = _time(module, x, repeats), _time(sparse, x, repeats)
            if choice.dense_ms >= min_speedup * choice.sparse_ms:
                _set_module(model, name, sparse)
                choice.kernel = "sparse"
        layers.append(choice)
    return SparseExport(model, layers)


def _conv_bn_pairs(model: nn.Module) -> List[Tuple[nn.Module, str, str]]:
    """(parent, conv attribute, bn attribute) for every BatchNorm that directly follows a conv:
    ``convK``/``bnK`` attributes of one module (torchvision blocks, the stems) and adjacent
    children of a Sequential (downsample shortcuts, ConvNet stages)."""
    pairs = []
    for parent in model.modules():
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            names = list(children)
            pairs += [(parent, a, b) for a, b in zip(names, names[1:])
                      if isinstance(children[a], nn.Conv2d) and isinstance(children[b], nn.BatchNorm2d)]
        else:
            for name, child in children.items():
                bn_name = "bn" + name[len("conv"):]
                if (name.startswith("conv") and isinstance(child, nn.Conv2d)
                        and isinstance(children.get(bn_name), nn.BatchNorm2d)):
                    pairs.append((parent, name, bn_name))
    return pairs


def _fold_batchnorms(model: nn.Module) -> None:
    for parent, conv_name, bn_name in _conv_bn_pairs(model):
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # [out]
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(bn.bias + (bias - bn.running_mean) * scale)
        setattr(parent, bn_name, nn.Identity())


def _block_chains(model: nn.Module) -> List[Tuple[nn.Module, List[str]]]:
    """Inner conv chains of residual blocks, ``conv1 -> relu -> conv2 (-> relu -> conv3)``:
    torchvision's BasicBlock and Bottleneck (the CIFAR ResNets reuse BasicBlock)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    chains = []
    for module in model.modules():
        if isinstance(module, Bottleneck):
            chains.append((module, ["conv1", "conv2", "conv3"]))
        elif isinstance(module, BasicBlock):
            chains.append((module, ["conv1", "conv2"]))
    return chains


def _remove_dead_channels(model: nn.Module) -> Dict[str, int]:
    """Remove inner channels of residual blocks that are exactly zero after the ReLU or unused."""
    prefix = {id(m): name for name, m in model.named_modules()}
    removed = {}
    for block, chain in _block_chains(model):
        for producer_name, consumer_name in zip(chain, chain[1:]):
            producer, consumer = getattr(block, producer_name), getattr(block, consumer_name)
            if producer.groups != 1 or consumer.groups != 1 or producer.bias is None:
                continue
            silent = (producer.weight.flatten(1) == 0).all(1) & (producer.bias <= 0)  # ReLU(0·x + b) = 0
            unused = (consumer.weight.transpose(0, 1).flatten(1) == 0).all(1)
            keep = ~(silent | unused)
            if keep.all():
                continue
            if not keep.any():
                keep[0] = True  # a zero-width conv is not a conv: keep one (dead) channel
            index = keep.nonzero().squeeze(1)
            setattr(block, producer_name, _slice_conv(producer, out_index=index))
            setattr(block, consumer_name, _slice_conv(consumer, in_index=index))
            removed[f"{prefix[id(block)]}.{producer_name}"] = int((~keep).sum())
    return removed


def _slice_conv(conv: nn.Conv2d, out_index=None, in_index=None) -> nn.Conv2d:
    weight, bias = conv.weight, conv.bias
    if out_index is not None:
        weight, bias = weight[out_index], (bias[out_index] if bias is not None else None)
    if in_index is not None:
        weight = weight[:, in_index]
    sliced = nn.Conv2d(weight.shape[1], weight.shape[0], conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, bias=bias is not None)
    sliced.weight.copy_(weight)
    if bias is not None:
        sliced.bias.copy_(bias)
    return sliced.eval()


def _layer_inputs(model: nn.Module, example_input: torch.Tensor) -> Dict[str, torch.Tensor]:
    inputs, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: inputs.__setitem__(name, args[0].detach().clone())))
    try:
        model(example_input)
    finally:
        for handle in handles:
            handle.remove()
    return inputs


def _time(module: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Best-of-``repeats`` milliseconds: the minimum is the least disturbed by other processes."""
    module(x)  # warm-up (allocations, kernel choice)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        module(x)
        best = min(best, time.perf_counter() - started)
    return 1e3 * best


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
