"""Masked training: SGD with momentum under a fixed mask, and the schedules of Table 1.

Pruned weights are held at exactly zero without hooks or reparametrisation: the mask is applied
to the weights once, and after every backward pass one fused ``torch._foreach_mul_`` zeroes the
pruned gradients. For SGD with momentum and weight decay this keeps the pruned weights *and their
momentum* at exactly zero: the update of a pruned weight is grad·0 + wd·0 = 0, so its momentum
stays 0 and the weight stays 0 — the same result as multiplying weights and momentum after each
step, with one fused op instead of two.

The optimizer is plain SGD with momentum (Table 1: "SGD with 0.9 momentum"), without Nesterov, as
the authors' IMP scripts (``main_imp_downstream.py``, ``main_imp_imagenet.py``) build it; their
only Nesterov SGD is simCLR's linear evaluation, which this project does not run. Their simCLR IMP
(``SimCLR/args.py``) uses LARS instead (``optimizer="lars"``, the ``simclr`` schedule), whose step
is a per-layer multiple of the same g + wd·w, so pruned weights stay zero there too. One
difference: their pruned weights live on in ``weight_orig`` (torch.nn.utils.prune) and count in
LARS's ‖w‖; here they are zeros, so a sparse layer's trust ratio is its unpruned weights' own.
"""

import math
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from .device import autocast, check_precision


@dataclass(frozen=True)
class TrainHparams:
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: Tuple[int, ...] = ()  # epochs after which the LR is multiplied by gamma
    gamma: float = 0.1
    # the LR's shape over the run, per iteration: "step" (milestones), "cosine" (to min_lr, the
    # YOLOv4 row of Table 1) or "poly" ((1 - t/T)^poly_power, Faster R-CNN in Appendix B.2)
    lr_schedule: str = "step"
    min_lr: float = 0.0
    poly_power: float = 0.9
    warmup_iters: int = 0  # linear warm-up from lr/warmup_iters (DeepLab's 100 iterations)
    # the same warm-up counted in epochs (the authors' --warmup 1 for the 32-px tasks), so that it
    # spans one epoch of whatever the training set's size is
    warmup_epochs: int = 0
    # the lr of the backbone's parameters relative to the head's (the authors' DeepLab trains its
    # backbone at 0.1x); the task names which parameters are its backbone (backbone_parameters)
    backbone_lr_factor: float = 1.0
    # the batch of a fine-tune (a config with rounds=0, dense or under a transferred ticket), where
    # the authors' fine-tune script uses another than their IMP script (main_eval_downstream.py: 128)
    fine_tune_batch_size: Optional[int] = None
    # "fp32" as the authors; "bf16": autocast to bfloat16 and channels-last on a GPU (device.py)
    precision: str = "fp32"
    optimizer: str = "sgd"  # "sgd", or "lars" (the authors' simCLR IMP, see OPTIMIZERS)

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        for name, holds, expected in (
                ("epochs", self.epochs >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
                ("lr", self.lr > 0, "> 0"), ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
                ("weight_decay", self.weight_decay >= 0, ">= 0"),
                ("min_lr", 0 <= self.min_lr <= self.lr, f"in [0, lr={self.lr}]"),
                ("warmup_iters", self.warmup_iters >= 0, ">= 0"), ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"),
                ("backbone_lr_factor", self.backbone_lr_factor > 0, "> 0"),
                ("fine_tune_batch_size", self.fine_tune_batch_size is None or self.fine_tune_batch_size >= 1,
                 ">= 1 (or None: the batch_size)")):
            if not holds:
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)}")
        if any(not 0 < m < self.epochs for m in self.milestones):
            raise ValueError(f"milestones must lie in (0, epochs={self.epochs}), got {list(self.milestones)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} is not allowed; choose one of {sorted(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r} is not allowed; choose one of {list(LR_SCHEDULES)}")
        check_precision(self.precision)
        if self.warmup_iters and self.warmup_epochs:
            raise ValueError(f"give the warm-up in iterations or in epochs, not both (warmup_iters={self.warmup_iters}, "
                             f"warmup_epochs={self.warmup_epochs})")

    def to_dict(self) -> dict:
        return {**asdict(self), "milestones": list(self.milestones)}


