"""Completely pruned kernels (paper, section 5.1, Figures 6 bottom and 7).

A *kernel* is the k x k slice of a convolution weight that connects one input channel to one
output channel, ``weight[out, in]``; it is completely pruned when every entry of it is pruned.
Such kernels are structure a sparse model can drop outright (hardware speed-up, section 5.1).
Only convolutions (4-D weights) have kernels; linear weights are left out of the counts.
"""

from typing import Dict, Mapping

import torch


def kernel_map(keep: torch.Tensor) -> torch.Tensor:
    """``[out, in]`` bool: True where the kernel of a 4-D conv mask is completely pruned."""
    if keep.dim() != 4:
        raise ValueError(f"kernel_map needs a 4-D conv mask [out, in, kh, kw], got shape {tuple(keep.shape)}")
    return ~keep.to("cpu", torch.bool).flatten(2).any(dim=2)


def zero_kernel_counts(mask: Mapping[str, torch.Tensor]) -> Dict[str, dict]:
    """Per conv layer ``{"zero": completely pruned kernels, "kernels": all kernels}``, in mask
    order, plus ``"total"`` summed over the layers."""
    counts = {}
    for name, keep in mask.items():
        if keep.dim() == 4:
            zero = kernel_map(keep)
            counts[name] = {"zero": int(zero.sum()), "kernels": zero.numel()}
    counts["total"] = {"zero": sum(c["zero"] for c in counts.values()),
                       "kernels": sum(c["kernels"] for c in counts.values())}
    return counts
