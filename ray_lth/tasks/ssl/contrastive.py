"""What simCLR and MoCo v2 share as IMP tasks: two views per image, the options common to both,
and the evaluation, top-1 retrieval accuracy (paper, Eq. (2)) on held-out images.

Evaluation views are fixed (the same seed every round), and the test images are cut into
consecutive batches of ``retrieval_batch_size`` (the paper's training batch, 256), each
retrieving within itself as in Appendix A.2; the last batch may be shorter. The metric pools
every representation of every batch, and ``retrieval_chance`` is what a random ranking scores.
"""

import math
from typing import Dict, List, Mapping, Tuple

import torch
from torch import nn

from ...device import autocast, to_device_format
from ...weights import WeightsError, read_projection_head
from ..loading import Loading
from .images import IMAGE_SOURCES, NORMALISATIONS, load_images, normalisation
from .retrieval import retrieval_chance, retrieval_hits
from .views import (ViewPairs, contrastive_augmentation, evaluation_view_batches, training_batches_per_epoch,
                    training_view_batches)

COMMON_OPTIONS = {
    "dataset": "photo_patches",  # embedded: photo_patches, shapes, digits, gratings; --data-root: imagenet, cifar10, cifar100
    "projection_dim": 128,  # output of the MLP head (simCLR, MoCo v2)
    "retrieval_batch_size": 256,  # n of Eq. (2): the candidates are the other 2n - 1 of a batch
    "train_images": 0,  # > 0: train on this many images (a fixed subset); 0: all
    "eval_images": 0,  # > 0: evaluate on this many test images (a fixed subset); 0: all
    "normalize": "auto",  # after augmentation: auto (embedded sets' own / ImageNet's), embedded, imagenet, none
}


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

    metric = "retrieval_top1"
    recipe = "simclr"  # the augmentation strength, see views.RECIPES
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
        mean, std = normalisation(options["normalize"], options["dataset"])
        augment = contrastive_augmentation(self.recipe, image_size, mean, std)
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
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module, device: torch.device) -> Dict[str, float]:
        model.eval()
        hits, total, chance = 0, 0, 0.0
        for view_a, view_b in evaluation_view_batches(self.test_pairs, self.retrieval_batch_size, self.loading):
            view_a, view_b = (to_device_format(v.to(device), device) for v in (view_a, view_b))
            with autocast(device):
                z, z_prime = self.representations(model, view_a, view_b)
            batch_hits = retrieval_hits(z, z_prime)
            hits += int(batch_hits.sum())
            total += batch_hits.numel()
            chance += batch_hits.numel() * retrieval_chance(len(z))
        return {"retrieval_top1": hits / total, "retrieval_chance": chance / total}


def to_views(batch, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    view_a, view_b = batch[0], batch[1]
    return tuple(to_device_format(v.to(device, non_blocking=True), device) for v in (view_a, view_b))
