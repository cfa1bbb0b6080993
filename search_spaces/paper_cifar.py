"""The paper's CIFAR-10 experiment (Figure 3): ResNet-50 from --weights (θ_Img, θ_sim or θ_MoCo),
CIFAR-10 from --data-root, Table 1's schedule (182 epochs, ×0.1 at 91 and 136), rewinding to
θ_p, 18 rounds (to 98.20 % sparsity), 3 seeds, one GPU per trial. Each round reports the test
accuracy of its best-validation epoch, validation = 5,000 of the 50,000 training images (a fixed
draw, the same for every seed and round), training on the other 45,000, as the authors do."""

from ray_lth.spaces import SweepSpace


def space() -> SweepSpace:
    return SweepSpace(
        description=__doc__,
        fixed=dict(model="resnet50", task="cifar10", schedule="cifar10", rewind="pretrained", rounds=18,
                   selection="best_val", val_images=5000, image_size=32, num_workers=4),
        grid=dict(seed=[0, 1, 2]),
        weights="required",
        cpus_per_trial=4,
        gpus_per_trial=1,
    )
