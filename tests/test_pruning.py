import pytest
import torch
from torch.nn.utils import prune as torch_prune

from ray_lth.masks import count_kept, ones_mask, sparsity
from ray_lth.models import build_model, get_model_spec, prunable_parameters
from ray_lth.pruning import (complementary_mask, flip_mask, global_magnitude_prune, layerwise_magnitude_prune,
                             random_mask_like, random_prune)

PAPER_GRID = [20.00, 36.00, 48.80, 59.04, 67.23, 73.79, 79.03, 83.22, 86.58, 89.26, 91.41, 93.13, 94.50, 95.60,
              96.48, 97.19, 97.75, 98.20]


def _model_weights(name="resnet20", seed=0):
    torch.manual_seed(seed)
    model = build_model(name, 10)
    return model, {n: p.detach().clone() for n, p in prunable_parameters(model, get_model_spec(name).never_pruned).items()}


def test_global_prune_agrees_with_torch_global_unstructured_over_rounds():
    model, weights = _model_weights("resnet8")
    targets = [(dict(model.named_modules())[n.rsplit(".", 1)[0]], "weight") for n in weights]
    mask = ones_mask(weights)
    for _ in range(6):
        mask = global_magnitude_prune(weights, mask, 0.2)
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=0.2)
        for name, (module, _) in zip(weights, targets):
            assert torch.equal(mask[name], module.weight_mask.bool()), name


def test_sparsity_follows_one_minus_point_eight_to_the_k_on_the_paper_grid():
    _, weights = _model_weights("resnet20")
    mask = ones_mask(weights)
    for k, paper in enumerate(PAPER_GRID, start=1):
        mask = global_magnitude_prune(weights, mask, 0.2)
        assert abs(100 * sparsity(mask) - 100 * (1 - 0.8**k)) < 0.01
        assert abs(100 * sparsity(mask) - paper) < 0.01  # the paper prints two decimals


def test_masks_are_nested_and_every_kept_weight_outweighs_every_pruned_one():
    _, weights = _model_weights("resnet8")
    previous = ones_mask(weights)
    for _ in range(4):
        mask = global_magnitude_prune(weights, previous, 0.2)
        for name in mask:
            assert not (mask[name] & ~previous[name]).any(), "a pruned weight came back"
        kept = torch.cat([weights[n].abs()[mask[n]] for n in mask])
        pruned_now = torch.cat([weights[n].abs()[previous[n] & ~mask[n]] for n in mask])
        assert pruned_now.max() <= kept.min()
        previous = mask


def test_ties_are_broken_deterministically_by_position():
    weights = {"a.weight": torch.ones(10), "b.weight": torch.ones(10)}
    first = global_magnitude_prune(weights, ones_mask(weights), 0.25)
    second = global_magnitude_prune(weights, ones_mask(weights), 0.25)
    assert all(torch.equal(first[n], second[n]) for n in first)
    assert first["a.weight"][:5].logical_not().all() and first["a.weight"][5:].all()  # round(0.25*20) = 5
    assert first["b.weight"].all()


def test_the_selected_cut_prunes_what_a_stable_sort_prunes_ties_included():
    # the reference: a stable sort of the kept magnitudes, the first round(fraction * kept) pruned
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        size = int(torch.randint(1, 2000, (1,), generator=generator))
        levels = int(torch.randint(1, 40, (1,), generator=generator))  # few distinct values: many ties
        weights = {"w": (torch.randint(0, levels, (size,), generator=generator).float() / levels)
                   * torch.where(torch.rand(size, generator=generator) < 0.5, -1.0, 1.0)}
        mask = {"w": torch.rand(size, generator=generator) < 0.7}
        fraction = float(torch.rand(1, generator=generator)) * 0.98 + 0.01
        kept = mask["w"].nonzero().squeeze(1)
        order = torch.sort(weights["w"].abs()[kept], stable=True).indices
        expected = mask["w"].clone()
        expected[kept[order[:round(fraction * kept.numel())]]] = False
        assert torch.equal(global_magnitude_prune(weights, mask, fraction)["w"], expected)


def test_layerwise_prunes_each_tensor_by_the_fraction():
    _, weights = _model_weights("resnet8")
    mask = layerwise_magnitude_prune(weights, ones_mask(weights), 0.2)
    for name, m in mask.items():
        assert int((~m).sum()) == round(0.2 * m.numel())
        assert weights[name].abs()[~m].max() <= weights[name].abs()[m].min()


def test_random_prune_removes_the_fraction_of_remaining():
    _, weights = _model_weights("resnet8")
    mask = ones_mask(weights)
    for k in range(1, 4):
        mask = random_prune(mask, 0.2, torch.Generator().manual_seed(k))
        assert abs(sparsity(mask) - (1 - 0.8**k)) < 1e-4


def test_random_mask_like_keeps_per_layer_counts():
    _, weights = _model_weights("resnet8")
    mask = global_magnitude_prune(weights, ones_mask(weights), 0.5)
    random = random_mask_like(mask, torch.Generator().manual_seed(0))
    assert all(int(random[n].sum()) == int(mask[n].sum()) for n in mask)
    assert any(not torch.equal(random[n], mask[n]) for n in mask)
    global_random = random_mask_like(mask, torch.Generator().manual_seed(0), per_layer=False)
    assert count_kept(global_random) == count_kept(mask)


def test_complementary_mask_is_disjoint_and_covers_everything():
    _, weights = _model_weights("resnet8")
    mask = global_magnitude_prune(weights, ones_mask(weights), 0.2)
    comp = complementary_mask(mask)
    for n in mask:
        assert not (mask[n] & comp[n]).any() and (mask[n] | comp[n]).all()
    assert abs(sparsity(comp) - (1 - sparsity(mask))) < 1e-9


def test_flip_keeps_sparsity_and_flips_the_promised_number_each_way():
    _, weights = _model_weights("resnet8")
    mask = global_magnitude_prune(weights, ones_mask(weights), 0.5)
    flipped = flip_mask(mask, 0.1, torch.Generator().manual_seed(0))
    assert count_kept(flipped) == count_kept(mask)
    turned_off = sum(int((mask[n] & ~flipped[n]).sum()) for n in mask)
    turned_on = sum(int((~mask[n] & flipped[n]).sum()) for n in mask)
    assert turned_off == turned_on == round(0.1 * count_kept(mask))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_prune_fraction_outside_open_unit_interval_is_rejected(fraction):
    weights = {"w": torch.randn(10)}
    with pytest.raises(ValueError, match="prune fraction must be in"):
        global_magnitude_prune(weights, ones_mask(weights), fraction)


def test_non_finite_weights_are_refused_by_name():
    weights = {"layer.weight": torch.tensor([1.0, float("nan"), 2.0])}
    with pytest.raises(ValueError, match="layer.weight"):
        global_magnitude_prune(weights, ones_mask(weights), 0.2)
