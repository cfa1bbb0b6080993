"""One rank of a data-parallel IMP round (plain ``torch.distributed``; the process group is set up
by whoever starts the ranks: Ray Train's ``TorchTrainer``, or a test's processes).

The round means the same at any number of ranks N:

- **Global batch.** ``batch_size`` is the global batch: each global batch is drawn exactly as one
  process draws it (the same sampler, fed by the round's seeded generator, which every rank
  builds alike), and rank r loads positions r, r + N, r + 2N, … of it — DistributedSampler's
  strided split, applied per batch instead of per epoch. So the global batches, the LR schedule
  (counted in global steps) and the RNG draws are those of one process; only the loading is
  split. Ray Data is not used: its shuffles are not the round's seeded permutation, and the tasks
  are torch Datasets whose views are seeded per (epoch, image), which a per-index sampler keeps.
- **Gradients.** Each rank's loss is weighted by its share of the global batch (n_r·N/n, 1 for an
  even split), so DDP's average of the ranks' gradients is the gradient of the global batch's mean
  loss, a short last batch included. ``train_masked`` masks the gradients after ``backward()``
  returns, and DDP's all-reduce has finished by then (its reducer waits for the buckets before
  backward returns): every rank multiplies the same averaged gradient by the same mask, so a
  pruned weight's update is 0·grad + wd·0 = 0 and it, and its momentum, stay exactly zero on
  every rank.
- **Evaluation.** The main rank scores the unwrapped model on the full test set, with the task's
  own code: the same metric as one process on the same weights (the other ranks do not evaluate).
- **BatchNorm.** Per rank by default, as DDP and the authors' multi-GPU scripts; a task that
  needs statistics over the global batch says so (``sync_batch_norm``, simCLR's global BN), and
  its BatchNorm layers become ``SyncBatchNorm`` (GPU only, as torch implements it). MoCo v2
  shuffles the key encoder's BatchNorm across ranks instead (``shuffled_keys``).
"""

from dataclasses import dataclass
from typing import Callable, Iterator, List

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def check_global_batch(batch_size: int, world_size: int) -> int:
    """The batch each of ``world_size`` ranks loads: ``batch_size`` is the global batch."""
    if batch_size % world_size:
        raise ValueError(f"batch_size={batch_size} is the global batch, split over workers_per_trial={world_size} "
                         f"workers: it must be a multiple of {world_size}")
    return batch_size // world_size


def unwrap(model: nn.Module) -> nn.Module:
    """The module DDP wraps (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


class ShardedBatches:
    """Rank ``rank``'s share of every batch of ``batches`` (a batch sampler that every rank
    iterates alike): positions rank, rank + world_size, …"""

    def __init__(self, batches, rank: int, world_size: int):
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __iter__(self) -> Iterator[List[int]]:
        for batch in self.batches:
            yield list(batch)[self.rank::self.world_size]

    def __len__(self) -> int:
        return len(self.batches)


@dataclass(frozen=True)
class DataParallel:
    """This process's rank in a data-parallel round; the default process group must exist."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard_batches(self, batches) -> ShardedBatches:
        return ShardedBatches(batches, self.rank, self.world_size)

    def shard(self, task) -> "ShardedTask":
        return ShardedTask(task, self)

    def wrap_model(self, model: nn.Module, task) -> nn.Module:
        """``model`` under DDP (SyncBatchNorm first where the task needs global statistics)."""
        if getattr(task, "sync_batch_norm", False):
            if self.device.type != "cuda":
                raise ValueError(f"task {task.name!r} synchronises BatchNorm over the global batch, which torch's "
                                 f"SyncBatchNorm runs on GPUs only: give the workers GPUs (gpus_per_worker > 0)")
            # the converted layers keep the same parameter and buffer tensors, so the backbone the
            # trajectory captures and prunes sees what they train
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # buffers are not broadcast from rank 0 at every forward: BatchNorm statistics stay each
        # rank's own (rank 0's are evaluated), and MoCo's queue is kept equal by construction
        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                       forward_sync_buffers=False)

    def share_weight(self, count: int) -> torch.Tensor:
        """n_r·N/n for this rank's ``count`` of the global batch's n examples: weighting each rank's
        mean loss by it makes DDP's average over ranks the mean over the global batch."""
        counts = torch.tensor([float(count)], device=self.device)
        total = counts.clone()
        dist.all_reduce(total)
        return counts[0] * self.world_size / total[0]

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Every rank's equal share of a batch, put back in the global batch's order (rank r held
        positions r, r + N, …); differentiable: the gradient flows back to each rank's share."""
        shares = dist_fn.all_gather(local.contiguous()) if local.requires_grad else self._gather_no_grad(local)
        stacked = torch.stack(shares, dim=1)  # (n_r, N, ...): row j holds positions j·N .. j·N + N - 1
        return stacked.reshape(-1, *local.shape[1:])

    def _gather_no_grad(self, local: torch.Tensor) -> List[torch.Tensor]:
        shares = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(shares, local.contiguous())
        return shares

    def mean_over_ranks(self, value: float) -> float:
        """The ranks' mean of ``value``: of their weighted losses, the global batch's loss."""
        total = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total) / self.world_size

    def own_share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's positions of a global-order batch."""
        return batch[self.rank::self.world_size]

    @torch.no_grad()
    def shuffled_keys(self, encode: Callable[[torch.Tensor], torch.Tensor], local_images: torch.Tensor,
                      order: torch.Tensor, groups_per_rank: int) -> torch.Tensor:
        """MoCo v2's shuffling BN across ranks: the keys of the whole global batch, in its order.

        The key inputs of every rank are gathered, permuted by ``order`` (the same on every rank:
        it comes from the batch's shared seed, which spares MoCo's broadcast from rank 0), and
        rank r encodes the r-th of N equal chunks of the permuted batch, cut into
        ``groups_per_rank`` groups with their own BatchNorm statistics; the encoded chunks are
        gathered and un-permuted. With N·groups_per_rank groups of equal size these are the
        groups one process forms (``MoCoModel.keys``), so the keys equal its keys."""
        images = self.gather(local_images)
        chunk = images[order].tensor_split(self.world_size)[self.rank]
        encoded = torch.cat([encode(group) for group in chunk.tensor_split(groups_per_rank)])
        shuffled = torch.cat(self._gather_no_grad(encoded))  # rank order = permuted order
        keys = torch.empty_like(shuffled)
        keys[order.to(keys.device)] = shuffled
        return keys


class ShardedTask:
    """``task`` as one rank trains it: its share of every global batch, and a loss whose average
    over ranks (DDP's) is the loss of the global batch. A task whose loss couples the examples of
    a batch (contrastive negatives, shuffled BN) defines ``distributed_loss(model, batch, device,
    parallel)`` and computes it over the global batch itself; evaluation is the task's own."""

    def __init__(self, task, parallel: DataParallel):
        self.task, self.parallel = task, parallel

    def __getattr__(self, name):
        return getattr(self.task, name)

    def batches_per_epoch(self, batch_size: int) -> int:
        return self.task.batches_per_epoch(batch_size)  # global steps: the LR schedule's unit

    def train_batches(self, batch_size: int, generator: torch.Generator):
        return self.task.train_batches(batch_size, generator, shard=self.parallel.shard_batches)

    def loss(self, model: nn.Module, batch, device: torch.device) -> torch.Tensor:
        distributed_loss = getattr(self.task, "distributed_loss", None)
        if distributed_loss is not None:
            return distributed_loss(model, batch, device, self.parallel)
        return self.task.loss(model, batch, device) * self.parallel.share_weight(len(batch[0]))
