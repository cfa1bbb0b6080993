"""What simCLR and MoCo v2 share as IMP tasks: two views per image, the options common to both,
and the evaluation on held-out images.

The score is ``eval_metric``: ``contrastive_top1``, the contrastive accuracy that the paper's code
reports for the task (simclr.py and moco.py say which), or ``retrieval_top1``, top-1 retrieval
accuracy as the paper defines it (Eq. (2)). Evaluation views are made by the training
augmentation, as in the paper's code, but fixed (the same seed every round), and the test images
are cut into consecutive batches of ``retrieval_batch_size`` (the paper's training batch, 256);
the last batch may be shorter. The metric pools every anchor of every batch, and its ``*_chance``
is what a random ranking scores.
"""

import math
from typing import Dict, Iterable, Iterator, List, Mapping, Tuple

import torch
from torch import nn

from ...device import autocast, to_device_format
from ...weights import WeightsError, read_projection_head
from ..loading import Loading
from .images import IMAGE_SOURCES, NORMALISATIONS, load_images, normalisation
from .retrieval import contrastive_hits, retrieval_chance, retrieval_hits
from .views import (RECIPES, ViewPairs, contrastive_augmentation, evaluation_view_batches,
                    training_batches_per_epoch, training_view_batches)

COMMON_OPTIONS = {
    "dataset": "photo_patches",  # embedded: photo_patches, shapes, digits, gratings; --data-root: imagenet, cifar10, cifar100
    "projection_dim": 128,  # output of the MLP head (simCLR, MoCo v2)
    "retrieval_batch_size": 256,  # n of Eq. (2): the candidates are the other 2n - 1 of a batch
    "train_images": 0,  # > 0: train on this many images (a fixed subset); 0: all
    "eval_images": 0,  # > 0: evaluate on this many test images (a fixed subset); 0: all
    "normalize": "auto",  # after augmentation: auto (embedded sets' own / ImageNet's), embedded, imagenet, none
    "eval_metric": "contrastive_top1",  # the paper's code's contrastive accuracy, or retrieval_top1 (Eq. (2))
}
EVAL_METRICS = ("contrastive_top1", "retrieval_top1")  # also the key that evaluate() reports the score under


def check_common_options(options: Mapping) -> None:
    """ValueError naming the first option with a value the task cannot use."""
    def positive_int(key, minimum):
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")

    if options["dataset"] not in IMAGE_SOURCES:
        raise ValueError(f"dataset={options['dataset']!r} is not allowed; choose one of {list(IMAGE_SOURCES)}")
    if options["normalize"] not in NORMALISATIONS:
        raise ValueError(f"normalize={options['normalize']!r} is not allowed; choose one of {list(NORMALISATIONS)}")
    for key, allowed in (("eval_metric", EVAL_METRICS), ("augmentation", tuple(RECIPES))):
        if options[key] not in allowed:
            raise ValueError(f"{key}={options[key]!r} is not allowed; choose one of {list(allowed)}")
    positive_int("projection_dim", 1)
    positive_int("retrieval_batch_size", 2)
    positive_int("train_images", 0)
    positive_int("eval_images", 0)
    check_temperature(options["temperature"])


