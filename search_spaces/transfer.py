"""Transfer of tickets (paper, section 4, Figure 3), embedded: IMP on the pre-training task
(generated shapes, from the shapes-pre-trained resnet20 θ_p) gives m_P; its masks at rounds
2, 4, 6, 8, 10 (36.00 to 89.26 % sparsity) are fine-tuned with θ_p on digits and gratings as soon
as each exists, next to the dense fine-tune of each task; 3 seeds (upstream seed s gives the
ticket of downstream seed s). With --data-root, name real tasks instead, e.g.
--set downstream=... is not supported: edit `downstream` below (cifar10, cifar100, svhn,
fashion_mnist, visda2017 with their Table 1 schedules); their tickets then fine-tune at the authors'
fine-tune batch (fine_tune_batch_size: 128, VisDA-2017 64), as do the dense fine-tunes they are
judged against."""

from ray_lth.transfer import TransferSpace


def space() -> TransferSpace:
    return TransferSpace(
        description=__doc__,
        upstream=dict(model="resnet20", task="shapes", rewind="pretrained", schedule="embedded", epochs=2),
        downstream={"digits": dict(schedule="embedded"), "gratings": dict(schedule="embedded")},
        rounds=[2, 4, 6, 8, 10],
        seeds=[0, 1, 2],
        task_specific=[],
    )
