"""Mask analyses against direct computations on hand-made masks (paper, section 5.1)."""

import numpy as np
import pytest
import torch
from PIL import Image

from ray_lth.analysis import kernel_map, relative_similarity, similarity_matrix, zero_kernel_counts
from ray_lth.analysis.curves import curve_from_rows, matching_boundary
from ray_lth.analysis.plots import plot_curves, plot_kernel_heatmaps, plot_similarity_matrix
from ray_lth.matching import dense_band


def _mask(bits_a, bits_b):
    return {"a.weight": torch.tensor(bits_a, dtype=torch.bool).reshape(2, 3),
            "b.weight": torch.tensor(bits_b, dtype=torch.bool).reshape(2, 2)}


def _kept_positions(mask):
    return {(name, i) for name, m in mask.items() for i, kept in enumerate(m.reshape(-1).tolist()) if kept}


def test_relative_similarity_is_intersection_over_union_of_the_kept_weights():
    m1 = _mask([1, 1, 0, 0, 1, 0], [1, 0, 0, 1])
    m2 = _mask([1, 0, 0, 1, 1, 0], [0, 0, 1, 1])
    k1, k2 = _kept_positions(m1), _kept_positions(m2)
    assert len(k1 & k2) == 3 and len(k1 | k2) == 7  # by hand: a[0], a[4], b[3] / seven positions
    assert relative_similarity(m1, m2) == pytest.approx(3 / 7)
    assert relative_similarity(m2, m1) == pytest.approx(3 / 7)
    assert relative_similarity(m1, m1) == 1.0
    complement = {n: ~m for n, m in m1.items()}
    assert relative_similarity(m1, complement) == 0.0
    empty = {n: torch.zeros_like(m) for n, m in m1.items()}
    assert relative_similarity(empty, empty) == 1.0  # the same (empty) subnetwork
    labels, matrix = similarity_matrix({"x": m1, "y": m2, "z": complement})
    assert labels == ["x", "y", "z"] and np.allclose(np.diag(matrix), 1) and np.allclose(matrix, matrix.T)
    assert matrix[0, 1] == pytest.approx(3 / 7) and matrix[0, 2] == 0.0
    k3 = _kept_positions(complement)
    assert matrix[1, 2] == pytest.approx(len(k2 & k3) / len(k2 | k3))


def test_similarity_of_masks_of_different_models_is_refused_by_name():
    m1 = _mask([1] * 6, [1] * 4)
    other = {"a.weight": torch.ones(3, 2, dtype=torch.bool), "b.weight": torch.ones(2, 2, dtype=torch.bool)}
    with pytest.raises(ValueError, match="a.weight"):
        relative_similarity(m1, other)


def test_zero_kernels_counted_per_layer_and_in_total():
    generator = torch.Generator().manual_seed(0)
    conv = torch.rand(4, 3, 3, 3, generator=generator) > 0.3
    conv[0, 1] = False  # three completely pruned kernels made by hand
    conv[2, 0] = False
    conv[3, 2] = False
    conv[1, 1] = False
    conv[1, 1, 2, 2] = True  # one kept weight: this kernel is not completely pruned
    pointwise = torch.tensor([[1, 0], [0, 0], [1, 1]], dtype=torch.bool).reshape(3, 2, 1, 1)
    mask = {"layer.conv.weight": conv, "layer.pointwise.weight": pointwise,
            "head.weight": torch.zeros(5, 2, dtype=torch.bool)}  # linear: no kernels
    direct = {}
    for name, m in mask.items():
        if m.dim() == 4:
            direct[name] = sum(1 for o in range(m.shape[0]) for i in range(m.shape[1]) if not m[o, i].any())
    counts = zero_kernel_counts(mask)
    assert {n: c["zero"] for n, c in counts.items() if n != "total"} == direct
    assert counts["layer.pointwise.weight"] == {"zero": 3, "kernels": 6}
    assert counts["layer.conv.weight"]["kernels"] == 12 and counts["layer.conv.weight"]["zero"] >= 3
    assert counts["total"] == {"zero": sum(direct.values()), "kernels": 18}
    expected_map = torch.tensor([[not conv[o, i].any() for i in range(3)] for o in range(4)])
    assert torch.equal(kernel_map(conv), expected_map)
    with pytest.raises(ValueError, match="4-D"):
        kernel_map(mask["head.weight"])


def test_curve_statistics_and_matching_boundary_from_rows():
    rows = [{"round": r, "sparsity": 1 - 0.8 ** r, "metric": m} for r, m in
            [(0, 0.90), (0, 0.92), (1, 0.91), (1, 0.93), (2, 0.80), (2, 0.82), (3, 0.95)]]
    points = curve_from_rows(rows)
    assert [p.round for p in points] == [0, 1, 2, 3] and [p.seeds for p in points] == [2, 2, 2, 1]
    assert points[1].mean == pytest.approx(0.92) and points[1].std == pytest.approx(np.std([0.91, 0.93], ddof=1))
    band = dense_band([0.90, 0.92])
    # round 3 matches but only one seed reached it: the boundary is round 1
    assert matching_boundary(points, band).round == 1


def test_plots_are_valid_png_images(tmp_path):
    generator = torch.Generator().manual_seed(1)
    mask = {"layer1.weight": torch.rand(8, 4, 3, 3, generator=generator) > 0.7,
            "layer2.weight": torch.rand(16, 8, 1, 1, generator=generator) > 0.5}
    rows = [{"round": r, "sparsity": 1 - 0.8 ** r, "metric": 0.9 - 0.01 * r + 0.002 * s}
            for r in range(4) for s in range(3)]
    paths = [plot_kernel_heatmaps(mask, tmp_path / "heat.png", "kernels"),
             plot_similarity_matrix(["a", "b"], np.array([[1, 0.3], [0.3, 1]]), tmp_path / "sim.png", "sim"),
             plot_curves({"g": curve_from_rows(rows)}, tmp_path / "curve.png", "curve",
                         band=dense_band([0.9, 0.902, 0.904])),
             plot_curves({"g": curve_from_rows(rows)}, tmp_path / "count.png", "count", remaining={"g": 1000})]
    for path in paths:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
