"""MoCo v2 as an IMP task: a query encoder trained by SGD, a key encoder that follows it as an
exponential moving average, and a queue of past keys as negatives (He et al. 2020; Chen et al. 2020b).

The query encoder's trunk is the backbone IMP prunes. The key encoder is a copy of the query
encoder (MoCo's initialisation), rewound with the rest of the model every round and masked with
the backbone's mask (as the paper's code prunes ``encoder_k`` with ``encoder_q``'s mask); then
k ← m·k + (1 − m)·q after every step: a pruned weight is 0 in q at every step and in k at the
start, so it stays exactly 0 in k too. Keys pass through the key encoder in a shuffled order, cut into
``shuffle_bn_splits`` groups with their own batch-norm statistics (MoCo's shuffling BN on one
device), so a query and its key never share batch statistics.

Its score, as the paper's code reports it (MoCo/main_moco_imp.py, ``test``): the (K+1)-way
contrastive top-1 of the query encoder on one view against the key encoder on the other, whose
K negatives are an evaluation queue of its own: fresh random unit keys at every evaluation,
replaced batch by batch by the evaluation's keys; training's queue is neither read nor changed.
"""

import copy
from typing import List, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from ...device import autocast
from ...distributed import unwrap
from .contrastive import COMMON_OPTIONS, ContrastiveTask, check_common_options, to_views
from .encoder import ContrastiveEncoder
from .losses import info_nce_with_queue
from .retrieval import queue_contrastive_hits
from .views import EVALUATION_SEED, training_view_batches

MOCO_OPTIONS = {
    "temperature": 0.2,  # MoCo v2
    "queue_size": 65536,  # K, MoCo's negatives
    "key_momentum": 0.999,  # m of the key encoder's moving average
    "shuffle_bn_splits": 8,  # groups of the shuffled key batch (MoCo's 8 GPUs); 1: no shuffling BN
    "augmentation": "moco",  # views.RECIPES
    **COMMON_OPTIONS,
}


def check_moco_options(options: Mapping) -> None:
    options = {**MOCO_OPTIONS, **options}
    check_common_options(options)
    for key in ("queue_size", "shuffle_bn_splits"):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    momentum = options["key_momentum"]
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
        raise ValueError(f"key_momentum must be in [0, 1), got {momentum!r}")


