"""Perturbation baselines (section 5.2): the promised sparsity and overlap, applied where a
trajectory loads its mask_file, and planned as dependent trials per rewind point."""

import pytest
import torch

from ray_lth.analysis import relative_similarity
from ray_lth.config import ImpConfig
from ray_lth.imp import run_trajectory
from ray_lth.masks import count_kept, count_total, save_mask, sparsity
from ray_lth.models import build_model, get_model_spec, prunable_parameters
from ray_lth.naming import group_name
from ray_lth.perturbation import perturb_mask
from ray_lth.transfer import TransferSpace
from ray_lth.tune.dependency import DependencySearcher


def _mask(seed=0, density=0.3):
    generator = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.rand(64, 32, 3, 3, generator=generator) < density,
            "b.weight": torch.rand(128, 64, 1, 1, generator=generator) < density / 2}


def test_complementary_mask_keeps_exactly_what_the_mask_prunes():
    mask = _mask()
    comp = perturb_mask(mask, "complementary")
    assert count_kept(comp) == count_total(mask) - count_kept(mask)
    assert sparsity(comp) == pytest.approx(1 - sparsity(mask))
    assert all(not (mask[n] & comp[n]).any() and (mask[n] | comp[n]).all() for n in mask)
    assert relative_similarity(mask, comp) == 0.0


def test_random_mask_has_each_layers_kept_count_and_chance_overlap():
    mask = _mask()
    generator = torch.Generator().manual_seed(1)
    rand = perturb_mask(mask, "random", generator=generator)
    assert {n: int(m.sum()) for n, m in rand.items()} == {n: int(m.sum()) for n, m in mask.items()}
    for name in mask:
        density = mask[name].float().mean().item()
        overlap = (rand[name] & mask[name]).sum().item() / mask[name].sum().item()
        # a random subset of the same size shares ~density of m's kept weights (tens of sigmas from 1)
        assert overlap == pytest.approx(density, abs=0.03)
    again = perturb_mask(mask, "random", generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(rand[n], again[n]) for n in mask)  # seeded: reproducible


def test_flip_moves_ten_percent_of_the_kept_weights_and_keeps_the_sparsity():
    mask = _mask()
    flipped = perturb_mask(mask, "flip", 0.1, torch.Generator().manual_seed(2))
    kept = count_kept(mask)
    moved = round(0.1 * kept)
    assert count_kept(flipped) == kept
    common = sum(int((mask[n] & flipped[n]).sum()) for n in mask)
    assert common == kept - moved  # exactly 10 % of m's ones turned off, as many zeros on
    assert relative_similarity(mask, flipped) == pytest.approx((kept - moved) / (kept + moved))
    assert perturb_mask(mask, "none") is mask
    with pytest.raises(ValueError, match="No such mask perturbation: 'sideways'"):
        perturb_mask(mask, "sideways")


def test_trajectory_trains_the_perturbed_mask_file_from_the_given_rewind_state(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet8", 10)
    weights = {n: p.detach() for n, p in prunable_parameters(model, get_model_spec("resnet8").never_pruned).items()}
    mask = {n: torch.rand(w.shape) < 0.3 for n, w in weights.items()}
    save_mask(mask, tmp_path / "m.rlthmask")
    theta = {k: v + 0.01 for k, v in model.state_dict().items()}  # a stand-in θ_5%, distinct from θ_0
    torch.save(theta, tmp_path / "theta5.pt")
    config = ImpConfig.from_dict(dict(model="resnet8", task="digits", rewind="early", rounds=0, epochs=1,
                                      batch_size=128, device="cpu", mask_file=str(tmp_path / "m.rlthmask"),
                                      mask_perturbation="complementary", rewind_file=str(tmp_path / "theta5.pt")))
    (result,) = list(run_trajectory(config))
    assert result.record.sparsity == pytest.approx(1 - sparsity(mask))
    assert all(torch.equal(result.state.round_mask[n], ~mask[n]) for n in mask)
    assert all(torch.equal(result.state.rewind_state[k], theta[k]) for k in theta)  # not re-captured
    with pytest.raises(ValueError, match="rewind_file holds a θ_k%"):
        ImpConfig.from_dict(dict(model="resnet8", rewind="init", rewind_file=str(tmp_path / "theta5.pt")))
    with pytest.raises(ValueError, match="give mask_file"):
        next(run_trajectory(ImpConfig.from_dict(dict(model="resnet8", rewind="init", rounds=0, epochs=1,
                                                     device="cpu", mask_perturbation="random"))))


def test_plan_runs_each_perturbation_from_its_own_rewind_and_passes_the_theta_5_file():
    space = TransferSpace(description="t", upstream=dict(model="resnet8", task="digits", rewind="init", epochs=1),
                          downstream={}, rounds=[1, 2], seeds=[0, 1], perturbations=["random", "complementary", "flip"],
                          perturbation_rewinds=["init", "early"])
    plan = space.plan()
    assert [(c["rewind"], c["seed"]) for c in plan.upstream] == [("init", 0), ("init", 1), ("early", 0), ("early", 1)]
    assert len(plan.dependents) == 2 * 2 * 3 * 2  # rewinds x rounds x perturbations x seeds
    for d in plan.dependents:
        up = plan.upstream[d.upstream]
        assert d.config["rewind"] == up["rewind"] and d.config["seed"] == up["seed"] and d.config["rounds"] == 0
        assert plan.references[group_name(d.config)] == group_name(up)  # judged against its rewind's dense
        assert d.rewind_from_upstream == (up["rewind"] == "early")
        assert d.config["mask_label"] == f"m_digits-r{d.round}-{d.config['mask_perturbation']}"
    assert len({group_name(d.config) for d in plan.dependents}) == 2 * 2 * 3  # seeds share a group
    assert all(isinstance(c, ImpConfig) for c in space.validate())
    searcher = DependencySearcher(plan, "/exp")
    for i in range(4):
        searcher.suggest(f"up{i}")
    for i in range(4):
        searcher.on_trial_result(f"up{i}", {"round": 1, "trial_fs_path": f"/exp/up{i}"})
    issued = [searcher.suggest(f"d{i}") for i in range(len(plan.dependents))]
    early = [c for c in issued if c["rewind"] == "early"]
    assert len(early) == 12 and all(c["rewind_file"].endswith("/trajectory/rewind_state.pt") for c in early)
    assert all("rewind_file" not in c for c in issued if c["rewind"] == "init")
    with pytest.raises(ValueError, match="perturbations \\['sideways'\\]"):
        TransferSpace(**{**space.__dict__, "perturbations": ["sideways"]}).plan()