LR_SCHEDULES = ("step", "cosine", "poly")


def _lars(params, hparams: "TrainHparams") -> torch.optim.Optimizer:
    """LARS as the authors' SimCLR/optimizer/lars.py: every parameter (BN and biases included)
    steps by lr · η‖w‖ / (‖g‖ + wd‖w‖) · (g + wd·w) through momentum, η = 1e-3, the ratio 1 where
    ‖w‖ or ‖g‖ is 0. timm's Lars computes that with eps=0 and always_adapt (also at wd 0); its
    momentum holds the update before the lr, theirs after: the same steps at a fixed lr."""
    from timm.optim import Lars  # imported on use: timm loads its model zoo on import

    return Lars(params, lr=hparams.lr, momentum=hparams.momentum, weight_decay=hparams.weight_decay,
                trust_coeff=1e-3, eps=0.0, always_adapt=True)


# the optimizer of a round: Table 1's SGD with momentum, or simCLR's LARS (as the authors' code).
# SGD steps every tensor in one foreach call (torch's default on a GPU only): on the CPU each call
# runs the per-tensor ops one tensor at a time, the same arithmetic without a Python loop over the
# parameters (about a quarter off the step of the default model's 30 small tensors)
OPTIMIZERS: Dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, hparams: torch.optim.SGD(params, lr=hparams.lr, momentum=hparams.momentum,
                                                   weight_decay=hparams.weight_decay, foreach=True),
    "lars": _lars,
}
TRAIN_FIELDS = tuple(f.name for f in fields(TrainHparams))


def lr_factor(hparams: TrainHparams, iteration: int, iterations_per_epoch: int) -> float:
    """The LR multiplier of (0-based) ``iteration``: the schedule's shape times the warm-up.
    The cosine starts after the warm-up and spans the iterations left, as the authors' YOLOv4
    CosineDecayLR (warm-up to lr, then cosine from lr to min_lr)."""
    total = hparams.epochs * iterations_per_epoch
    warmup_iters = hparams.warmup_iters or hparams.warmup_epochs * iterations_per_epoch
    if hparams.lr_schedule == "step":
        epoch = iteration // iterations_per_epoch
        shape = hparams.gamma ** sum(m <= epoch for m in hparams.milestones)
    elif hparams.lr_schedule == "cosine":
        floor = hparams.min_lr / hparams.lr
        after_warmup, span = max(0, iteration - warmup_iters), max(1, total - warmup_iters)
        shape = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * after_warmup / span))
    else:
        shape = (1 - min(iteration, total) / total) ** hparams.poly_power
    warmup = min(1.0, (iteration + 1) / warmup_iters) if warmup_iters else 1.0
    return shape * warmup

