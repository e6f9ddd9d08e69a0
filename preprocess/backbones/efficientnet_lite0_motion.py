"""A motion backbone built from the pretrained 2D EfficientNet-Lite0: how its mid-level feature maps change within
a clip (400-d per clip). The demo's motion stream: it stands in for the Kinetics 3D ResNeXt-101, whose weights
cannot be downloaded here, and unlike a randomly initialised 3D network it carries direction, speed and when a
shape moves (linear probes in docs/demo.md).

Each frame of a clip (T frames) goes through Lite0's stem and its first :data:`BLOCKS` MBConv blocks (ImageNet
weights of ``efficientnet_lite0``, the same file and hash check), giving maps ``M_t`` of
:data:`CHANNELS` channels at 1/16 of the input size (7 x 7 for 112 px). With x and y the map's column and row
coordinates scaled to [-1, 1] and ``D = M_{T-1} - M_0`` (the change over the clip), per channel c:

- ``energy_c = mean_{t, y, x} |M_{t+1} - M_t|``: how much changes per frame (speed, and whether anything moves);
- ``shift_x_c = mean_{y, x} x D_c``, ``shift_y_c = mean_{y, x} y D_c``: where the channel's response moved (a
  response that moves right gains on the right and loses on the left, so its x-moment grows): direction;
- ``|shift_x_c|``, ``|shift_y_c|``: how far, whatever the direction (speed again, linearly readable).

Feature: ``[energy, shift_x, shift_y, |shift_x|, |shift_y|]`` (5 x 80 = 400). A clip needs T >= 2 frames.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from preprocess.backbones import register_backbone
from preprocess.backbones.efficientnet_lite0 import EfficientNetLite0, EfficientNetLite0Features

BLOCKS = 6      # stem + MBConv blocks 0-5: the first block of the stride-16 stage
CHANNELS = 80   # that block's output channels


class TemporalDifferenceFeatures(nn.Module):
    """normalised clips (N, 3, T, h, w) -> (N, 5 * CHANNELS) (module docstring). ``lite0`` holds the whole
    ImageNet network (so its state dict loads strictly); only the stem and the first BLOCKS blocks run."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.lite0 = EfficientNetLite0Features(size)

    def feature_maps(self, frames: torch.Tensor) -> torch.Tensor:
        """(M, 3, h, w) -> (M, CHANNELS, h/16, w/16)."""
        net = self.lite0.net
        x = net._swish(net._bn0(net._conv_stem(frames)))
        for block in net._blocks[:BLOCKS]:
            x = block(x)
        return x

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        n, _, t = clips.shape[:3]
        if t < 2:
            raise ValueError(f"efficientnet_lite0_motion needs clips of at least 2 frames, got {t}")
        maps = self.feature_maps(clips.transpose(1, 2).flatten(0, 1))           # (N*T, c, H, W)
        maps = maps.unflatten(0, (n, t))                                         # (N, T, c, H, W)
        height, width = maps.shape[-2:]
        ys = torch.linspace(-1, 1, height, device=maps.device, dtype=maps.dtype).view(height, 1)
        xs = torch.linspace(-1, 1, width, device=maps.device, dtype=maps.dtype).view(1, width)
        energy = (maps[:, 1:] - maps[:, :-1]).abs().mean(dim=(1, 3, 4))         # (N, c)
        change = maps[:, -1] - maps[:, 0]                                        # (N, c, H, W)
        shift_x = (change * xs).mean(dim=(2, 3))
        shift_y = (change * ys).mean(dim=(2, 3))
        return torch.cat([energy, shift_x, shift_y, shift_x.abs(), shift_y.abs()], dim=1)


@register_backbone
class EfficientNetLite0Motion(EfficientNetLite0):
    name = "efficientnet_lite0_motion"
    kind = "motion"
    feature_dim = 5 * CHANNELS
    input_size = (112, 112)
    conv_dims = 2
    batch_size = 16   # clips
    calibration_batch = 8

    def build_network(self, size: tuple[int, int]) -> nn.Module:
        return TemporalDifferenceFeatures(size)

    def load_weights(self, network: nn.Module, path: Path) -> None:
        super().load_weights(network.lite0, path)
