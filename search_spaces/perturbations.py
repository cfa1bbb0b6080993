"""Perturbation baselines (paper, section 5.2, Figure 8), embedded: IMP on digits from θ_0, θ_5%
and θ_p (the shapes-pre-trained resnet20), and at rounds 2, 4, 6, 8 (36.00 to 83.22 % sparsity)
each mask m replaced by m_r (random, each layer's sparsity kept), m^c (its complement) and
m + Δm_10% (10 % of the kept weights flipped with as many pruned ones), trained from the same
rewind point as m, 3 seeds. Each starts as soon as its mask exists; the report draws one Figure 8
panel per rewind point (report/perturbations_digits_<rewind>.png)."""

from ray_lth.transfer import TransferSpace


def space() -> TransferSpace:
    return TransferSpace(
        description=__doc__,
        upstream=dict(model="resnet20", task="digits", rewind="pretrained", schedule="embedded", epochs=3),
        downstream={},
        rounds=[2, 4, 6, 8],
        seeds=[0, 1, 2],
        perturbations=["random", "complementary", "flip"],
        perturbation_rewinds=["init", "early", "pretrained"],
        perturbation_fraction=0.1,
    )
