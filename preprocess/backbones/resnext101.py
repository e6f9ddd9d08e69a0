"""Hara et al.'s Kinetics 3D ResNeXt-101 (cardinality 32, shortcut B) on clips: HCRN/DualVGR's motion extractor
(2048-d; the network is preprocess/resnext3d.py)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from preprocess.backbones.base import Backbone, WeightsError
from preprocess.backbones import register_backbone
from preprocess.resnext3d import CheckpointError, load_kinetics_weights, resnext101_3d

KINETICS_MEAN = (114.7748, 107.7354, 99.4750)  # on the 0-255 scale, RGB


@register_backbone
class ResNeXt101(Backbone):
    name = "resnext101"
    kind = "motion"
    feature_dim = 2048
    input_size = (112, 112)
    conv_dims = 3
    input_modes = {  # --motion_input
        "kinetics_mean": (KINETICS_MEAN, (1.0, 1.0, 1.0), "RGB 0-255 minus the Kinetics mean (114.7748, 107.7354, "
                          "99.4750), no std (the checkpoint's training)"),
        "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "raw RGB 0-255 (as HCRN/DualVGR fed the checkpoint)"),
    }
    weights_file = "resnext-101-kinetics.pth"
    weights_source = ("Hara et al.'s Kinetics 3D ResNeXt-101 (cardinality 32, shortcut B), the Google Drive "
                      "link in the README of https://github.com/kenshohara/3D-ResNets-PyTorch")
    weights_sha256 = ""  # published on Google Drive without a hash
    bn_recalibration = True
    batch_size = 16
    calibration_batch = 8

    def build_network(self, size: tuple[int, int]) -> nn.Module:
        return resnext101_3d()

    def load_weights(self, network: nn.Module, path: Path) -> None:
        try:
            load_kinetics_weights(network, path)
        except CheckpointError as e:
            raise WeightsError(str(e)) from None
