"""What every backbone module declares (:class:`Backbone`) and what they share: input resizing, pixel normalisation,
the frame/clip extractor wrappers, weight-file checks, BatchNorm recalibration and BatchNorm folding.

An extractor takes raw uint8 RGB pixels at the video's own resolution (so only bytes cross to the GPU), resizes them
to the backbone's input size (bicubic, antialiased like PIL's, which HCRN/DualVGR used through scipy's imresize;
rounded back to the 0-255 grid), normalises them with the backbone's per-channel mean and std (on the 0-255 scale)
and runs the network to its pooled feature:
- ``kind = "appearance"``: frames (N, H, W, 3) -> (N, D), one feature per frame (files: (videos, C, F, D));
- ``kind = "motion"``: clips (N, T, H, W, 3) -> (N, D), one feature per clip (files: (videos, C, D)).
"""
from __future__ import annotations

import hashlib
import pickle
from collections import Counter
from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from utils.config import REPO_ROOT
from utils.safe_pickle import UnsafePickleError, check_torch_file_bounds

KINDS = ("appearance", "motion")
# The HDF5 dataset each kind is written to: HCRN/DualVGR's names, whatever network made the features (the file's
# ``model`` attribute says which), so their readers and ours read any backbone's file unchanged.
FEATURE_KEYS = {"appearance": "resnet_features", "motion": "resnext_features"}
WEIGHTS_DIR = REPO_ROOT / "data" / "weights"
RESIZE = "bicubic, antialiased (torch interpolate, as PIL), from the decoded frame, rounded to integers 0-255"
FRAME_SAMPLING = {
    "appearance": "every frame of every clip, one feature each",
    "motion": "every clip (its F frames stacked in time), one feature each",
}


class WeightsError(ValueError):
    """A weights file that is not what the extractor needs, or contradictory weight options."""


class MissingWeightsError(WeightsError):
    """No weights file and no explicit --random_init; the message says which file to get and where to put it."""


