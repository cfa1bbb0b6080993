"""Analyses of masks and results after a sweep (paper, sections 5.1-5.3): mask similarity,
completely pruned kernels, kernel heatmaps and accuracy-vs-sparsity curves. Pure torch, numpy
and matplotlib (no Ray), so they run on any experiment folder without rerunning anything."""

from .kernels import kernel_map, zero_kernel_counts
from .similarity import relative_similarity, similarity_matrix

__all__ = ["kernel_map", "relative_similarity", "similarity_matrix", "zero_kernel_counts"]
