"""How a checkpoint's features were extracted, and one video's features made the same way.

A checkpoint records the attributes of the feature files it was trained on (``extraction``: {"appearance": {...},
"motion": {...}}, training/checkpoint.py). Older checkpoints do not: their settings then come from the feature
files named by ``--appearance_feat`` / ``--motion_feat`` or from extraction flags (the preprocessing's own flags,
turned into settings by ``preprocess.feature_extraction.extraction_settings``). A video is decoded with
preprocess/video.py and extracted through the backbone registry (preprocess/backbones) and
``preprocess.feature_extraction.video_features``: the code that wrote the feature files, not a copy.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inference import PredictError
from preprocess.backbones import WeightsError, file_sha256, get_backbone, resolve_weights
from preprocess.feature_extraction import extraction_settings, video_features
from preprocess.video import VideoDecodeError, decode_clips

KINDS = ("appearance", "motion")
# The attributes that decide the features (bookkeeping such as num_videos, complete or the calibration sample's ids
# is not compared). A key absent on either side is not compared (files from before it was recorded).
COMPARED = ("model", "kind", "feature_dim", "weights_sha256", "random_init", "seed", "num_clips", "num_frames",
            "image_height", "image_width", "normalisation", "motion_input", "resize", "clip_sampling",
            "frame_sampling", "precision", "bn_recalibrated")


def differences(recorded: dict, given: dict) -> list[str]:
    """``kind key: recorded vs given`` for every compared attribute that differs."""
    found = []
    for kind in KINDS:
        mine, theirs = recorded.get(kind, {}), given.get(kind, {})
        for key in COMPARED:
            if key in mine and key in theirs and mine[key] != theirs[key]:
                found.append(f"{kind} {key}: {mine[key]!r} vs {theirs[key]!r}")
    return found


def has_settings(settings: dict | None) -> bool:
    """Both kinds name their backbone (files written by other tools may carry no attributes)."""
    return bool(settings) and all("model" in settings.get(kind, {}) for kind in KINDS)


def settings_from_flags(args: argparse.Namespace) -> dict:
    """Extraction settings from predict.py's extraction flags, made by the preprocessing's own function."""
    settings = {}
    for kind in KINDS:
        name = getattr(args, f"{kind}_model")
        try:
            backbone = get_backbone(name)
        except ValueError as e:
            raise PredictError(f"--{kind}_model: {e}") from None
        size = getattr(args, f"{kind}_size") or backbone.input_size
        frames = (args.motion_frames or args.num_frames) if kind == "motion" else args.num_frames
        flags = argparse.Namespace(model=name, seed=args.seed, num_clips=args.num_clips, num_frames=frames,
                                   image_height=size[0], image_width=size[1],
                                   motion_input=args.motion_input if kind == "motion" else None,
                                   no_bn_recalibration=True, calibration_videos=0, fp16=False)
        try:
            random_init = args.random_init is not None and (not args.random_init or kind in args.random_init)
            weights = resolve_weights(backbone, getattr(args, f"{kind}_weights"), random_init)
        except WeightsError as e:
            raise PredictError(f"--{kind}_weights: {e}") from None
        settings[kind] = extraction_settings(flags, "", weights)
    return settings


def resolve_settings(recorded: dict | None, given: dict | None, ckpt_path: Path, given_source: str) -> dict:
    """The settings to extract a video with: the checkpoint's own, checked against ``given`` (from feature files or
    flags, named by ``given_source``) when both exist; PredictError when they differ or neither says."""
    if has_settings(recorded):
        if has_settings(given):
            found = differences(recorded, given)
            if found:
                raise PredictError(f"checkpoint {ckpt_path} was trained on features made otherwise than "
                                   f"{given_source}: " + "; ".join(found) + " (checkpoint vs given)")
        return recorded
    if has_settings(given):
        return given
    if given is not None:
        raise PredictError(f"{given_source} record no extraction settings (no 'model' attribute): give the "
                           "extraction flags (--appearance_model, --motion_model, ...)")
    raise PredictError(f"checkpoint {ckpt_path} does not record how its features were extracted (written before "
                       "this was recorded): pass --appearance_feat/--motion_feat (the feature files it was trained "
                       "on) or the extraction flags --appearance_model M --motion_model M [--random_init | "
                       "--appearance_weights F --motion_weights F] --num_clips C --num_frames F")


def settings_key(settings: dict) -> tuple:
    """Checkpoints whose settings share this key share one extraction of a video."""
    return tuple((kind, key, repr(settings[kind].get(key))) for kind in KINDS for key in COMPARED)


@dataclass
class VideoFeatures:
    """One video's features, (1, C, F, D) appearance and (1, C, D) motion, with one frame per clip (its middle
    frame, uint8 (C, h, w, 3), scaled to at most ``FRAME_HEIGHT`` pixels high) and the decoded frame count."""
    appearance: torch.Tensor
    motion: torch.Tensor
    frames: np.ndarray
    num_frames: int


FRAME_HEIGHT = 96


class VideoExtractor:
    """Extracts videos as the feature files of ``settings`` were extracted (both kinds); the networks are built
    once. ``weights``: {"appearance": path | None, "motion": path | None}, files to use instead of the backbones'
    default ones (their sha256 must be the recorded one); ``channels_last``: the backbones' memory layout (the
    preprocessing's option), ``fold_norms``: BatchNorm folded into the convolutions (both give the same features up
    to float rounding)."""

    def __init__(self, settings: dict, device: torch.device, weights: dict | None = None,
                 channels_last: bool = False, fold_norms: bool = False):
        self.settings, self.device = settings, device
        self.backbones, self.extractors = {}, {}
        for kind in KINDS:
            s = settings[kind]
            try:
                backbone = get_backbone(s["model"])
            except ValueError as e:
                raise PredictError(f"the {kind} features were extracted with {e}") from None
            if s.get("bn_recalibrated"):
                raise PredictError(
                    f"the {kind} features ({s['model']}, random init) were extracted after recalibrating BatchNorm "
                    "on the dataset's own videos, which a new video cannot repeat; extract the dataset with "
                    "--no_bn_recalibration or pretrained weights to answer questions about new videos (stored "
                    "questions: --split/--question_id)")
            if s.get("precision", "fp32") != "fp32":
                raise PredictError(f"the {kind} features were extracted in {s['precision']}; predict.py extracts in "
                                   "float32 only")
            self.backbones[kind] = backbone
            self.extractors[kind] = backbone.build_extractor(
                self._weights(kind, backbone, (weights or {}).get(kind)), int(s["seed"]),
                (int(s["image_height"]), int(s["image_width"])), s.get("motion_input"), channels_last,
                fold_norms).to(device)

    def _weights(self, kind: str, backbone, path: str | None) -> Path | None:
        s = self.settings[kind]
        if s.get("random_init"):
            return None
        path = Path(path) if path else backbone.default_weights_path()
        if path is None or not path.is_file():
            raise PredictError(f"the {kind} features were extracted with {s.get('weights')} ({s['model']}); that "
                               f"file is not at {path}: pass --{kind}_weights FILE")
        recorded = s.get("weights_sha256", "")
        if recorded and file_sha256(path) != recorded:
            raise PredictError(f"{path}: not the {kind} weights the features were extracted with (sha256 differs "
                               f"from the recorded {recorded[:16]}...)")
        return path

    def __call__(self, path: str | Path) -> VideoFeatures:
        """Decode ``path`` and extract it; PredictError (one line) for a missing, undecodable or too-short video."""
        path = Path(path)
        if not path.exists():
            raise PredictError(f"--video {path}: file not found")
        decoded, features = {}, {}
        for kind in KINDS:
            clips, frames = int(self.settings[kind]["num_clips"]), int(self.settings[kind]["num_frames"])
            if (clips, frames) not in decoded:
                try:
                    decoded[clips, frames] = decode_clips(path, clips, frames)
                except VideoDecodeError as e:
                    raise PredictError(f"--video {path}: cannot be decoded ({e.reason})") from None
            video = decoded[clips, frames]
            if video.n_frames < clips:
                raise PredictError(f"--video {path}: too short: {video.n_frames} frame(s) decoded, fewer than the "
                                   f"{clips} clips the features sample")
            item = {"frames": torch.from_numpy(video.frames), "index": torch.from_numpy(video.index)}
            features[kind] = torch.from_numpy(video_features(self.extractors[kind], item, kind,
                                                             self.backbones[kind].batch_size, self.device))[None]
        video = next(iter(decoded.values()))
        middle = video.frames[video.index[:, video.index.shape[1] // 2]]           # (C, H, W, 3)
        return VideoFeatures(features["appearance"], features["motion"], _thumbnails(middle), video.n_frames)


def _thumbnails(frames: np.ndarray) -> np.ndarray:
    """uint8 (C, H, W, 3) -> (C, h, w, 3) with h at most FRAME_HEIGHT (aspect kept)."""
    height, width = frames.shape[1:3]
    if height <= FRAME_HEIGHT:
        return frames
    size = (FRAME_HEIGHT, max(1, round(width * FRAME_HEIGHT / height)))
    x = torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=size,
                                        mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