class Backbone:
    """One feature extractor. A module ``preprocess/backbones/<name>.py`` subclasses this, sets the class
    attributes, implements :meth:`build_network` (and :meth:`load_weights` when it takes weights), registers the
    class with :func:`preprocess.backbones.register_backbone`, and its name goes into ``BACKBONE_MODULES``.

    Class attributes:
      name              the ``--model`` value (and the module's name)
      kind              appearance (one feature per frame) | motion (one feature per clip)
      feature_dim       D, the width of one feature (the model reads it from the file: no padding to 2048)
      input_size        default (height, width) the frames are resized to
      conv_dims         2 (2D convolutions) or 3 (3D, on clips (N, 3, T, h, w)): sets the channels-last layout (a
                        motion backbone of 2D convolutions gets clips and lays them out itself)
      input_modes       pixel normalisations the backbone offers, first = default: {mode: (mean, std, words)},
                        mean and std per RGB channel on the 0-255 scale
      weights_file      file name of the default weights (looked for in data/weights/ unless
                        :meth:`default_weights_path` says where a package installed it); None: no weights exist
      weights_source    where to get them, in words (printed when they are missing)
      weights_sha256    the default file's expected sha256 (a prefix is enough); checked when that file is used;
                        "" = not checked. A file given with --weights is hashed and recorded, never refused for it
      bn_recalibration  with random init, BatchNorm statistics are recalibrated on the dataset's frames unless
                        --no_bn_recalibration (a pretrained network keeps its own statistics)
      batch_size        default CNN batch (frames or clips)
      calibration_batch fixed batch of the recalibration passes (statistics must not depend on --batch_size)
    """
    name: str = ""
    kind: str = "appearance"
    feature_dim: int = 0
    input_size: tuple[int, int] = (224, 224)
    conv_dims: int = 2
    input_modes: dict = {}
    weights_file: str | None = None
    weights_source: str = ""
    weights_sha256: str = ""
    bn_recalibration: bool = True
    batch_size: int = 32
    calibration_batch: int = 32

    @property
    def feature_key(self) -> str:
        """The HDF5 dataset the features go to (``resnet_features`` / ``resnext_features``)."""
        return FEATURE_KEYS[self.kind]

    @property
    def frame_sampling(self) -> str:
        return FRAME_SAMPLING[self.kind]

    def feature_shape(self, num_clips: int, num_frames: int) -> tuple[int, ...]:
        """Per-video feature shape: (C, F, D) appearance, (C, D) motion."""
        if self.kind == "appearance":
            return num_clips, num_frames, self.feature_dim
        return num_clips, self.feature_dim

    def input_mode(self, mode: str | None) -> str:
        """``mode`` checked against :attr:`input_modes` (None: the default, the first)."""
        if mode is None:
            return next(iter(self.input_modes))
        if mode not in self.input_modes:
            raise WeightsError(f"{self.name} takes input normalisation {', '.join(self.input_modes)}, got {mode!r}")
        return mode

    def normalisation(self, mode: str | None = None) -> str:
        """How the input pixels are normalised, in words (recorded in the feature file)."""
        return self.input_modes[self.input_mode(mode)][2]

    def default_weights_path(self) -> Path | None:
        """Where the weights are looked for when --weights is not given (None: this backbone has none)."""
        return WEIGHTS_DIR / self.weights_file if self.weights_file else None

    def build_network(self, size: tuple[int, int]) -> nn.Module:
        """The randomly initialised network (the caller seeds torch): normalised pixels -> (N, feature_dim)."""
        raise NotImplementedError

    def load_weights(self, network: nn.Module, path: Path) -> None:
        """Load the state dict at ``path`` (``torch.load(weights_only=True)``) into ``network``; WeightsError when
        it does not fit exactly."""
        raise WeightsError(f"{self.name} takes no weights file")

    def build_extractor(self, weights: Path | None, seed: int, size: tuple[int, int] | None = None,
                        input_mode: str | None = None, channels_last: bool = False,
                        fold_norms: bool = False) -> nn.Module:
        """The extractor (uint8 pixels -> features) on the CPU in eval mode; ``weights=None``: random init seeded by
        ``seed``. size: (height, width) the frames are resized to (default :attr:`input_size`). ``channels_last``
        and ``fold_norms`` (:func:`fold_batchnorm`, inference only: not before a BatchNorm recalibration) make it
        faster and change the features by float rounding only."""
        size = tuple(size) if size is not None else tuple(self.input_size)
        mean, std, _ = self.input_modes[self.input_mode(input_mode)]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = self.build_network(size)
        if weights is not None:
            try:
                self.load_weights(network, Path(weights))
            except pickle.UnpicklingError:
                raise WeightsError(f"{weights}: refused: loading it would run code named in the file (only tensors "
                                   "and plain containers are accepted; save a plain state dict)") from None
            except (RuntimeError, OSError, EOFError) as e:
                raise WeightsError(f"{weights}: cannot be read as a weights file ({str(e).splitlines()[0]})") from None
        if fold_norms:
            network = fold_batchnorm(network.eval())
        layout = torch.contiguous_format
        if channels_last:
            network = network.to(memory_format=torch.channels_last if self.conv_dims == 2 else torch.channels_last_3d)
            if (self.kind == "appearance") == (self.conv_dims == 2):  # the input has the convolutions' rank
                layout = torch.channels_last if self.conv_dims == 2 else torch.channels_last_3d
        wrapper = FrameExtractor if self.kind == "appearance" else ClipExtractor
        return wrapper(network, size, mean, std, layout).eval()


def resolve_weights(backbone: Backbone, weights: str | Path | None, random_init: bool) -> Path | None:
    """The weights file to load, or None for random init; raise MissingWeightsError with instructions otherwise.

    The default file (no ``weights``) must have the backbone's expected hash."""
    if random_init:
        if weights is not None:
            raise WeightsError("give either --weights or --random_init, not both")
        return None
    default = backbone.default_weights_path()
    if weights is None and default is None:
        raise MissingWeightsError(f"{backbone.name} has no weights: pass --random_init")
    path = Path(weights) if weights is not None else default
    if not path.is_file():
        raise MissingWeightsError(
            f"{backbone.name} weights not found at {path}. Get {backbone.weights_file} from "
            f"{backbone.weights_source}, put it at {default} (or pass --weights PATH), or pass --random_init for "
            "uninformative random-init features (demo/tests only).")
    if weights is None and backbone.weights_sha256:
        digest = file_sha256(path)
        if not digest.startswith(backbone.weights_sha256):
            raise WeightsError(f"{path}: sha256 {digest} is not the expected {backbone.weights_sha256}... of "
                               f"{backbone.weights_file} ({backbone.weights_source}); the file is damaged or another")
    return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_state_dict_file(path: Path, description: str, drop_prefixes: tuple[str, ...] = ()) -> dict:
    """A state dict from ``path`` with ``torch.load(weights_only=True)``: bare, or under 'state_dict'/'model';
    'module.' stripped; keys starting with ``drop_prefixes`` (a classifier) left out. The file's pickle goes through
    the restricted unpickler's bounds first (nesting, sizes), so a hostile file is refused before torch reads it."""
    try:
        check_torch_file_bounds(path, require_zip=False)
    except UnsafePickleError as e:
        raise WeightsError(str(e)) from None
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{path}: expected a {description} state dict, got {type(checkpoint).__name__}")
    state = {name.removeprefix("module."): tensor for name, tensor in checkpoint.items()}
    return {name: tensor for name, tensor in state.items() if not name.startswith(drop_prefixes)}


