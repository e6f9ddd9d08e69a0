"""3D ResNeXt-101 (cardinality 32, shortcut B) of Hara et al., trained on Kinetics: the HCRN/DualVGR motion extractor.

The module names and tensor shapes are exactly those of the published ``resnext-101-kinetics.pth`` (without its
Kinetics classifier ``fc.*``), so its ``state_dict`` loads after stripping the ``module.`` prefix of nn.DataParallel.
The forward pass stops at the global average pool: a clip (N, 3, T, H, W) gives a (N, 2048) feature. For the
published 16x112x112 clips the pool sees a (1, 4, 4) map, as the original fixed-size AvgPool3d did; the adaptive pool
used here also accepts other clip sizes.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from utils.safe_pickle import UnsafePickleError, check_torch_file_bounds

RESNEXT101_LAYERS = (3, 4, 23, 3)
CARDINALITY = 32
EXPANSION = 2
FEATURE_DIM = 2048


class CheckpointError(ValueError):
    """A file that is not a 3D ResNeXt-101 Kinetics checkpoint (the message names the file and the bad tensors)."""


class ResNeXtBottleneck3D(nn.Module):
    """1x1x1 reduce -> 3x3x3 grouped conv (32 groups, carries the stride) -> 1x1x1 expand (x2), plus the shortcut.

    Shortcut B: identity, or a strided 1x1x1 conv + BN (``downsample``) when the shape changes.
    """

    def __init__(self, in_channels: int, width: int, stride: int):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv3d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, kernel_size=3, stride=stride, padding=1, groups=CARDINALITY, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, T, H, W) -> (N, 2 * width, T', H', W')."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNeXt3D(nn.Module):
    """Stem (7x7x7 conv, stride (1, 2, 2); 3x3x3 max pool, stride 2) and four stages of bottlenecks, then the pool."""

    def __init__(self, layers: tuple[int, ...] = RESNEXT101_LAYERS):
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=7, stride=(1, 2, 2), padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        in_channels = 64
        stages = []
        for stage, (blocks, width) in enumerate(zip(layers, (128, 256, 512, 1024))):
            stride = 1 if stage == 0 else 2
            modules = []
            for block in range(blocks):
                modules.append(ResNeXtBottleneck3D(in_channels, width, stride if block == 0 else 1))
                in_channels = width * EXPANSION
            stages.append(nn.Sequential(*modules))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                # The published checkpoint has no batch counters: keep them out of the state dict (still used for
                # momentum=None recalibration).
                module.register_buffer("num_batches_tracked", module.num_batches_tracked, persistent=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """clips (N, 3, T, H, W) float -> features (N, 2048)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(clips))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def resnext101_3d() -> ResNeXt3D:
    """The Kinetics 3D ResNeXt-101 trunk, randomly initialised (48,340,816 learnable parameters)."""
    return ResNeXt3D(RESNEXT101_LAYERS)


def kinetics_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The trunk's tensors from a published-format checkpoint (never executes code from the file).

    Accepts ``{"state_dict": {...}}`` (the published file) or a bare state dict; strips ``module.``; drops ``fc.*``.
    """
    try:
        check_torch_file_bounds(path, require_zip=False)
    except UnsafePickleError as e:
        raise CheckpointError(str(e)) from None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: expected a dict with a 'state_dict' (or a state dict), got {type(checkpoint).__name__}")
    trunk = {}
    for name, tensor in state.items():
        name = name.removeprefix("module.")
        if not name.startswith("fc."):
            trunk[name] = tensor
    return trunk


def load_kinetics_weights(model: ResNeXt3D, path: str | Path) -> None:
    """Load ``resnext-101-kinetics.pth`` into ``model``; every trunk tensor must be present with its shape."""
    state = kinetics_state_dict(path)
    expected = model.state_dict()
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    wrong_shape = [f"{name} {tuple(state[name].shape)} != {tuple(expected[name].shape)}"
                   for name in expected if name in state and state[name].shape != expected[name].shape]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(f"{path} is not a 3D ResNeXt-101 (cardinality 32) checkpoint: "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
                         f"wrong shapes {wrong_shape[:5]}")
    # strict=False only because BatchNorm re-adds the counter key for metadata-less dicts; checked exactly above.
    model.load_state_dict(state, strict=False)
