"""torchvision ResNets with the CIFAR stem of the paper's code, for 32-px inputs.

The authors' CIFAR ResNets (their ``models/resnet.py``) replace the ImageNet stem (7×7 stride-2
conv1 and a 3×3 stride-2 max-pool, which leave a 32-px image 1×1 at layer4) by a 3×3 stride-1
conv1 and no max-pool, so layer4 sees 4×4. Every other module is torchvision's, under its own
key names, so a torchvision-format θ_p fits all of it but conv1; conv1 is freshly initialised
(never loaded, never pruned), as in their code.
"""

from typing import Callable

from torch import nn
from torchvision.models import ResNet

CIFAR_STEM_REASON = "CIFAR stem 3×3/1, freshly initialised, as the authors' code"


def with_cifar_stem(model: ResNet) -> ResNet:
    """``model`` with conv1 = Conv2d(3, 64, 3, stride 1, padding 1) and no max-pool, in place."""
    model.conv1 = nn.Conv2d(3, model.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    # torchvision's own initialisation of every conv, applied to the new one
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def cifar_resnet(imagenet_builder: Callable[..., ResNet]) -> Callable[[int], ResNet]:
    """A num_classes -> model builder: ``imagenet_builder`` (e.g. torchvision's resnet50) with the CIFAR stem."""
    return lambda num_classes: with_cifar_stem(imagenet_builder(weights=None, num_classes=num_classes))
