"""The embedded default: resnet8_narrow pre-trained on generated shapes (θ_p), then IMP on the camouflaged
shapes (4000 train, 1000 test images: one image is 0.1 pp), rewinding to θ_p, 18 rounds of 20 %
(to 98.20 % sparsity), 3 seeds, in two arms on the same θ_p and seeds: global magnitude pruning
(the IMP tickets) and random pruning (the baseline: random masks of the same sparsity). Offline,
a few minutes on 2 CPUs."""

from ray_lth.spaces import SweepSpace


def space() -> SweepSpace:
    return SweepSpace(
        description=__doc__,
        fixed=dict(model="resnet8_narrow", task="camo_shapes", rewind="pretrained", schedule="embedded", rounds=18,
                   epochs=6),
        grid=dict(pruning=["global", "random"], seed=[0, 1, 2]),
        weights="embedded",
        cpus_per_trial=1,
        patience=2,  # a group stops after two rounds in a row whose seed-mean misses the band
    )
