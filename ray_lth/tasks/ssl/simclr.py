"""simCLR as an IMP task: one encoder sees both views of a batch; NT-Xent at ``temperature``,
or (``loss="authors"``) the paper code's variant of it.

Its score, as the paper's code reports it (SimCLR/main.py calls train.val_cacc with mlp=False):
the contrastive top-1 of the backbone's features, the projection head replaced by the identity
(``eval_features=backbone``); ``eval_features=projection`` ranks the projections z instead.
"""

from typing import Mapping

import torch
from torch import nn

from .contrastive import COMMON_OPTIONS, ContrastiveTask, check_common_options, to_views
from .encoder import ContrastiveEncoder
from .losses import nt_xent, nt_xent_authors

# "nt_xent": simCLR's mean of -log r_i; "authors": -log of the mean r_i, as the paper code's
# SimCLR/utils.py (the paper spaces' choice)
SIMCLR_LOSSES = {"nt_xent": nt_xent, "authors": nt_xent_authors}
# 0.5: the NT-Xent temperature of the paper's simCLR code (and simCLR's CIFAR setting);
# Table 2 sweeps it from 0.1 to 20 (search_spaces/simclr_temperature.py)
SIMCLR_OPTIONS = {
    "temperature": 0.5,
    "loss": "nt_xent",  # SIMCLR_LOSSES
    "eval_features": "backbone",  # what evaluation ranks: backbone (the paper's code) or projection (z)
    "augmentation": "authors_simclr",  # views.RECIPES: the paper's code has no blur; simclr: Chen et al.'s
    **COMMON_OPTIONS,
}
EVAL_FEATURES = ("backbone", "projection")


def check_simclr_options(options: Mapping) -> None:
    options = {**SIMCLR_OPTIONS, **options}
    check_common_options(options)
    features = options["eval_features"]
    if features not in EVAL_FEATURES:
        raise ValueError(f"eval_features={features!r} is not allowed; choose one of {list(EVAL_FEATURES)}")
    if options["loss"] not in SIMCLR_LOSSES:
        raise ValueError(f"loss={options['loss']!r} is not allowed; choose one of {sorted(SIMCLR_LOSSES)}")


class SimCLRTask(ContrastiveTask):
    # over several workers: BatchNorm over the global batch (simCLR's global BN), see distributed.py
    sync_batch_norm = True

    def wrap(self, backbone: nn.Module, spec) -> nn.Module:
        return ContrastiveEncoder(backbone, spec, self.projection_dim)

    def projector(self, model: ContrastiveEncoder) -> nn.Module:
        return model.projector

    def loss(self, model: nn.Module, batch, device: torch.device) -> torch.Tensor:
        view_a, view_b = to_views(batch, device, self.loading.precision)
        # one forward over both views: batch norm sees all 2n images, as in simCLR
        z_a, z_b = model(torch.cat([view_a, view_b])).chunk(2)
        return SIMCLR_LOSSES[self.options["loss"]](z_a, z_b, self.temperature)

    def distributed_loss(self, model: nn.Module, batch, device: torch.device, parallel) -> torch.Tensor:
        """A data-parallel rank's loss: the loss over the global batch, whose negatives span every
        rank (simCLR's multi-device training). Each rank computes the same global loss; the
        gathered projections send each rank N times its share's gradient, which DDP's average
        over the N ranks turns back into the one-process gradient."""
        view_a, view_b = to_views(batch, device, self.loading.precision)
        z_a, z_b = model(torch.cat([view_a, view_b])).chunk(2)
        return SIMCLR_LOSSES[self.options["loss"]](parallel.gather(z_a), parallel.gather(z_b), self.temperature)

    def representations(self, model: ContrastiveEncoder, view_a, view_b):
        features = model.trunk if self.options["eval_features"] == "backbone" else model
        return features(torch.cat([view_a, view_b])).chunk(2)


def build_simclr(name, data_root, image_size, loading, **options) -> SimCLRTask:
    check_simclr_options(options)
    return SimCLRTask(name, data_root, image_size, loading, {**SIMCLR_OPTIONS, **options})
