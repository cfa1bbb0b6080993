"""Perturbation baselines of a found mask (paper, section 5.2 and Figure 8): train m_r (random
pruning at the same sparsity), m^c (the complement) or m + Δm_p (flip a fraction p of the kept
weights to pruned and as many pruned to kept) instead of the IMP mask m, from the same rewind
point (θ_0, θ_5 % or θ_p), to test whether m's structure or merely its sparsity matters."""

from typing import Optional

import torch

from .masks import Mask
from .pruning import complementary_mask, flip_mask, random_mask_like

MASK_PERTURBATIONS = ("none", "random", "complementary", "flip")


def perturb_mask(mask: Mask, kind: str, fraction: float = 0.1, generator: Optional[torch.Generator] = None) -> Mask:
    """``mask`` itself (``none``), m_r with each layer's kept count (``random``), m^c
    (``complementary``) or m + Δm_fraction (``flip``)."""
    if kind == "none":
        return mask
    if kind == "random":
        return random_mask_like(mask, generator, per_layer=True)
    if kind == "complementary":
        return complementary_mask(mask)
    if kind == "flip":
        return flip_mask(mask, fraction, generator)
    raise ValueError(f"No such mask perturbation: {kind!r}; choose one of {list(MASK_PERTURBATIONS)}")
