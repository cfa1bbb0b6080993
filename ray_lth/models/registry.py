"""Model registry: torchvision ResNets (never with downloaded weights) and the small models."""

from dataclasses import dataclass
from typing import Callable, Tuple

from torch import nn
from torchvision import models as tv_models

from ..registry import Registry
from .cifar_stem import CIFAR_STEM_REASON, cifar_resnet
from .small import CifarResNet, ConvNet


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model and which of its modules IMP must never prune.

    ``first_conv`` and ``heads`` are exact module names (paper, section 3: the first convolution
    and every task head stay dense). ``not_from_weights`` names, with the reason, the modules
    besides the heads that θ_p never fills (they keep their fresh initialisation).
    """

    name: str
    builder: Callable[[int], nn.Module]  # num_classes -> model with a fresh task head
    first_conv: str = "conv1"
    heads: Tuple[str, ...] = ("fc",)
    feature_dim: int = 0  # width of the features the head sees (for MLP heads of SSL tasks)
    not_from_weights: Tuple[Tuple[str, str], ...] = ()  # (module, why) left out of θ_p loading

    @property
    def never_pruned(self) -> Tuple[str, ...]:
        return (self.first_conv,) + self.heads


MODELS: Registry[ModelSpec] = Registry("model")


def _add(spec: ModelSpec) -> None:
    MODELS.register(spec.name)(spec)


# weights=None: this project never downloads weights; θ_p comes from a local file (weights.py).
_add(ModelSpec("resnet18", lambda n: tv_models.resnet18(weights=None, num_classes=n), feature_dim=512))
_add(ModelSpec("resnet50", lambda n: tv_models.resnet50(weights=None, num_classes=n), feature_dim=2048))
_add(ModelSpec("resnet152", lambda n: tv_models.resnet152(weights=None, num_classes=n), feature_dim=2048))
# the same with the authors' CIFAR stem (3×3/1 conv1, no max-pool) for the 32-px tasks
_CIFAR_STEM = (("conv1", CIFAR_STEM_REASON),)
_add(ModelSpec("resnet18_cifar", cifar_resnet(tv_models.resnet18), feature_dim=512, not_from_weights=_CIFAR_STEM))
_add(ModelSpec("resnet50_cifar", cifar_resnet(tv_models.resnet50), feature_dim=2048, not_from_weights=_CIFAR_STEM))
_add(ModelSpec("resnet152_cifar", cifar_resnet(tv_models.resnet152), feature_dim=2048, not_from_weights=_CIFAR_STEM))
_add(ModelSpec("resnet8", lambda n: CifarResNet(blocks=1, num_classes=n), feature_dim=64))
_add(ModelSpec("resnet20", lambda n: CifarResNet(blocks=3, num_classes=n), feature_dim=64))
# resnet8 at half width (8-16-32 channels, 19K prunable weights): the embedded default's model, small
# enough that IMP tickets run out of capacity within 18 rounds of 20 % on a CPU task
_add(ModelSpec("resnet8_narrow", lambda n: CifarResNet(blocks=1, num_classes=n, width=8), feature_dim=32))
_add(ModelSpec("resnet56", lambda n: CifarResNet(blocks=9, num_classes=n), feature_dim=64))
_add(ModelSpec("convnet", lambda n: ConvNet(num_classes=n), feature_dim=128))


def get_model_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def build_model(name: str, num_classes: int) -> nn.Module:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return get_model_spec(name).builder(num_classes)
