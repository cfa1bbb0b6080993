"""Top-1 retrieval accuracy, the metric of the simCLR and MoCo pre-training tasks (paper, Eq. (2)).

For a batch of n images with representations z_1..z_n (one view) and z'_1..z'_n (the other view),
every one of the 2n representations retrieves the cosine-nearest of the other 2n - 1; a retrieval
is correct when that is its own positive (z_i for z'_i and z'_i for z_i). The accuracy averages
both directions: (hits of the z_i + hits of the z'_i) / 2n.

A tie is a miss: z'_i must be *the* argmax, strictly closer than every other candidate. So a
collapsed encoder (all representations equal) scores 0, not a lucky tie-break; with n = 1 the
positive is the only candidate and every retrieval is correct.
"""

import torch
from torch.nn import functional as F


def retrieval_hits(z: torch.Tensor, z_prime: torch.Tensor) -> torch.Tensor:
    """(2n,) bool: whether each of z_1..z_n, z'_1..z'_n retrieves its positive first."""
    if z.shape != z_prime.shape or z.dim() != 2 or len(z) == 0:
        raise ValueError(f"z and z' must both be (n, d) with n >= 1, got {tuple(z.shape)} and {tuple(z_prime.shape)}")
    n = len(z)
    # in float32 even under autocast: cosines of near-duplicates must not collapse into ties
    reps = F.normalize(torch.cat([z, z_prime]).float(), dim=1)  # (2n, d)
    similarity = reps @ reps.T  # (2n, 2n) cosine similarities
    rows = torch.arange(2 * n, device=reps.device)
    positive = (rows + n) % (2 * n)  # z_i <-> z'_i
    positive_similarity = similarity[rows, positive]
    # every other candidate: neither itself nor its positive
    others = similarity.clone()
    others[rows, rows] = float("-inf")
    others[rows, positive] = float("-inf")
    return positive_similarity > others.max(dim=1).values


def retrieval_top1(z: torch.Tensor, z_prime: torch.Tensor) -> float:
    """Eq. (2) as a fraction in [0, 1] (the paper prints it as a percentage)."""
    return retrieval_hits(z, z_prime).float().mean().item()


def retrieval_chance(n: int) -> float:
    """The expected accuracy of a random ranking: one positive among 2n - 1 candidates."""
    return 1.0 / (2 * n - 1)
