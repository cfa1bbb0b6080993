"""Optuna (TPE) over training and pruning hyperparameters of IMP on the embedded default:
learning rate, weight decay, prune fraction per round and rewind point, 12 trials. The
objective is each trajectory's own maximum matching sparsity (Eq. (1) against its round 0);
the MatchingScheduler stops a trajectory once it stops matching, so poor settings end early."""

from ray_lth.spaces import SweepSpace


def space() -> SweepSpace:
    return SweepSpace(
        description=__doc__,
        fixed=dict(model="resnet20", task="digits", schedule="embedded", rounds=10, epochs=3),
        grid=dict(seed=[0]),
        sample=dict(lr=("loguniform", 0.01, 0.2), weight_decay=("loguniform", 1e-5, 1e-3),
                    prune_fraction=("uniform", 0.15, 0.4), rewind=("choice", ["pretrained", "early"])),
        num_samples=12,
        weights="embedded",
        patience=2,
    )