def check_state_dict(network: nn.Module, state: dict, path: Path, description: str) -> None:
    """WeightsError unless ``state`` has exactly ``network``'s tensors with their shapes (BatchNorm's
    ``num_batches_tracked`` counters may be absent: torchvision's files omit them)."""
    expected = {name: tensor for name, tensor in network.state_dict().items()
                if not name.endswith("num_batches_tracked")}
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected and not name.endswith("num_batches_tracked")]
    wrong_shape = [f"{name} {tuple(state[name].shape)} != {tuple(expected[name].shape)}"
                   for name in expected if name in state and state[name].shape != expected[name].shape]
    if missing or unexpected or wrong_shape:
        raise WeightsError(f"{path} is not a {description} state dict: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}, wrong shapes {wrong_shape[:5]}")


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


class FrameExtractor(nn.Module):
    """frames uint8 (N, H, W, 3) RGB, any H and W -> pooled features float (N, D) of a 2D network."""

    def __init__(self, network: nn.Module, size: tuple[int, int], mean, std, memory_format):
        super().__init__()
        self.trunk, self.size, self.memory_format = network, size, memory_format
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (resize_frames(frames, self.size) - self.mean) / self.std
        return self.trunk(x.contiguous(memory_format=self.memory_format)).float()


class ClipExtractor(nn.Module):
    """clips uint8 (N, T, H, W, 3) RGB, any H and W -> pooled features float (N, D) of a network on
    (N, 3, T, h, w) clips."""

    def __init__(self, network: nn.Module, size: tuple[int, int], mean, std, memory_format):
        super().__init__()
        self.trunk, self.size, self.memory_format = network, size, memory_format
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1, 1), persistent=False)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        n, t = clips.shape[:2]
        x = resize_frames(clips.flatten(0, 1), self.size)  # (N*T, 3, h, w)
        x = (x.unflatten(0, (n, t)).transpose(1, 2) - self.mean) / self.std  # (N, 3, T, h, w)
        return self.trunk(x.contiguous(memory_format=self.memory_format)).float()


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


class _ConvNormTracer(torch.fx.Tracer):
    """Keeps every convolution and BatchNorm a single node, also subclasses defined outside torch.nn (e.g. a
    convolution with "same" padding): folding only rescales their weight and bias."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return (isinstance(module, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm))
                or super().is_leaf_module(module, qualified_name))


@torch.no_grad()
def fold_batchnorm(network: nn.Module) -> nn.Module:
    """``network`` (eval mode) with every BatchNorm that reads a convolution's output, and is that output's only
    reader, folded into the convolution: ``gamma (W x + b - mu) / sqrt(var + eps) + beta = W' x + b'`` with
    ``s = gamma / sqrt(var + eps)``, ``W' = s W`` (per output channel) and ``b' = s (b - mu) + beta``.

    In place: the convolution gets the new weight and bias, the BatchNorm becomes an ``nn.Identity``; the network's
    forward is unchanged. The same function of the input up to float rounding, one pass over each activation fewer
    (ResNet-101: about 15 % of its time on this project's CPU). Inference only: the running statistics become part
    of the weights. The pairs are found by tracing the forward (``torch.fx``); a network whose forward cannot be
    traced (control flow on its input) is returned unchanged, as is a module called more than once.
    """
    try:
        graph = _ConvNormTracer().trace(network)
    except torch.fx.proxy.TraceError:
        return network
    calls = [node for node in graph.nodes if node.op == "call_module"]
    times_called = Counter(node.target for node in calls)
    for node in calls:
        norm, source = network.get_submodule(node.target), node.args[0] if node.args else None
        if (not isinstance(norm, nn.modules.batchnorm._BatchNorm) or norm.running_mean is None
                or not isinstance(source, torch.fx.Node) or source.op != "call_module" or len(source.users) != 1
                or times_called[node.target] != 1 or times_called[source.target] != 1):
            continue
        conv = network.get_submodule(source.target)
        if not isinstance(conv, nn.modules.conv._ConvNd):
            continue
        scale = torch.rsqrt(norm.running_var + norm.eps)
        shift = -norm.running_mean * scale
        if norm.affine:
            scale, shift = scale * norm.weight, shift * norm.weight + norm.bias
        bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
        conv.weight = nn.Parameter(conv.weight * scale.view(-1, *([1] * (conv.weight.dim() - 1))))
        conv.bias = nn.Parameter(bias * scale + shift)
        parent, _, name = node.target.rpartition(".")
        setattr(network.get_submodule(parent), name, nn.Identity())
    return network
