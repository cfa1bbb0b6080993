"""Relative similarity of two masks, |m_i ∩ m_j| / |m_i ∪ m_j| over the kept weights (paper,
section 5.1 and Figure 6 top, after Chen et al. 2020): 1 = the same subnetwork, 0 = disjoint."""

from typing import List, Mapping, Tuple

import numpy as np
import torch

from ..masks import check_compatible


def relative_similarity(mask_i: Mapping[str, torch.Tensor], mask_j: Mapping[str, torch.Tensor]) -> float:
    """Intersection over union of the kept weights of two masks of the same model.

    Two fully pruned masks are the same (empty) subnetwork, so their similarity is 1.
    """
    check_compatible(mask_j, mask_i, what="second mask")
    both = either = 0
    for name, keep_i in mask_i.items():
        keep_i, keep_j = keep_i.to("cpu", torch.bool), mask_j[name].to("cpu", torch.bool)
        both += int((keep_i & keep_j).sum())
        either += int((keep_i | keep_j).sum())
    return 1.0 if either == 0 else both / either


def similarity_matrix(masks: Mapping[str, Mapping[str, torch.Tensor]]) -> Tuple[List[str], np.ndarray]:
    """Labels and the symmetric matrix of relative similarities between every pair of masks."""
    labels = list(masks)
    matrix = np.ones((len(labels), len(labels)))
    for a in range(len(labels)):
        for b in range(a + 1, len(labels)):
            matrix[a, b] = matrix[b, a] = relative_similarity(masks[labels[a]], masks[labels[b]])
    return labels, matrix
