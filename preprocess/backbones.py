"""The two feature extractors: ResNet-101 on frames (appearance) and 3D ResNeXt-101 on clips (motion).

Each extractor takes raw uint8 RGB pixels at the video's own resolution (so only bytes cross to the GPU), resizes
them to its input size (bicubic, antialiased like PIL's, which HCRN/DualVGR used through scipy's imresize; rounded
back to the 0-255 grid) and normalises them:
- appearance: frames (N, H, W, 3) -> scaled to [0, 1], ImageNet mean/std -> torchvision ResNet-101 to the global
  average pool -> (N, 2048);
- motion: clips (N, T, H, W, 3) -> 0-255 floats, minus the Kinetics mean (``kinetics_mean``, the checkpoint's own
  training input) or unchanged (``raw``, what HCRN/DualVGR fed) -> 3D ResNeXt-101 to its pool -> (N, 2048).

Weights always load with ``torch.load(weights_only=True)``. Without weights the caller must ask for random
initialisation explicitly; ``recalibrate_batchnorm`` then makes the random-init features well scaled (docs/notes.md).
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from preprocess.resnext3d import CheckpointError, load_kinetics_weights, resnext101_3d
from utils.config import REPO_ROOT
from utils.safe_pickle import UnsafePickleError, check_torch_file_bounds

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (114.7748, 107.7354, 99.4750)  # on the 0-255 scale, RGB
MOTION_INPUTS = ("kinetics_mean", "raw")
WEIGHTS_DIR = REPO_ROOT / "data" / "weights"


class WeightsError(ValueError):
    """A weights file that is not what the extractor needs, or contradictory weight options."""


class MissingWeightsError(WeightsError):
    """No weights file and no explicit --random_init; the message says which file to get and where to put it."""


# What each extractor is, where its weights come from, and what the HDF5 file calls its features.
BACKBONES = {
    "resnet101": {
        "feature_key": "resnet_features",
        "kind": "appearance",
        "default_size": 224,
        "weights_file": "resnet101-63fe2227.pth",
        "weights_source": "torchvision's ImageNet ResNet-101 (IMAGENET1K_V1, what HCRN/DualVGR used): "
                          "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    },
    "resnext101": {
        "feature_key": "resnext_features",
        "kind": "motion",
        "default_size": 112,
        "weights_file": "resnext-101-kinetics.pth",
        "weights_source": "Hara et al.'s Kinetics 3D ResNeXt-101 (cardinality 32, shortcut B), the Google Drive "
                          "link in the README of https://github.com/kenshohara/3D-ResNets-PyTorch",
    },
}


def default_weights_path(model_name: str) -> Path:
    """Where the weights of ``model_name`` are looked for when --weights is not given."""
    return WEIGHTS_DIR / BACKBONES[model_name]["weights_file"]


def resolve_weights(model_name: str, weights: str | Path | None, random_init: bool) -> Path | None:
    """The weights file to load, or None for random init; raise MissingWeightsError with instructions otherwise."""
    if random_init:
        if weights is not None:
            raise WeightsError("give either --weights or --random_init, not both")
        return None
    path = Path(weights) if weights is not None else default_weights_path(model_name)
    if path.is_file():
        return path
    info = BACKBONES[model_name]
    raise MissingWeightsError(
        f"{model_name} weights not found at {path}. Get {info['weights_file']} from {info['weights_source']}, "
        f"put it at {default_weights_path(model_name)} (or pass --weights PATH), or pass --random_init for "
        "uninformative random-init features (demo/tests only).")


def input_normalisation(model_name: str, motion_input: str = "kinetics_mean") -> str:
    """How the extractor's input pixels are normalised, in words (recorded in the feature file)."""
    if BACKBONES[model_name]["kind"] == "appearance":
        return "RGB/255, ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)"
    if motion_input == "kinetics_mean":
        return "RGB 0-255 minus the Kinetics mean (114.7748, 107.7354, 99.4750), no std (the checkpoint's training)"
    return "raw RGB 0-255 (as HCRN/DualVGR fed the checkpoint)"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _resnet_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision ResNet-101 state dict from ``path`` (bare, or under 'state_dict'/'model'; 'module.' stripped)."""
    try:
        check_torch_file_bounds(path, require_zip=False)
    except UnsafePickleError as e:
        raise WeightsError(str(e)) from None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{path}: expected a ResNet-101 state dict, got {type(checkpoint).__name__}")
    return {name.removeprefix("module."): tensor for name, tensor in checkpoint.items()
            if not name.removeprefix("module.").startswith("fc.")}


def _load_resnet_weights(trunk: nn.Module, path: Path) -> None:
    state = _resnet_state_dict(path)
    expected = {name: tensor for name, tensor in trunk.state_dict().items()
                if not name.endswith("num_batches_tracked")}  # torchvision's own files omit the counters
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected and not name.endswith("num_batches_tracked")]
    wrong_shape = [f"{name} {tuple(state[name].shape)} != {tuple(expected[name].shape)}"
                   for name in expected if name in state and state[name].shape != expected[name].shape]
    if missing or unexpected or wrong_shape:
        raise WeightsError(f"{path} is not a torchvision ResNet-101 state dict: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shapes {wrong_shape[:5]}")
    trunk.load_state_dict(state, strict=False)


RESIZE = "bicubic, antialiased (torch interpolate, as PIL), from the decoded frame, rounded to integers 0-255"


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> float (N, 3, height, width) on the 0-255 scale, bicubic with antialiasing.

    The result is clamped and rounded to integers, as an 8-bit image resize (PIL, scipy's imresize) gives.
    """
    x = frames.permute(0, 3, 1, 2).float()
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp_(0, 255).round_()


