"""A larger pre-trained model (paper, section 5.3, Figures 9 and 12): IMP on the pre-training task
(Figure 12's curve) and the transfer of its masks to a downstream task (Figure 9), for one ResNet
depth per experiment; the report then compares depths at equal *numbers* of remaining weights.
Embedded: CIFAR ResNets, resnet56 against resnet20 (3.3x the prunable weights), θ_p pre-trained
on generated shapes, IMP on shapes, tickets at rounds 2-10 fine-tuned on digits (standing in for
CIFAR-100), 2 seeds. (torchvision's ResNet-50/152 shrink 16-px images to 1 px: embedded, their
dense digits accuracy was 22 % and 14 %, so they only make sense on real data.)

    python launchers/sweep.py --space resnet_depth --name depth-resnet20 --set model=resnet20
    python launchers/sweep.py --space resnet_depth --name depth-resnet56
    python launchers/report.py experiments/depth-resnet56 --compare experiments/depth-resnet20

Paper scale: `--set model=resnet152 --weights simclr-r152.pth --data-root DIR --set task=...`
and likewise for resnet50. One depth per experiment because each depth has its own θ_p file (a
space carries one weights file). The report writes curves_<task>_remaining.png with the
remaining-weight count on the x-axis."""

from ray_lth.transfer import TransferSpace


def space() -> TransferSpace:
    return TransferSpace(
        description=__doc__,
        # lr 0.01: at the embedded 0.05, one-epoch rounds of resnet56 swung between 24 % and 100 %
        upstream=dict(model="resnet56", task="shapes", rewind="pretrained", schedule="embedded", epochs=2, lr=0.01),
        downstream={"digits": dict(schedule="embedded", epochs=2, lr=0.01)},
        rounds=[2, 4, 6, 8, 10],
        seeds=[0, 1],
    )
