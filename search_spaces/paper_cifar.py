"""The paper's CIFAR-10 experiment (Figure 3): ResNet-50 with the authors' CIFAR stem
(`resnet50_cifar`: 3×3 stride-1 conv1, no max-pool, so layer4 is 4×4 at 32 px; conv1 freshly
initialised, every other backbone weight from --weights: θ_Img, θ_sim or θ_MoCo), CIFAR-10 from
--data-root, Table 1's schedule (182 epochs, ×0.1 at 91 and 136), rewinding to θ_p, 18 rounds
(to 98.20 % sparsity), 3 seeds, one GPU per trial. Each round reports the test accuracy of its
best-validation epoch, validation = the last 5,000 of the 50,000 training images (the same for
every seed and round), training on the other 45,000, as the authors do; lr warmed up linearly
over the first epoch, as their --warmup 1. Every round runs (patience none), as theirs.
`--set task=cifar100|svhn|fashion_mnist` with the same-named schedule for the other 32-px tasks;
`--set normalize=none` for a converted simCLR checkpoint that expects [0, 1] inputs. A
transferred ticket (e.g. m_Img from pretrain_imagenet): `--set rounds=0 --set
mask_file=<experiment>/<trial>/trajectory/mask_round_KK.rlthmask --set mask_label=m_Img-rKK`
fine-tunes at batch 128, as the authors' main_eval_downstream.py (the schedule's fine_tune_batch_size)."""

from ray_lth.spaces import SweepSpace


def space() -> SweepSpace:
    return SweepSpace(
        description=__doc__,
        fixed=dict(model="resnet50_cifar", task="cifar10", schedule="cifar10", rewind="pretrained", rounds=18,
                   selection="best_val", val_images=5000, image_size=32),
        grid=dict(seed=[0, 1, 2]),
        weights="required",
        cpus_per_trial=4,
        gpus_per_trial=1,
        # every round, as the authors ran all 19 states and report the largest matching sparsity: a
        # stop at the first failing round would end the curve at a dip (`--patience 2` saves rounds)
        patience=None,
    )
