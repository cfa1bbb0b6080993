"""What every task offers an IMP round: batches to train on, a loss, and an evaluation."""

from typing import Dict, Iterable, Protocol

import torch
from torch import nn


class Task(Protocol):
    name: str
    metric: str  # the key of evaluate()'s result that IMP and matching use (higher is better)
    num_outputs: int  # what the task head must output

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterable:
        """One epoch of training batches, shuffled by ``generator``."""

    def batches_per_epoch(self, batch_size: int) -> int:
        ...

    def loss(self, model: nn.Module, batch, device: torch.device) -> torch.Tensor:
        ...

    def evaluate(self, model: nn.Module, device: torch.device) -> Dict[str, float]:
        ...
