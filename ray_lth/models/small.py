"""Small models for the embedded default and the tests: a CIFAR-style ResNet and a ConvNet.

Both follow torchvision's naming (``conv1`` stem, ``layerN`` stages, ``fc`` head) so that the
same prunable-parameter rule and the same weights loader serve them and torchvision's ResNets.
"""

from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1


class CifarResNet(nn.Module):
    """ResNet for small images (He et al. 2016, section 4.2): 3 stages of ``blocks`` BasicBlocks.

    Depth = 6 * blocks + 2 (resnet8: 1 block, resnet20: 3 blocks). Shortcuts that change shape
    are 1x1 convolutions (option B), reusing torchvision's BasicBlock.
    """

    def __init__(self, blocks: int, num_classes: int, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.in_channels = width
        self.layer1 = self._stage(width, blocks, stride=1)
        self.layer2 = self._stage(2 * width, blocks, stride=2)
        self.layer3 = self._stage(4 * width, blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _stage(self, channels: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_channels != channels:
            downsample = nn.Sequential(
                conv1x1(self.in_channels, channels, stride), nn.BatchNorm2d(channels)
            )
        layers = [BasicBlock(self.in_channels, channels, stride, downsample)]
        self.in_channels = channels
        layers += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvNet(nn.Module):
    """A four-layer ConvNet (conv1 stem + three pruned convs) with a linear head."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _conv_bn_relu(width, 2 * width)
        self.layer2 = nn.Sequential(nn.MaxPool2d(2), _conv_bn_relu(2 * width, 4 * width))
        self.layer3 = nn.Sequential(nn.MaxPool2d(2), _conv_bn_relu(4 * width, 4 * width))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))
