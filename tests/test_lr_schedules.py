"""lr_factor against torch's own schedulers, stepped the way each is meant to be."""

import pytest
import torch

from ray_lth.train import TrainHparams, lr_factor, schedule_for


def _torch_lrs(make_scheduler, steps, lr):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_step_schedule_equals_multisteplr_stepped_per_epoch():
    hp = TrainHparams(epochs=10, batch_size=1, lr=0.1, milestones=(3, 7))
    per_epoch = 5
    reference = _torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [3, 7], 0.1), 10, 0.1)
    ours = [hp.lr * lr_factor(hp, it, per_epoch) for it in range(10 * per_epoch)]
    assert ours == pytest.approx([lr for lr in reference for _ in range(per_epoch)])


def test_cosine_and_poly_equal_torch_schedulers_per_iteration():
    per_epoch, epochs = 7, 4
    total = per_epoch * epochs
    cosine = TrainHparams(epochs=epochs, batch_size=1, lr=1e-4, lr_schedule="cosine", min_lr=1e-6)
    reference = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, total, eta_min=1e-6), total, 1e-4)
    assert [1e-4 * lr_factor(cosine, it, per_epoch) for it in range(total)] == pytest.approx(reference, rel=1e-9)
    poly = TrainHparams(epochs=epochs, batch_size=1, lr=5e-3, lr_schedule="poly", poly_power=0.9)
    reference = _torch_lrs(lambda o: torch.optim.lr_scheduler.PolynomialLR(o, total, power=0.9), total, 5e-3)
    assert [5e-3 * lr_factor(poly, it, per_epoch) for it in range(total)] == pytest.approx(reference, rel=1e-6)


def test_linear_warmup_multiplies_the_first_iterations():
    hp = TrainHparams(epochs=2, batch_size=1, lr=0.01, warmup_iters=4, milestones=(1,))
    assert [lr_factor(hp, it, 10) for it in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert lr_factor(hp, 10, 10) == pytest.approx(0.1)


def test_voc_presets_follow_table_1():
    seg = schedule_for("voc_segmentation_table1")  # voc_segmentation is the authors' code (test_authors_dense.py)
    assert (seg.batch_size, seg.lr, seg.weight_decay, seg.warmup_iters, seg.milestones) == (4, 0.01, 1e-4, 100, (49, 60))
    det = schedule_for("voc_detection")
    assert (det.epochs, det.batch_size, det.lr, det.min_lr, det.lr_schedule) == (50, 8, 1e-4, 1e-6, "cosine")
    with pytest.raises(ValueError, match="lr_schedule='linear' is not allowed"):
        TrainHparams(epochs=1, batch_size=1, lr=0.1, lr_schedule="linear")


def test_warmup_epochs_equals_the_authors_warmup_then_multisteplr():
    """The 32-px presets' one-epoch warm-up against the authors' loop: in epochs < warmup their
    ``warmup_lr`` sets lr0·(epoch·steps + i + 1)/(warmup·steps) before step i, and
    ``MultiStepLR.step()`` runs after every epoch."""
    epochs, steps, lr0, milestones = 6, 7, 0.1, [3, 5]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, 0.1)
    reference = []
    for epoch in range(epochs):
        for i in range(steps):
            if epoch < 1:
                for group in optimizer.param_groups:
                    group["lr"] = min(lr0, lr0 * (epoch * steps + i + 1) / (1 * steps))
            reference.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
        scheduler.step()
    hp = schedule_for("cifar10", epochs=epochs, milestones=tuple(milestones), batch_size=1)
    assert hp.warmup_epochs == 1 and hp.lr == lr0
    assert [lr0 * lr_factor(hp, it, steps) for it in range(epochs * steps)] == pytest.approx(reference, rel=1e-12)
    for name in ("cifar100", "svhn", "fashion_mnist"):
        assert schedule_for(name).warmup_epochs == 1
    with pytest.raises(ValueError, match="not both"):
        TrainHparams(epochs=2, batch_size=1, lr=0.1, warmup_iters=3, warmup_epochs=1)
