"""A larger pre-trained model (paper, section 5.3, Figures 9 and 12): IMP on the pre-training task
(Figure 12's curve) and the transfer of its masks to a downstream task (Figure 9), for one ResNet
depth per experiment; the report then compares depths at equal *numbers* of remaining weights.
Embedded: θ_p pre-trained on generated shapes, IMP on shapes, tickets at rounds 2-10 fine-tuned
on digits (standing in for CIFAR-100), 2 seeds. Real: --weights simclr-resnet50.pth --data-root.

    python launchers/sweep.py --space resnet_depth --name depth-resnet50 --set model=resnet50
    python launchers/sweep.py --space resnet_depth --name depth-resnet152 --set model=resnet152
    python launchers/report.py experiments/depth-resnet152 --compare experiments/depth-resnet50

(one depth per experiment because each depth has its own θ_p file: a space carries one weights
file). The report writes curves_<task>_remaining.png with the remaining-weight count on the x-axis."""

from ray_lth.transfer import TransferSpace


def space() -> TransferSpace:
    return TransferSpace(
        description=__doc__,
        upstream=dict(model="resnet152", task="shapes", rewind="pretrained", schedule="embedded", epochs=1),
        downstream={"digits": dict(schedule="embedded", epochs=2)},
        rounds=[2, 4, 6, 8, 10],
        seeds=[0, 1],
    )
