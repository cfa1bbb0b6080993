"""Which epoch's scores a round reports (``ImpConfig.selection``).

``last``: the test scores after the last epoch; nothing is evaluated during training.
``best_val``: the test scores of the epoch with the best validation score, on images held out of
the training set (``tasks/validation_split.py``), as the authors report CIFAR, SVHN and
Fashion-MNIST (``main_imp_downstream.py``: validation and test after every epoch, then
``test_ta[argmax(val_ta)]``). ``np.argmax`` and their ``is_best = val > best`` keep the
earlier of tied epochs; so does this. Either way the round prunes the weights of its last epoch,
as theirs does: the selection changes what is reported, not the ticket.
``best_test``: the best test score over the round's epochs — the authors' rule for supervised
ImageNet IMP (``main_imp_imagenet.py``: ``best_acc1`` over epochs on ImageNet's val set, which is
its only held-out labelled set, so selection and report use the same images; optimistic, named so).
"""

import math
from typing import Callable, Dict, Optional

import torch
from torch import nn

SELECTIONS = ("best_val", "best_test", "last")


class LastEpoch:
    after_epoch: Optional[Callable[[int], None]] = None  # nothing to do during training

    def __init__(self, task, model: nn.Module, device: torch.device):
        self.task, self.model, self.device = task, model, device

    def round_metrics(self) -> Dict[str, float]:
        return self.task.evaluate(self.model, self.device)


class BestValidationEpoch:
    """Scores the validation set after every epoch and the test set after each epoch that beats
    every earlier one on validation (the test scores of the others are never reported)."""

    def __init__(self, task, model: nn.Module, device: torch.device):
        self.task, self.model, self.device = task, model, device
        self.best_val = -math.inf
        self.best_epoch = 0  # 1-based: the number of epochs trained when the best was reached
        self.test: Optional[Dict[str, float]] = None

    def after_epoch(self, epoch: int) -> None:
        val = float(self.task.evaluate_validation(self.model, self.device)[self.task.metric])
        if val > self.best_val:  # strictly: a tie keeps the earlier epoch
            self.best_val, self.best_epoch = val, epoch + 1
            self.test = self.task.evaluate(self.model, self.device)

    def round_metrics(self) -> Dict[str, float]:
        if self.test is None:
            raise RuntimeError(f"no epoch had a finite validation {self.task.metric}")
        return {**self.test, f"val_{self.task.metric}": self.best_val, "best_epoch": self.best_epoch}


class BestTestEpoch:
    """Scores the test set after every epoch and reports the best epoch's scores."""

    def __init__(self, task, model: nn.Module, device: torch.device):
        self.task, self.model, self.device = task, model, device
        self.best_epoch = 0
        self.test: Optional[Dict[str, float]] = None

    def after_epoch(self, epoch: int) -> None:
        test = self.task.evaluate(self.model, self.device)
        if self.test is None or test[self.task.metric] > self.test[self.task.metric]:  # a tie keeps the earlier
            self.test, self.best_epoch = test, epoch + 1

    def round_metrics(self) -> Dict[str, float]:
        if self.test is None:
            raise RuntimeError("no epoch was scored")
        return {**self.test, "best_epoch": self.best_epoch}


_BY_NAME = {"best_val": BestValidationEpoch, "best_test": BestTestEpoch, "last": LastEpoch}


def epoch_selection(selection: str, task, model: nn.Module, device: torch.device):
    """The object that gives a round's reported metrics: ``after_epoch`` goes to ``train_masked``
    as its ``epoch_hook``, ``round_metrics()`` is called once training is done."""
    if selection not in _BY_NAME:
        raise ValueError(f"selection={selection!r} is not allowed; choose one of {list(SELECTIONS)}")
    return _BY_NAME[selection](task, model, device)
