"""The scores of the simCLR and MoCo pre-training tasks: top-1 retrieval accuracy as the paper
defines it (Eq. (2)), and the contrastive top-1 accuracies that the paper's code computes.

For a batch of n images with representations z_1..z_n (one view) and z'_1..z'_n (the other view),
every one of the 2n representations retrieves the cosine-nearest of the other 2n - 1; a retrieval
is correct when that is its own positive (z_i for z'_i and z'_i for z_i). The accuracy averages
both directions: (hits of the z_i + hits of the z'_i) / 2n.

A tie is a miss: z'_i must be *the* argmax, strictly closer than every other candidate. So a
collapsed encoder (all representations equal) scores 0, not a lucky tie-break; with n = 1 the
positive is the only candidate and every retrieval is correct.

The paper's code scores neither task by Eq. (2) as written (``contrastive_hits``,
``queue_contrastive_hits`` below say how it does); in both a tie is a miss here as well, where
the code's ``topk`` would pick one of the tied candidates.
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


def contrastive_hits(z: torch.Tensor, z_prime: torch.Tensor) -> torch.Tensor:
    """(2n,) bool, the simCLR code's contrastive top-1 (SimCLR/utils.py ``contrastive_acc``): as
    Eq. (2), except that an anchor's own similarity is set to 0 and stays a candidate instead of
    being excluded, and cosines divide by the product of the norms clamped at 1e-8. After a ReLU
    (the backbone's features) no cosine is negative and the two agree, but on a projection whose
    cosines are all negative for some anchor, its 0 to itself wins and the anchor misses."""
    if z.shape != z_prime.shape or z.dim() != 2 or len(z) == 0:
        raise ValueError(f"z and z' must both be (n, d) with n >= 1, got {tuple(z.shape)} and {tuple(z_prime.shape)}")
    n = len(z)
    reps = torch.cat([z, z_prime]).float()
    norms = reps.norm(dim=1, keepdim=True)
    similarity = (reps @ reps.T) / (norms * norms.T).clamp(min=1e-8)
    similarity.fill_diagonal_(0.0)
    rows = torch.arange(2 * n, device=reps.device)
    positive = (rows + n) % (2 * n)
    positive_similarity = similarity[rows, positive]
    similarity[rows, positive] = float("-inf")
    return positive_similarity > similarity.max(dim=1).values


def queue_contrastive_hits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
    """(n,) bool, MoCo's (K+1)-way contrastive top-1 (MoCo/main_moco_imp.py ``test``): whether
    each query's cosine to its own key beats its cosine to every one of the K keys in ``queue``
    (K, d); the temperature scales every logit alike and so never changes the winner."""
    if q.shape != k.shape or q.dim() != 2 or queue.dim() != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"q and k must both be (n, d) and the queue (K, d), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)} and {tuple(queue.shape)}")
    q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
    positive = (q * k).sum(dim=1)
    return positive > (q @ queue.float().T).max(dim=1).values
