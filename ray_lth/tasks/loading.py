"""How a task's DataLoaders feed the device: worker processes, pinned memory, persistent workers.

On the CPU (the tests, the embedded default) batches are made in the training process, as they
always were: results stay bit-identical, and loader workers would only take cores from the
training step. On a GPU, images are decoded and augmented by worker processes (one fewer than
the trial's CPUs, leaving one for the training loop), into pinned memory so that the copy to the
GPU overlaps the step, and the workers persist across epochs (no re-fork, no re-read of the
dataset per epoch). ``ImpConfig.num_workers`` overrides the count where given.
``precision`` says how the batches are computed on the device once there (``device.py``: fp32, or
opt-in bf16 autocast with channels-last images on a GPU); the task's forward passes follow it.
"""

import math
import os
from dataclasses import dataclass
from typing import Optional

import torch

from ..device import check_precision


@dataclass(frozen=True)
class Loading:
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False  # keep the workers of a DataLoader iterated again (needs workers)
    precision: str = "fp32"

    def __post_init__(self):
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.persistent_workers and not self.num_workers:
            raise ValueError("persistent_workers needs num_workers > 0")
        check_precision(self.precision)

    def options(self, reused: bool = True) -> dict:
        """DataLoader keyword arguments; ``reused=False`` for a loader made anew every epoch,
        whose workers could not persist anyway."""
        return {"num_workers": self.num_workers, "pin_memory": self.pin_memory,
                "persistent_workers": self.persistent_workers and reused}


def process_cpus() -> int:
    """The CPUs this process may run on (its affinity; all of them where that is unknown)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def loading_for(num_workers: Optional[int], device: torch.device, cpus: Optional[float],
                reads_files: bool, precision: str = "fp32") -> Loading:
    """``num_workers``: the config's (None: sized here); ``cpus``: the trial's CPUs (None: this
    process's); ``reads_files``: the task decodes files (embedded sets are tensors in memory,
    batched fastest in the training process); ``precision``: the config's."""
    if device.type != "cuda":
        return Loading(num_workers or 0, precision=precision)
    if num_workers is None:
        num_workers = max(1, math.floor(cpus if cpus is not None else process_cpus()) - 1) if reads_files else 0
    return Loading(num_workers, pin_memory=num_workers > 0, persistent_workers=num_workers > 0, precision=precision)
