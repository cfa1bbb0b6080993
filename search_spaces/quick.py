"""The embedded default: resnet20 pre-trained on generated shapes (θ_p), IMP on scikit-learn's
digits, rewinding to θ_p, 3 seeds, 18 rounds (to 98.20 % sparsity). Offline, minutes on 2 CPUs."""

from ray_lth.spaces import SweepSpace


def space() -> SweepSpace:
    return SweepSpace(
        description=__doc__,
        fixed=dict(model="resnet20", task="digits", rewind="pretrained", schedule="embedded", rounds=18,
                   epochs=4),
        grid=dict(seed=[0, 1, 2]),
        weights="embedded",
        cpus_per_trial=1,
        patience=2,  # 360 test images: one image is 0.28 pp, so one bad round may be noise
    )
