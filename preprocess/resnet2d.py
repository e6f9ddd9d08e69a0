"""ResNet-101 for ImageNet (He et al., 2016; the "v1.5" variant with the stride on the 3x3 convolution), written to
load torchvision's state dicts unchanged and to draw the same random initialisation as ``torchvision.models.
resnet101(weights=None)`` under the same seed (tests/test_resnet2d.py holds both against torchvision).

Kept here rather than imported from torchvision because importing torchvision loads its whole operator library
(about 1.7 s on this project's CPU, most of predict.py's start-up) for one network.

Shapes: images (N, 3, H, W) float -> (N, 2048) after the global average pool (``fc`` maps to 1000 classes; the
extractor replaces it by an identity).
"""
from __future__ import annotations

import torch
from torch import nn

EXPANSION = 4              # a bottleneck's output has 4x its width
RESNET101_BLOCKS = (3, 4, 23, 3)


class Bottleneck(nn.Module):
    """1x1 (width) -> 3x3 (width, ``stride``) -> 1x1 (4 width) convolutions, each followed by BatchNorm, plus the
    input (through ``downsample`` when its shape changes). (N, in_channels, H, W) -> (N, 4 width, H/stride,
    W/stride)."""

    def __init__(self, in_channels: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * EXPANSION)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += shortcut                     # in place: no new (N, 4 width, H, W) tensor
        return self.relu(out)


class ResNet(nn.Module):
    """Stem (7x7 stride-2 convolution, 3x3 stride-2 max pool), four stages of bottlenecks (widths 64-512, strides
    1, 2, 2, 2), global average pool, ``fc``. (N, 3, H, W) -> (N, num_classes)."""

    def __init__(self, blocks: tuple[int, ...] = RESNET101_BLOCKS, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for stage, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
            stride = 1 if stage == 0 else 2
            layers = []
            for i in range(count):
                downsample = None
                if i == 0 and (stride != 1 or channels != width * EXPANSION):
                    downsample = nn.Sequential(nn.Conv2d(channels, width * EXPANSION, 1, stride=stride, bias=False),
                                               nn.BatchNorm2d(width * EXPANSION))
                layers.append(Bottleneck(channels, width, stride if i == 0 else 1, downsample))
                channels = width * EXPANSION
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        # He initialisation for the convolutions, BatchNorm as the identity: torchvision's choice, in its order.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet101() -> ResNet:
    """A randomly initialised ResNet-101 (the caller seeds torch), 44.5 M parameters with ``fc``."""
    return ResNet(RESNET101_BLOCKS)