# Table 1 of the paper, per task; "embedded" is this project's small CPU default. The 32-px
# classification rows warm up linearly over their first epoch, as the authors' main_imp_downstream.py
# (--warmup 1: lr·(i+1)/steps in epoch 0, then MultiStepLR), which Table 1 does not list. A
# fine-tune (rounds=0: a transferred ticket, or the dense fine-tune it is judged against) runs at the authors' fine-tune batch (fine_tune_batch_size):
# main_eval_downstream.py's 128 for the 32-px tasks, main_eval_visda.py's 64 for VisDA-2017.
SCHEDULES: Dict[str, TrainHparams] = {
    # supervised ImageNet IMP (m_Img): 10 epochs a round at a fixed 1e-4, as the authors' main_imp_imagenet.py
    "imagenet": TrainHparams(epochs=10, batch_size=256, lr=1e-4, weight_decay=1e-4),
    # simCLR IMP as the authors' SimCLR/args.py runs it: LARS, fixed lr 1e-4, wd 1e-6 (Table 1
    # says SGD, wd 1e-4: optimizer=sgd weight_decay=1e-4)
    "simclr": TrainHparams(epochs=10, batch_size=256, lr=1e-4, weight_decay=1e-6, optimizer="lars"),
    "moco": TrainHparams(epochs=10, batch_size=256, lr=3e-4, weight_decay=1e-4),
    "cifar10": TrainHparams(epochs=182, batch_size=256, lr=0.1, weight_decay=2e-4, milestones=(91, 136),
                           warmup_epochs=1, fine_tune_batch_size=128),
    "cifar100": TrainHparams(epochs=182, batch_size=256, lr=0.1, weight_decay=2e-4, milestones=(91, 136),
                            warmup_epochs=1, fine_tune_batch_size=128),
    "svhn": TrainHparams(epochs=182, batch_size=256, lr=0.1, weight_decay=2e-4, milestones=(91, 136),
                        warmup_epochs=1, fine_tune_batch_size=128),
    "fashion_mnist": TrainHparams(epochs=182, batch_size=256, lr=0.1, weight_decay=2e-4, milestones=(91, 136),
                                 warmup_epochs=1, fine_tune_batch_size=128),
    "visda2017": TrainHparams(epochs=20, batch_size=128, lr=1e-3, weight_decay=5e-4, milestones=(10,),
                              fine_tune_batch_size=64),
    "embedded": TrainHparams(epochs=4, batch_size=64, lr=0.05, weight_decay=5e-4, milestones=(3,)),
    # Table 1's simCLR / MoCo rows in the embedded default's size: SGD, fixed LR, wd 1e-4; a larger
    # LR than 1e-4 because the embedded projection head starts untrained and rounds are 2 epochs
    "simclr_embedded": TrainHparams(epochs=2, batch_size=128, lr=0.02, weight_decay=1e-4),
    "moco_embedded": TrainHparams(epochs=2, batch_size=128, lr=0.02, weight_decay=1e-4),
    # Pascal VOC, Table 1 in epochs: YOLOv4-style detection, 50 epochs of VOC07+12 trainval at
    # batch 8, cosine from 1e-4 to 1e-6 after a linear warm-up over 2 epochs (the authors'
    # yolov4_config.py WARMUP_EPOCHS, which Table 1 does not list); DeepLabv3+ on VOC12 train (1464
    # images, 366 iterations an epoch at batch 4): 30K iterations = 82 epochs, as the authors'
    # Segmentation/main_imp_*.py: poly 0.9 over every iteration, no warm-up, the backbone at 0.1x
    # the head's lr. Table 1's DeepLab row (warm-up 100 iterations, x0.1 at 18K and 22K = epochs
    # 49 and 60, one lr) is voc_segmentation_table1
    "voc_detection": TrainHparams(epochs=50, batch_size=8, lr=1e-4, weight_decay=5e-4, lr_schedule="cosine",
                                  min_lr=1e-6, warmup_epochs=2),
    "voc_segmentation": TrainHparams(epochs=82, batch_size=4, lr=0.01, weight_decay=1e-4, lr_schedule="poly",
                                     poly_power=0.9, backbone_lr_factor=0.1),
    "voc_segmentation_table1": TrainHparams(epochs=82, batch_size=4, lr=0.01, weight_decay=1e-4,
                                            milestones=(49, 60), warmup_iters=100),
    # Appendix B.2: Faster R-CNN 24K iterations at batch 4 (6 epochs of VOC07+12), poly 0.9 from 5e-3
    "voc_faster_rcnn": TrainHparams(epochs=6, batch_size=4, lr=5e-3, weight_decay=1e-4, lr_schedule="poly"),
    # the embedded detection and segmentation stand-ins: a minute or so on a CPU; segmentation in
    # the shape of voc_segmentation (poly 0.9, the backbone at 0.1x: 0.86 mIoU on 256 scenes against
    # 0.89 with one lr, x0.1 at epoch 4 and a 10-iteration warm-up, measured here)
    "embedded_detection": TrainHparams(epochs=6, batch_size=8, lr=0.01, weight_decay=1e-4, lr_schedule="cosine",
                                       warmup_iters=20),
    "embedded_segmentation": TrainHparams(epochs=6, batch_size=8, lr=0.02, weight_decay=1e-4, lr_schedule="poly",
                                          poly_power=0.9, backbone_lr_factor=0.1),
}