def resize_to_uint8(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> uint8 (..., height, width, 3), exactly the pixels the extractors feed their network.

    For mixing videos of different resolutions in one batch (the extractors leave frames of their size unchanged).
    """
    resized = resize_frames(frames.flatten(0, -4), size).to(torch.uint8).permute(0, 2, 3, 1)
    return resized.unflatten(0, frames.shape[:-3])


class AppearanceExtractor(nn.Module):
    """frames uint8 (N, H, W, 3) RGB, any H and W -> ResNet-101 pooled features float (N, 2048)."""

    def __init__(self, trunk: nn.Module, size: tuple[int, int], channels_last: bool):
        super().__init__()
        self.trunk, self.size = trunk, size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (resize_frames(frames, self.size) - self.mean) / self.std
        return self.trunk(x.contiguous(memory_format=self.memory_format)).float()


class MotionExtractor(nn.Module):
    """clips uint8 (N, T, H, W, 3) RGB, any H and W -> 3D ResNeXt-101 pooled features float (N, 2048)."""

    def __init__(self, trunk: nn.Module, motion_input: str, size: tuple[int, int], channels_last: bool):
        super().__init__()
        if motion_input not in MOTION_INPUTS:
            raise ValueError(f"motion_input must be one of {MOTION_INPUTS}, got {motion_input!r}")
        self.trunk, self.size = trunk, size
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        mean = KINETICS_MEAN if motion_input == "kinetics_mean" else (0.0, 0.0, 0.0)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        n, t = clips.shape[:2]
        x = resize_frames(clips.flatten(0, 1), self.size)  # (N*T, 3, h, w)
        x = x.unflatten(0, (n, t)).transpose(1, 2) - self.mean  # (N, 3, T, h, w)
        return self.trunk(x.contiguous(memory_format=self.memory_format)).float()


def build_extractor(model_name: str, weights: Path | None, seed: int, size: tuple[int, int] | None = None,
                    motion_input: str = "kinetics_mean", channels_last: bool = False) -> nn.Module:
    """The extractor on the CPU in eval mode; ``weights=None`` means random init, seeded by ``seed``.

    size: (height, width) the frames are resized to (default: the model's own, 224 or 112 square).
    """
    if model_name not in BACKBONES:
        raise ValueError(f"unknown model {model_name!r}: expected one of {sorted(BACKBONES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model_name == "resnet101":
            trunk = torchvision.models.resnet101(weights=None)
            trunk.fc = nn.Identity()
        else:
            trunk = resnext101_3d()
    if weights is not None:
        try:
            (_load_resnet_weights if model_name == "resnet101" else load_kinetics_weights)(trunk, weights)
        except CheckpointError as e:
            raise WeightsError(str(e)) from None
        except pickle.UnpicklingError:
            raise WeightsError(f"{weights}: refused: loading it would run code named in the file (only tensors and "
                               "plain containers are accepted; save a plain state dict)") from None
        except (RuntimeError, OSError, EOFError) as e:
            raise WeightsError(f"{weights}: cannot be read as a weights file ({str(e).splitlines()[0]})") from None
    if channels_last:
        trunk = trunk.to(memory_format=torch.channels_last if model_name == "resnet101" else torch.channels_last_3d)
    size = tuple(size) if size is not None else (BACKBONES[model_name]["default_size"],) * 2
    extractor = (AppearanceExtractor(trunk, size, channels_last) if model_name == "resnet101"
                 else MotionExtractor(trunk, motion_input, size, channels_last))
    return extractor.eval()


@torch.no_grad()
def recalibrate_batchnorm(extractor: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm's running statistics by their average over ``batches`` (train-mode passes).

    batches: extractor inputs (uint8 frames or clips), each with at least 2 samples. Returns the samples seen.
    The extractor is left in eval mode.
    """
    norms = [m for m in extractor.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
    seen = 0
    extractor.train()
    try:
        for batch in batches:
            extractor(batch)
            seen += batch.shape[0]
    finally:
        extractor.eval()
    if seen == 0:
        raise ValueError("BatchNorm recalibration got no samples")
    return seen
