"""Contrastive losses: simCLR's NT-Xent (and the paper code's variant of it) and MoCo's InfoNCE
against a queue of negatives.

Both are computed in float32 even under bf16 autocast: at temperature 0.1 the logits reach ±10
and bf16 would round away the differences between negatives.
"""

import math

import torch
from torch.nn import functional as F


def _positive_log_ratios(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """log r_i for the 2n projections of n images (z_a[i] and z_b[i] are views of image i): each
    one's positive is the other view of its image, its negatives the other 2n - 2, and
    r_i = exp(sim(i, j) / τ) / Σ_{k ≠ i} exp(sim(i, k) / τ). Returns (2n,)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = len(z_a)
    z = F.normalize(torch.cat([z_a, z_b]).float(), dim=1)  # (2n, d)
    logits = z @ z.T / temperature  # (2n, 2n)
    logits.fill_diagonal_(float("-inf"))  # an anchor is never its own candidate
    positives = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return -F.cross_entropy(logits, positives, reduction="none")


def nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """The normalised temperature-scaled cross entropy of simCLR (Chen et al. 2020, Eq. (1)):
    l(i, j) = -log r_i averaged over all 2n anchors (both orders of every positive pair)."""
    return -_positive_log_ratios(z_a, z_b, temperature).mean()


def nt_xent_authors(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """The paper code's simCLR loss (SimCLR/utils.py ``nt_xent``): -log of the mean of the 2n
    ratios r_i, not the mean of their -log; in log space (logsumexp) for stability."""
    log_ratios = _positive_log_ratios(z_a, z_b, temperature)
    return math.log(len(log_ratios)) - torch.logsumexp(log_ratios, dim=0)


def info_nce_with_queue(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's loss (He et al. 2020, Eq. (1)): each query's positive is its key, its negatives
    are the K keys of past batches in ``queue`` (K, d). ``k`` carries no gradient."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.float(), dim=1).detach()
    positive = (q * k).sum(dim=1, keepdim=True)  # (n, 1)
    negative = q @ queue.float().T  # (n, K)
    logits = torch.cat([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