def schedule_for(name: str, **overrides) -> TrainHparams:
    """The named schedule with ``overrides``. Changing ``epochs`` alone rescales the preset's
    LR milestones in proportion (e.g. 91, 136 of 182 become 5, 7 of 10), keeping its shape."""
    if name not in SCHEDULES:
        raise ValueError(f"No such schedule: {name!r}; choose one of {sorted(SCHEDULES)}")
    preset = SCHEDULES[name]
    if "epochs" in overrides and "milestones" not in overrides:
        epochs = int(overrides["epochs"])
        scaled = {round(m * epochs / preset.epochs) for m in preset.milestones}
        overrides["milestones"] = tuple(sorted(m for m in scaled if 0 < m < epochs))
    return replace(preset, **overrides)


class MaskedParameters:
    """The prunable parameters of a model with their masks, as same-layout float tensors, so
    that one fused op zeroes every pruned entry at once."""

    def __init__(self, model: nn.Module, mask: Mapping[str, torch.Tensor]):
        params = dict(model.named_parameters())
        unknown = sorted(set(mask) - set(params))
        if unknown:
            raise ValueError(f"mask names parameters the model does not have: {unknown[:5]}")
        self.params = [params[name] for name in mask]
        # empty_like keeps the parameter's device, dtype and memory format (channels-last too)
        self.masks = [torch.empty_like(p).copy_(mask[name]) for p, name in zip(self.params, mask)]

    @torch.no_grad()
    def apply_to_weights(self) -> None:
        torch._foreach_mul_(self.params, self.masks)

    @torch.no_grad()
    def apply_to_momentum(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero the momentum of the pruned weights (carried from a round they were not yet pruned
        in), so that they stay exactly zero."""
        for p, m in zip(self.params, self.masks):
            momentum = optimizer.state[p].get("momentum_buffer") if p in optimizer.state else None
            if momentum is not None:
                momentum.mul_(m)

    @torch.no_grad()
    def mask_gradients(self) -> None:
        pairs = [(p.grad, m) for p, m in zip(self.params, self.masks) if p.grad is not None]
        if pairs:
            grads, masks = zip(*pairs)
            torch._foreach_mul_(list(grads), list(masks))


def parameter_groups(model: nn.Module, task, hparams: TrainHparams) -> list:
    """The optimizer's parameter groups: one, or with a ``backbone_lr_factor`` the backbone's
    parameters (as ``task.backbone_parameters(model)`` names them) at that fraction of the lr and
    the rest (the head) at the lr; the schedule then scales both alike."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if hparams.backbone_lr_factor == 1.0:
        return [{"params": trainable}]
    named = getattr(task, "backbone_parameters", None)
    if named is None:
        raise ValueError(f"backbone_lr_factor={hparams.backbone_lr_factor}: task {task.name!r} does not name its "
                         f"backbone's parameters; leave backbone_lr_factor at 1.0")
    backbone = {id(p) for p in named(model)}
    return [{"params": [p for p in trainable if id(p) in backbone], "lr": hparams.lr * hparams.backbone_lr_factor},
            {"params": [p for p in trainable if id(p) not in backbone]}]


def is_dense(mask: Mapping[str, torch.Tensor]) -> bool:
    return all(bool(m.all()) for m in mask.values())


# (epochs done, epochs, mean training loss of the last epoch, seconds since training started)
EpochProgress = Callable[[int, int, float, float], None]


class TrainingDivergedError(RuntimeError):
    pass


def train_masked(
    model: nn.Module,
    task,
    hparams: TrainHparams,
    mask: Mapping[str, torch.Tensor],
    device: torch.device,
    generator: torch.Generator,
    step_hook: Optional[Callable[[int], None]] = None,
    masked_module: Optional[nn.Module] = None,
    epoch_hook: Optional[Callable[[int], None]] = None,
    progress: Optional["EpochProgress"] = None,
    optimizer_state: Optional[dict] = None,
) -> Dict[str, float]:
    """Train ``model`` in place on ``task`` with the pruned weights held at zero.

    ``step_hook(iteration)`` runs after every optimizer step (IMP uses it to capture θ_k%);
    ``epoch_hook(epoch)`` after every (0-based) epoch (best-validation selection scores it there).
    ``masked_module`` is the module whose parameter names the mask uses, when ``model`` wraps it
    (a detector around a pruned backbone); by default ``model`` itself.
    ``progress(epochs_done, epochs, epoch_loss, seconds)`` runs after every epoch (a sign of life
    in long rounds; the caller decides how often to show it).
    ``optimizer_state``: given, training goes on from the optimizer state it holds (its momentum;
    none when empty, the pruned weights' zeroed) and ends with the final state in it, on the CPU.
    """
    masked = None if is_dense(mask) else MaskedParameters(masked_module or model, mask)
    if masked is not None:
        masked.apply_to_weights()
    optimizer, scheduler = _optimizer_and_schedule(model, task, hparams, masked, optimizer_state)
    iteration = 0
    epoch_loss = float("nan")
    started = time.perf_counter()
    for epoch in range(hparams.epochs):
        model.train()
        loss_sum, batches = torch.zeros((), device=device), 0
        for batch in task.train_batches(hparams.batch_size, generator):
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, hparams.precision):
                loss = task.loss(model, batch, device)
            loss.backward()
            if masked is not None:
                masked.mask_gradients()
            optimizer.step()
            scheduler.step()  # per iteration: warm-up, cosine and poly need it; "step" counts epochs
            loss_sum += loss.detach().float()
            batches += 1
            iteration += 1
            if step_hook is not None:
                step_hook(iteration)
        epoch_loss = loss_sum.item() / max(batches, 1)  # one sync per epoch, not per step
        if not math.isfinite(epoch_loss):
            raise TrainingDivergedError(f"training loss became {epoch_loss} in epoch {epoch}; lower the lr")
        if epoch_hook is not None:
            epoch_hook(epoch)
        if progress is not None:
            progress(epoch + 1, hparams.epochs, epoch_loss, time.perf_counter() - started)
    if optimizer_state is not None:
        _hand_back(optimizer, optimizer_state)
    return {"train_loss": epoch_loss, "iterations": iteration}


def _optimizer_and_schedule(model: nn.Module, task, hparams: TrainHparams, masked: Optional["MaskedParameters"],
                            optimizer_state: Optional[dict]):
    """The round's optimizer (going on from ``optimizer_state``'s per-parameter state, if any) and
    its per-iteration lr schedule."""
    optimizer = OPTIMIZERS[hparams.optimizer](parameter_groups(model, task, hparams), hparams)
    per_epoch = max(1, task.batches_per_epoch(hparams.batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(hparams, it, per_epoch))
    if optimizer_state:  # the hyperparameters stay this round's own: only the per-parameter state goes on
        optimizer.load_state_dict({**optimizer_state, "param_groups": optimizer.state_dict()["param_groups"]})
        if masked is not None:
            masked.apply_to_momentum(optimizer)
    return optimizer, scheduler


def _hand_back(optimizer, optimizer_state: dict) -> None:
    """``optimizer``'s final state into ``optimizer_state``, on the CPU."""
    final = optimizer.state_dict()
    final["state"] = {i: {k: v.detach().to("cpu", copy=True) if torch.is_tensor(v) else v for k, v in s.items()}
                      for i, s in final["state"].items()}
    optimizer_state.clear()
    optimizer_state.update(final)
