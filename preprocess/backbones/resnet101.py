"""ResNet-101 on frames, to its global average pool: HCRN/DualVGR's appearance extractor (2048-d), with torchvision's
parameter names and random initialisation (preprocess/resnet2d.py), so torchvision's ImageNet files load unchanged."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from preprocess.backbones.base import Backbone, check_state_dict, load_state_dict_file
from preprocess.backbones import register_backbone
from preprocess.resnet2d import resnet101

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET = (tuple(255 * m for m in IMAGENET_MEAN), tuple(255 * s for s in IMAGENET_STD),
            "RGB/255, ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)")


@register_backbone
class ResNet101(Backbone):
    name = "resnet101"
    kind = "appearance"
    feature_dim = 2048
    input_size = (224, 224)
    conv_dims = 2
    input_modes = {"imagenet": IMAGENET}
    weights_file = "resnet101-63fe2227.pth"
    weights_source = ("torchvision's ImageNet ResNet-101 (IMAGENET1K_V1, what HCRN/DualVGR used): "
                      "https://download.pytorch.org/models/resnet101-63fe2227.pth")
    weights_sha256 = "63fe2227"  # torchvision names its files after the first hex digits of their sha256
    bn_recalibration = True
    batch_size = 128
    calibration_batch = 64

    def build_network(self, size: tuple[int, int]) -> nn.Module:
        network = resnet101()
        network.fc = nn.Identity()
        return network

    def load_weights(self, network: nn.Module, path: Path) -> None:
        state = load_state_dict_file(path, "ResNet-101", drop_prefixes=("fc.",))
        check_state_dict(network, state, path, "torchvision ResNet-101")
        network.load_state_dict(state, strict=False)  # exact match checked above; only the counters may be absent
