"""PNG figures in the paper's style, drawn with matplotlib's object API (``Figure`` rendered by
the Agg canvas): no pyplot, so no global figure state and no display is ever needed.

- ``plot_curves``: metric vs sparsity (or vs remaining weights, Figures 9 and 12), mean ± std over
  seeds as a line and shadow, the dense mean ± std band, the matching boundary marked;
- ``plot_similarity_matrix`` (Figure 6 top) and ``plot_similarity_by_sparsity``;
- ``plot_zero_kernels`` (Figure 6 bottom) and ``plot_kernel_heatmaps`` (Figure 7).
"""

import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.figure import Figure

from ..matching import DenseBand
from .curves import CurvePoint, matching_boundary
from .kernels import kernel_map


def _x(sparsity: float) -> float:
    # -ln(remaining fraction): IMP rounds (remaining 0.8^k) are evenly spaced, as in the paper's axes
    return -math.log(max(1.0 - sparsity, 1e-6))


def _sparsity_ticks(ax, sparsities: Sequence[float], max_ticks: int = 10) -> None:
    ticks = sorted(set(round(s, 4) for s in sparsities))
    step = max(1, math.ceil(len(ticks) / max_ticks))
    ticks = ticks[::step]
    ax.set_xticks([_x(s) for s in ticks])
    ax.set_xticklabels([f"{100 * s:.2f}" for s in ticks], rotation=45, ha="right")


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_curves(curves: Mapping[str, List[CurvePoint]], path, title: str, band: Optional[DenseBand] = None,
                metric_label: str = "metric", remaining: Optional[Mapping[str, int]] = None,
                bands: Optional[Mapping[str, DenseBand]] = None) -> Path:
    """One line per curve (label -> points). ``band`` draws one dense mean ± std band for all
    curves; ``bands`` (label -> band) judges each curve against its own band for its matching
    boundary. ``remaining`` (label -> prunable weight count) puts the number of remaining weights
    on a log x-axis instead of sparsity, so models of different sizes compare at equal counts."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    all_sparsities = []
    for index, (label, points) in enumerate(curves.items()):
        if not points:
            continue
        color = colors[index % len(colors)]
        if remaining is not None:
            xs = np.array([(1.0 - p.sparsity) * remaining[label] for p in points])
        else:
            xs = np.array([_x(p.sparsity) for p in points])
        mean = np.array([p.mean for p in points])
        std = np.array([p.std for p in points])
        ax.plot(xs, 100 * mean, marker="o", markersize=3, color=color, label=label)
        ax.fill_between(xs, 100 * (mean - std), 100 * (mean + std), color=color, alpha=0.2, linewidth=0)
        all_sparsities += [p.sparsity for p in points]
        own_band = (bands or {}).get(label, band)
        if band is None and own_band is not None:  # no common baseline: each curve's own dense band
            ax.axhline(100 * own_band.mean, color=color, linestyle="--", linewidth=0.8)
            ax.axhspan(100 * own_band.threshold, 100 * (own_band.mean + own_band.std), color=color, alpha=0.08,
                       linewidth=0)
        best = matching_boundary(points, own_band)
        if best is not None:
            bx = (1.0 - best.sparsity) * remaining[label] if remaining is not None else _x(best.sparsity)
            ax.axvline(bx, color=color, linestyle=":", linewidth=1)
            ax.plot([bx], [100 * best.mean], marker="*", markersize=13, color=color, markeredgecolor="black",
                    linestyle="none", label=f"max matching {100 * best.sparsity:.2f}%")
    if band is not None:
        ax.axhline(100 * band.mean, color="black", linewidth=1, label=f"dense {100 * band.mean:.2f} ± {100 * band.std:.2f}")
        ax.axhspan(100 * (band.mean - band.std), 100 * (band.mean + band.std), color="gray", alpha=0.25, linewidth=0)
    if remaining is not None:
        ax.set_xscale("log")
        ax.invert_xaxis()  # fewer remaining weights to the right, as sparsity grows
        ax.set_xlabel("remaining weights (count)")
    else:
        if all_sparsities:
            _sparsity_ticks(ax, all_sparsities)
        ax.set_xlabel("sparsity (%)")
    ax.set_ylabel(f"{metric_label} (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def plot_similarity_matrix(labels: List[str], matrix: np.ndarray, path, title: str) -> Path:
    size = max(4.0, 0.9 * len(labels) + 2)
    fig = Figure(figsize=(size, size * 0.85))
    ax = fig.add_subplot()
    image = ax.imshow(100 * matrix, vmin=0, vmax=100, cmap="viridis")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    for a in range(len(labels)):
        for b in range(len(labels)):
            ax.text(b, a, f"{100 * matrix[a, b]:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if matrix[a, b] < 0.6 else "black")
    fig.colorbar(image, ax=ax, label="relative similarity |m_i ∩ m_j| / |m_i ∪ m_j| (%)")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_series(series: Mapping[str, List[Tuple[float, float]]], path, title: str, ylabel: str,
                percent: bool = False) -> Path:
    """Lines of (sparsity, value) points against sparsity: e.g. zero kernels or similarity."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    sparsities = []
    for label, points in series.items():
        points = sorted(points)
        ax.plot([_x(s) for s, _ in points], [100 * v if percent else v for _, v in points], marker="o",
                markersize=3, label=label)
        sparsities += [s for s, _ in points]
    if sparsities:
        _sparsity_ticks(ax, sparsities)
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_kernel_heatmaps(mask: Mapping[str, torch.Tensor], path, title: str, max_columns: int = 6) -> Path:
    """Figure 7: per conv layer (input to output) an ``[out, in]`` map of kernels, bright where the
    kernel is completely pruned, dark where it keeps at least one weight."""
    layers: Dict[str, torch.Tensor] = {name: kernel_map(keep) for name, keep in mask.items() if keep.dim() == 4}
    if not layers:
        raise ValueError("plot_kernel_heatmaps: the mask has no conv (4-D) weights")
    columns = min(max_columns, len(layers))
    rows = math.ceil(len(layers) / columns)
    fig = Figure(figsize=(2.3 * columns, 2.2 * rows + 0.6))
    for index, (name, zero) in enumerate(layers.items()):
        ax = fig.add_subplot(rows, columns, index + 1)
        ax.imshow(zero.numpy(), cmap="magma", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_title(f"{name.removesuffix('.weight')}\n{int(zero.sum())}/{zero.numel()} zero", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("in", fontsize=6)
        ax.set_ylabel("out", fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