def check_temperature(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {value!r}")


class ContrastiveTask:
    """A self-supervised task over two views; subclasses define the model (``wrap``), the loss
    and which two branches give the representations z and z' of Eq. (2)."""

    pretraining_format = "simclr"  # the weights format of checkpoints pre-trained on this very task
    heads = ("projection head",)  # what the wrapper adds to the backbone, as the θ_p log line names it
    head_modules = {"projection head": "projector"}  # the wrapper's module of each head a file may fill

    def __init__(self, name: str, data_root, image_size: int, loading: Loading, options: Mapping):
        self.name = name
        self.options = dict(options)
        self.temperature = float(options["temperature"])
        self.projection_dim = int(options["projection_dim"])
        self.retrieval_batch_size = int(options["retrieval_batch_size"])
        self.num_outputs = self.projection_dim  # the backbone's own fc is built but never used
        self.loading = loading
        self.metric = options["eval_metric"]  # the key of evaluate()'s result that IMP records
        augment = augmentation(options, image_size)
        dataset = options["dataset"]
        self.train_pairs = ViewPairs(load_images(dataset, True, data_root, image_size, options["train_images"]), augment)
        self.test_pairs = ViewPairs(load_images(dataset, False, data_root, image_size, options["eval_images"]), augment)

    def batches_per_epoch(self, batch_size: int) -> int:
        return training_batches_per_epoch(len(self.train_pairs), batch_size)

    def train_batches(self, batch_size: int, generator: torch.Generator, shard=None):
        return training_view_batches(self.train_pairs, batch_size, generator, self.loading, shard)

    def projector(self, model: nn.Module) -> nn.Module:
        """The projection head γ that the loss sees."""
        raise NotImplementedError

    def load_pretrained_heads(self, model: nn.Module, path, weights_format: str, found: str) -> List[str]:
        """Load the file's projection head into ``model`` when the file was pre-trained on this
        task (its γ_p); returns the names of the heads loaded (none for another task's file, or
        a file without one). A head of another shape is a WeightsError naming its keys."""
        if found != self.pretraining_format:
            return []
        head, head_keys = read_projection_head(path, weights_format)
        if head is None:
            return []
        projector = self.projector(model)
        expected = projector.state_dict()
        wrong = sorted(f"{head_keys[k]}: file {tuple(head[k].shape)} vs projection head {tuple(expected[k].shape)}"
                       for k in expected if head[k].shape != expected[k].shape)
        if wrong:
            raise WeightsError(f"{path} ({found} format): its projection head does not fit task {self.name!r} "
                               f"(projection_dim={self.projection_dim}, the model's feature width): {wrong}")
        projector.load_state_dict(head)
        return ["projection head"]

    def representations(self, model: nn.Module, view_a: torch.Tensor, view_b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The representations z and z' (of view_a and view_b) that a batch's ranking compares."""
        raise NotImplementedError

    def scored_batches(self, model: nn.Module, batches: Iterable, device: torch.device
                       ) -> Iterator[Tuple[torch.Tensor, float]]:
        """(hits, chance) of each evaluation batch under ``self.metric``; this ranks z and z' within
        the batch, by Eq. (2) or by the simCLR code's contrastive accuracy."""
        hits, chance = {"retrieval_top1": (retrieval_hits, retrieval_chance),
                        "contrastive_top1": (contrastive_hits, contrastive_chance)}[self.metric]
        for view_a, view_b in batches:
            with autocast(device, self.loading.precision):  # the ranking itself runs in float32
                z, z_prime = self.representations(model, view_a, view_b)
            yield hits(z, z_prime), chance(len(z))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device) -> Dict[str, float]:
        model.eval()
        precision = self.loading.precision
        batches = ((to_device_format(a.to(device), device, precision), to_device_format(b.to(device), device, precision))
                   for a, b in evaluation_view_batches(self.test_pairs, self.retrieval_batch_size, self.loading))
        hits, total, chance = 0, 0, 0.0
        for batch_hits, batch_chance in self.scored_batches(model, batches, device):
            hits += int(batch_hits.sum())
            total += batch_hits.numel()
            chance += batch_hits.numel() * batch_chance
        chance_key = self.metric.replace("_top1", "_chance")
        return {self.metric: hits / total, chance_key: chance / total}


def augmentation(options: Mapping, image_size: int):
    """The views' transform that the options ask for (their ``augmentation`` and ``normalize``)."""
    mean, std = normalisation(options["normalize"], options["dataset"])
    return contrastive_augmentation(options["augmentation"], image_size, mean, std)


def contrastive_chance(n: int) -> float:
    """A random ranking's contrastive top-1: one positive among the 2n similarities of an anchor
    (its own 0 included)."""
    return 1.0 / (2 * n)


def to_views(batch, device: torch.device, precision: str = "fp32") -> Tuple[torch.Tensor, torch.Tensor]:
    view_a, view_b = batch[0], batch[1]
    return tuple(to_device_format(v.to(device, non_blocking=True), device, precision) for v in (view_a, view_b))