class MoCoModel(nn.Module):
    def __init__(self, backbone: nn.Module, spec, projection_dim: int, queue_size: int, key_momentum: float,
                 shuffle_bn_splits: int):
        super().__init__()
        self.query = ContrastiveEncoder(backbone, spec, projection_dim)
        self.key = copy.deepcopy(self.query).requires_grad_(False)
        self.key_momentum = key_momentum
        self.shuffle_bn_splits = shuffle_bn_splits
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, projection_dim), dim=1))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.query(images)

    @torch.no_grad()
    def apply_backbone_mask(self, mask) -> None:
        """Zero the pruned weights in the key encoder's copy of the backbone (its trunk uses the
        backbone's names), as ``rewind.apply_mask`` does in the backbone."""
        params = dict(self.key.trunk.named_parameters())
        for name, keep in mask.items():
            params[name].mul_(keep.to(params[name].device, params[name].dtype))

    @torch.no_grad()
    def sync_key_encoder(self) -> None:
        """k = q, weights and statistics (MoCo's initialisation)."""
        self.key.load_state_dict(self.query.state_dict())

    @torch.no_grad()
    def update_key_encoder(self) -> None:
        query, key = list(self.query.parameters()), list(self.key.parameters())
        torch._foreach_mul_(key, self.key_momentum)
        torch._foreach_add_(key, query, alpha=1.0 - self.key_momentum)

    @torch.no_grad()
    def keys(self, images: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """The key projections of ``images``, computed in the shuffled ``order`` in groups with
        their own batch statistics, returned in the original order."""
        # at least 2 images a group: batch norm cannot train on one image of 1x1 features
        splits = max(1, min(self.shuffle_bn_splits, len(images) // 2))
        shuffled = torch.cat([self.key(group) for group in images[order].tensor_split(splits)])
        keys = torch.empty_like(shuffled)
        keys[order] = shuffled
        return keys

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest entries of the queue by ``keys`` (normalised), wrapping around."""
        size = len(self.queue)
        keys = F.normalize(keys.float(), dim=1)[-size:]
        slots = (self.queue_pointer + torch.arange(len(keys), device=keys.device)) % size
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_pointer.copy_((self.queue_pointer + len(keys)) % size)


class MoCoTask(ContrastiveTask):
    pretraining_format = "moco"
    heads = ("projection head", "key encoder", "queue")
    head_modules = {"projection head": "query.projector", "key encoder": "key"}  # the queue is never a file's

    def __init__(self, name, data_root, image_size, loading, options):
        super().__init__(name, data_root, image_size, loading, options)
        self.queue_size = int(options["queue_size"])
        self.key_momentum = float(options["key_momentum"])
        self.shuffle_bn_splits = int(options["shuffle_bn_splits"])

    def wrap(self, backbone: nn.Module, spec) -> nn.Module:
        return MoCoModel(backbone, spec, self.projection_dim, self.queue_size, self.key_momentum,
                         self.shuffle_bn_splits)

    def projector(self, model: MoCoModel) -> nn.Module:
        return model.query.projector

    def load_pretrained_heads(self, model: MoCoModel, path, weights_format: str, found: str) -> List[str]:
        loaded = super().load_pretrained_heads(model, path, weights_format, found)
        if loaded:
            # the file's encoder_k and queue are not read: the key encoder starts at the query
            # encoder, as in MoCo's own start and the paper's code (it loads encoder_q into both)
            model.sync_key_encoder()
            loaded.append("key encoder")
        return loaded

    def train_batches(self, batch_size: int, generator: torch.Generator, shard=None):
        """(view_a, view_b, shuffle_seed) batches: the seed orders the keys for shuffling BN."""
        for view_a, view_b in training_view_batches(self.train_pairs, batch_size, generator, self.loading, shard):
            yield view_a, view_b, int(torch.randint(2**62, (), generator=generator))

    def loss(self, model: MoCoModel, batch, device: torch.device) -> torch.Tensor:
        view_a, view_b = to_views(batch, device, self.loading.precision)
        model.update_key_encoder()  # with the query after the last step, as MoCo's forward does
        q = model.query(view_a)
        order = torch.randperm(len(view_b), generator=torch.Generator().manual_seed(batch[2])).to(device)
        k = model.keys(view_b, order)
        # the loss sees the queue as it was; it is updated in place right after
        loss = info_nce_with_queue(q, k, model.queue.clone(), self.temperature)
        model.enqueue(k)
        return loss

    def distributed_loss(self, model: nn.Module, batch, device: torch.device, parallel) -> torch.Tensor:
        """One rank's share of ``loss`` in a data-parallel round (MoCo v2's multi-GPU training):
        the keys come from the whole global batch with its BatchNorm shuffled across ranks, the
        queue takes every rank's keys, and the rank's loss is over its own queries, so the
        ranks' average is the one-process loss of the global batch."""
        view_a, view_b = to_views(batch, device, self.loading.precision)
        moco = unwrap(model)
        moco.update_key_encoder()
        q = model(view_a)  # the query encoder through DDP, which all-reduces its gradients
        size = len(view_b) * parallel.world_size
        order = torch.randperm(size, generator=torch.Generator().manual_seed(batch[2])).to(device)
        groups = max(1, min(moco.shuffle_bn_splits, size // 2) // parallel.world_size)
        keys = parallel.shuffled_keys(moco.key, view_b, order, groups)  # (global batch, d), global order
        loss = info_nce_with_queue(q, parallel.own_share(keys), moco.queue.clone(), self.temperature)
        moco.enqueue(keys)
        return loss

    def representations(self, model: MoCoModel, view_a, view_b):
        # both views through the query encoder, the network IMP prunes: the key encoder's outputs
        # may all share an offset that MoCo's loss never sees (it adds the same to every logit),
        # and mixing them into Eq. (2)'s candidates would measure that offset, not the features
        return model.query(view_a), model.query(view_b)

    def scored_batches(self, model: MoCoModel, batches, device: torch.device):
        """``retrieval_top1``: Eq. (2) within each batch. ``contrastive_top1``: each batch's queries
        against their keys and the evaluation queue, which then takes the batch's keys."""
        if self.metric != "contrastive_top1":
            yield from super().scored_batches(model, batches, device)
            return
        generator = torch.Generator().manual_seed(EVALUATION_SEED)  # the same queue every round
        queue = F.normalize(torch.randn(self.queue_size, self.projection_dim, generator=generator), dim=1).to(device)
        for view_a, view_b in batches:
            with autocast(device, self.loading.precision):
                q, k = model.query(view_a), model.key(view_b)
            yield queue_contrastive_hits(q, k, queue), 1.0 / (1 + self.queue_size)
            # the newest K entries, as MoCo's pointer leaves them (which slot holds which is immaterial)
            queue = torch.cat([queue, F.normalize(k.float(), dim=1)])[-self.queue_size:]

    @torch.no_grad()
    def evaluate(self, model: MoCoModel, device: torch.device):
        metrics = super().evaluate(model, device)
        if self.metric != "retrieval_top1":
            return metrics
        # the two branches (query on one view, key on the other), for reference
        query_only = self.representations
        self.representations = lambda m, a, b: (m.query(a), m.key(b))
        try:
            metrics["retrieval_top1_query_key"] = super().evaluate(model, device)["retrieval_top1"]
        finally:
            self.representations = query_only
        return metrics


def build_moco(name, data_root, image_size, loading, **options) -> MoCoTask:
    check_moco_options(options)
    return MoCoTask(name, data_root, image_size, loading, {**MOCO_OPTIONS, **options})
