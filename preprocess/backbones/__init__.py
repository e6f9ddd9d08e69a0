"""Feature extractors, one module per backbone, found by name.

    from preprocess.backbones import get_backbone, backbone_names
    backbone = get_backbone("efficientnet_lite0")   # a Backbone (preprocess/backbones/base.py)
    backbone.kind, backbone.feature_dim, backbone.input_size, backbone.normalisation()
    extractor = backbone.build_extractor(weights_path, seed=0)   # uint8 frames (N, H, W, 3) -> (N, D)

``preprocess/feature_extraction.py`` extracts through this registry and writes the backbone's settings into the
HDF5 file's attributes. Adding a backbone: a module ``preprocess/backbones/<name>.py`` with a :class:`Backbone`
subclass decorated with :func:`register_backbone`, and its name in ``BACKBONE_MODULES`` below (a backbone registered
anywhere else, e.g. in a test file, is found too once its module is imported). Modules are imported on first use.
"""
from __future__ import annotations

import importlib

from preprocess.backbones.base import (FEATURE_KEYS, KINDS, RESIZE, Backbone, MissingWeightsError, WeightsError,
                                       file_sha256, fold_batchnorm, recalibrate_batchnorm, resize_frames, resize_to_uint8,
                                       resolve_weights)

# The built-in backbones: each is preprocess/backbones/<name>.py, imported when first asked for.
BACKBONE_MODULES = ("resnet101", "resnext101", "efficientnet_lite0", "efficientnet_lite0_motion")
_REGISTRY: dict[str, Backbone] = {}


def register_backbone(cls: type) -> type:
    """Class decorator: make a :class:`Backbone` subclass available as ``get_backbone(cls.name)``."""
    if not cls.name or cls.kind not in KINDS or cls.feature_dim < 1 or not cls.input_modes:
        raise ValueError(f"backbone {cls.__name__}: name, kind ({' | '.join(KINDS)}), feature_dim > 0 and "
                         "input_modes must be set")
    known = _REGISTRY.get(cls.name)
    if known is not None and type(known).__qualname__ != cls.__qualname__:
        raise ValueError(f"backbone name {cls.name!r} is already taken by {type(known).__qualname__}")
    _REGISTRY[cls.name] = cls()
    return cls


def backbone_names() -> list[str]:
    """Every backbone name: the built-in ones and any registered elsewhere (without importing the built-ins)."""
    return sorted({*BACKBONE_MODULES, *_REGISTRY})


def get_backbone(name: str) -> Backbone:
    """The backbone ``name``; ValueError listing the known names otherwise."""
    if name not in _REGISTRY and name in BACKBONE_MODULES:
        importlib.import_module(f"preprocess.backbones.{name}")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}: expected one of {', '.join(backbone_names())}") from None


def build_extractor(model_name: str, weights, seed: int, size: tuple[int, int] | None = None,
                    motion_input: str | None = None, channels_last: bool = False, fold_norms: bool = False):
    """``get_backbone(model_name).build_extractor(...)``: uint8 frames or clips -> (N, D) features, eval mode, CPU;
    ``weights=None`` is random init seeded by ``seed``; motion_input picks one of the backbone's input_modes."""
    return get_backbone(model_name).build_extractor(weights, seed, size, motion_input, channels_last, fold_norms)


__all__ = ["BACKBONE_MODULES", "FEATURE_KEYS", "KINDS", "RESIZE", "Backbone", "MissingWeightsError", "WeightsError",
           "backbone_names", "build_extractor", "file_sha256", "fold_batchnorm", "get_backbone", "recalibrate_batchnorm",
           "register_backbone", "resize_frames", "resize_to_uint8", "resolve_weights"]
