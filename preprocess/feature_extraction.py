"""Feature extraction into HDF5 with a registered backbone: the library behind ``python -m
preprocess.preprocess_features`` (its flags, as an argparse Namespace, are the options every function here takes;
the file layout and attributes are described there and in docs/data_formats.md).

:func:`run` extracts or resumes a whole file; :func:`extract` fills given rows of an open file (bench/extraction.py
times it); :func:`extraction_settings` and :func:`video_features` are also what inference/extraction.py extracts
with, and the file helpers (:func:`create_feature_file`, :func:`finalize_feature_file`, ...) what
preprocess/merge_features.py joins shards with.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import h5py
import numpy as np
import torch
from termcolor import colored
from tqdm import tqdm

from preprocess.backbones import (RESIZE, file_sha256, get_backbone, recalibrate_batchnorm, resize_to_uint8,
                                  resolve_weights)
from preprocess.datasets import VideoEntry, canonical_dataset_name, get_dataset, list_videos
from preprocess.video import ClipDecodingDataset
from utils.config import REPO_ROOT
from utils.device import resolve_device
from utils.progress import progress

CLIP_SAMPLING = ("centres = int(linspace(0, n_frames, C+2)[1:C+1]); clip = frames centre-F//2 .. centre+(F-1)//2, "
                 "indices clamped to [0, n_frames-1]")
FAILURE_REASON_BYTES = 200
ROW_DATASETS = ("valid", "num_decoded_frames", "failure_reason")  # per-video bookkeeping besides the features
SHARD_ATTRS = ("shard_index", "num_shards", "dataset_num_videos")
FLUSH_INTERVAL_S = 5.0  # finished rows are committed (data flushed, then marked done) at least this often


class ExtractionError(RuntimeError):
    """The run cannot start or continue; the message says what to do."""


def log(message: str, color: str | None = None) -> None:
    tqdm.write(colored(message, color) if color else message, file=sys.stderr)


# ---------------------------------------------------------------- file layout shared with merge_features


def shard_path(out: Path, shard_index: int, num_shards: int) -> Path:
    """``x/msvd-qa_appearance_feat.h5`` -> ``x/msvd-qa_appearance_feat.shard0of4.h5``."""
    return out.with_name(f"{out.stem}.shard{shard_index}of{num_shards}{out.suffix}")


def failure_report_path(out: Path) -> Path:
    return out.with_name(out.name + ".failed.tsv")


def feature_shape(settings: dict) -> tuple[int, ...]:
    """Per-video feature shape: (C, F, D) appearance, (C, D) motion."""
    if settings["kind"] == "appearance":
        return settings["num_clips"], settings["num_frames"], settings["feature_dim"]
    return settings["num_clips"], settings["feature_dim"]


def attr_value(value):
    """An HDF5 attribute as a plain Python value (numpy scalars -> Python scalars, bytes -> str)."""
    if isinstance(value, np.generic):
        value = value.item()
    return value.decode() if isinstance(value, bytes) else value


def create_feature_file(path: Path, ids: np.ndarray, settings: dict) -> None:
    """Write an empty feature file atomically (built under a temporary name, then renamed).

    All datasets are allocated up front, so later writes only fill raw data: a run killed mid-way leaves a file
    whose metadata is intact and whose ``done`` rows are trustworthy.
    """
    temporary = path.with_name(path.name + ".creating")
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    with h5py.File(temporary, "w") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        f.create_dataset(settings["feature_key"], shape=(n, *feature_shape(settings)), dtype=np.float32,
                         dcpl=dcpl, fill_time="never")
        f.create_dataset("ids", data=np.asarray(ids, dtype=np.int64))
        f.create_dataset("valid", data=np.zeros(n, dtype=np.uint8))
        f.create_dataset("done", data=np.zeros(n, dtype=np.uint8))
        f.create_dataset("num_decoded_frames", data=np.zeros(n, dtype=np.int32))
        f.create_dataset("failure_reason", data=np.zeros(n, dtype=f"S{FAILURE_REASON_BYTES}"))
        for key, value in settings.items():
            f.attrs[key] = value
        f.attrs["num_videos"] = n
        f.attrs["complete"] = False
    os.replace(temporary, path)


def finalize_feature_file(f: h5py.File, paths: list[str], out: Path) -> int:
    """Mark a fully extracted file complete and write its report of failed and partial videos. Returns the number
    of failed videos.

    paths: the video path of every row (for the report).
    """
    valid, reasons = f["valid"][:], f["failure_reason"][:]
    failed = valid == 0
    partial = (valid == 1) & (reasons != b"")  # decoded, but fewer frames than declared
    f.attrs["num_failed"] = int(failed.sum())
    f.attrs["num_partial"] = int(partial.sum())
    f.attrs["complete"] = True
    report = failure_report_path(out)
    listed = np.flatnonzero(failed | partial)
    if len(listed):
        ids = f["ids"][:]
        with open(report, "w") as tsv:
            tsv.write("video_id\tpath\treason\tstatus\n")
            for row in listed:
                status = "failed" if failed[row] else "partial"
                tsv.write(f"{ids[row]}\t{paths[row]}\t{reasons[row].decode(errors='replace')}\t{status}\n")
    elif report.exists():
        report.unlink()
    return int(failed.sum())


def settings_mismatch(f: h5py.File, settings: dict, ids: np.ndarray) -> list[str]:
    """Human-readable differences between an existing file and this run's settings and video ids."""
    differences = []
    for key, value in settings.items():
        existing = attr_value(f.attrs[key]) if key in f.attrs else "<absent>"
        if existing != value:
            differences.append(f"{key}: file has {existing!r}, this run {value!r}")
    if "ids" not in f or not np.array_equal(f["ids"][:], ids):
        differences.append("the list of video ids differs")
    return differences


def extraction_settings(args: argparse.Namespace, dataset: str, weights: Path | None) -> dict:
    """Everything that determines the features: written as attributes and checked when resuming or merging."""
    backbone = get_backbone(args.model)
    recalibrated = weights is None and backbone.bn_recalibration and not args.no_bn_recalibration
    settings = {
        "dataset": dataset,
        "model": args.model,
        "kind": backbone.kind,
        "feature_key": backbone.feature_key,
        "feature_dim": backbone.feature_dim,
        "weights": "random_init" if weights is None else weights.name,
        "weights_source": "random_init" if weights is None else backbone.weights_source,
        "weights_sha256": "" if weights is None else file_sha256(weights),
        "random_init": weights is None,
        "seed": args.seed,
        "num_clips": args.num_clips,
        "num_frames": args.num_frames,
        "image_height": args.image_height,
        "image_width": args.image_width,
        "resize": RESIZE,
        "normalisation": backbone.normalisation(args.motion_input),
        "clip_sampling": CLIP_SAMPLING,
        "frame_sampling": backbone.frame_sampling,
        "bn_recalibrated": recalibrated,
        "bn_calibration_videos": args.calibration_videos if recalibrated else 0,
        "bn_calibration_batch": backbone.calibration_batch,
        "precision": "fp16" if args.fp16 else "fp32",
    }
    if len(backbone.input_modes) > 1:
        settings["motion_input"] = backbone.input_mode(args.motion_input)
    return settings


def validate_args(args: argparse.Namespace, dataset: str) -> None:
    backbone = get_backbone(args.model)
    args.num_clips = args.num_clips or get_dataset(dataset, args.question_type).default_num_clips
    args.image_height = args.image_height or backbone.input_size[0]
    args.image_width = args.image_width or backbone.input_size[1]
    args.batch_size = args.batch_size or backbone.batch_size
    backbone.input_mode(args.motion_input)  # WeightsError naming the choices
    for name in ("num_clips", "num_frames", "image_height", "image_width", "batch_size", "num_shards"):
        if getattr(args, name) < 1:
            raise ExtractionError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.shard < args.num_shards:
        raise ExtractionError(f"--shard must be in [0, {args.num_shards}), got {args.shard}")
    if args.num_workers < 0:
        raise ExtractionError(f"--num_workers must be >= 0, got {args.num_workers}")
    if args.calibration_videos < 1:
        raise ExtractionError(f"--calibration_videos must be at least 1, got {args.calibration_videos}")


# ---------------------------------------------------------------- extraction


def _loader(paths: list[Path], args: argparse.Namespace, device: torch.device) -> torch.utils.data.DataLoader:
    dataset = ClipDecodingDataset(paths, args.num_clips, args.num_frames)
    workers = min(args.num_workers, len(paths))
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None, worker_init_fn=_single_thread_worker if workers else None)


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)


def _network_inputs(item: dict, kind: str, device: torch.device) -> torch.Tensor:
    """The CNN's inputs for one decoded video: its distinct frames (U, H, W, 3) or its clips (C, F, H, W, 3)."""
    frames = item["frames"].to(device, non_blocking=True)
    return frames if kind == "appearance" else frames[item["index"].to(device, non_blocking=True)]


def video_features(extractor: torch.nn.Module, item: dict, kind: str, batch_size: int, device: torch.device,
                   autocast=None) -> np.ndarray:
    """One decoded video's features, as the files hold them: float32 (C, F, D) appearance, (C, D) motion.

    item: ``frames`` uint8 (U, H, W, 3) and ``index`` int64 (C, F) (a :class:`ClipDecodingDataset` item; predict.py
    passes a decoded video the same way). The CNN runs on batches of ``batch_size`` frames or clips; an appearance
    extractor sees each distinct frame once and its features are then spread over every clip frame."""
    with torch.inference_mode(), autocast or nullcontext():
        output = torch.cat([extractor(chunk) for chunk in _network_inputs(item, kind, device).split(batch_size)])
        if kind == "appearance":  # features of the distinct frames -> every clip frame
            output = output[item["index"].to(device)]
    return output.cpu().numpy()


def calibrate(extractor: torch.nn.Module, entries: list[VideoEntry], args: argparse.Namespace, kind: str,
              device: torch.device, autocast) -> list[int]:
    """Recalibrate BatchNorm on a seeded sample of the dataset's fully decoding videos (the same sample in every
    shard and rerun; a failed or partial video is passed over: its repeated frames would skew every statistic).
    Returns the sample's video ids."""
    order = list(range(len(entries)))
    random.Random(args.seed).shuffle(order)
    inputs, video_ids = [], []
    loader = _loader([entries[position].path for position in order], args, device)
    for item in loader:
        if not item["error"] and not item["partial"]:  # resized here: videos of different sizes share batches
            inputs.append(resize_to_uint8(_network_inputs(item, kind, device), (args.image_height, args.image_width)))
            video_ids.append(entries[order[item["position"]]].video_id)
        if len(inputs) == args.calibration_videos:
            break
    del loader
    if not inputs:
        raise ExtractionError("no video decoded fully for BatchNorm recalibration: see the failure reasons of a run "
                              "with --no_bn_recalibration")
    samples = torch.cat(inputs)
    batches = list(samples.split(get_backbone(args.model).calibration_batch))
    if len(batches) > 1 and batches[-1].shape[0] < 2:  # train-mode BatchNorm needs 2 samples per batch
        batches = batches[:-2] + [torch.cat(batches[-2:])]
    if samples.shape[0] < 2:
        batches = [samples.repeat(2, *([1] * (samples.dim() - 1)))]
    with autocast:
        seen = recalibrate_batchnorm(extractor, batches)
    log(f"BatchNorm recalibrated on {seen} {'frames' if kind == 'appearance' else 'clips'} "
        f"of {len(inputs)} fully decoded videos", "cyan")
    return video_ids


class _RowWriter:
    """Writes finished rows and commits them: data flushed first, then marked done, then flushed again."""

    def __init__(self, f: h5py.File, feature_key: str, interval_s: float = FLUSH_INTERVAL_S):
        self.f, self.features, self.interval_s = f, f[feature_key], interval_s
        self.pending: list[int] = []
        self.last_commit = time.monotonic()

    def write(self, row: int, features: np.ndarray | None, num_decoded_frames: int, reason: str = "") -> None:
        self.f["num_decoded_frames"][row] = num_decoded_frames
        self.f["failure_reason"][row] = reason.encode(errors="replace")[:FAILURE_REASON_BYTES]
        if features is None:
            self.features[row] = np.zeros(self.features.shape[1:], dtype=np.float32)
            self.f["valid"][row] = 0
        else:
            self.features[row] = features
            self.f["valid"][row] = 1
        self.pending.append(row)
        if time.monotonic() - self.last_commit >= self.interval_s:
            self.commit()

    def commit(self) -> None:
        if self.pending:
            self.f.flush()
            done = self.f["done"]
            for row in self.pending:
                done[row] = 1
            self.f.flush()
            self.pending.clear()
        self.last_commit = time.monotonic()


def extract(f: h5py.File, rows: list[int], entries: list[VideoEntry], extractor: torch.nn.Module,
            args: argparse.Namespace, kind: str, device: torch.device, autocast,
            flush_interval_s: float = FLUSH_INTERVAL_S) -> tuple[int, int]:
    """Extract ``entries[rows[i]]`` into row ``rows[i]`` of ``f``. Returns (videos processed, of which failed).

    A partial video (fewer frames decoded than declared) is extracted and logged; its reason is kept in the row."""
    writer = _RowWriter(f, get_backbone(args.model).feature_key, flush_interval_s)
    loader = _loader([entries[row].path for row in rows], args, device)
    failed = 0
    bar = progress(total=len(rows), unit="video", dynamic_ncols=True, desc=f"{args.model} {entries[0].path.parent.name}")
    try:
        for item in loader:
            row = rows[item["position"]]
            features, reason = None, item["error"]
            if not reason:
                features = video_features(extractor, item, kind, args.batch_size, device, autocast)
                if not np.isfinite(features).all():
                    features, reason = None, "non-finite features (float16 overflow? try without --fp16)"
            if features is None:
                failed += 1
            else:
                reason = item["partial"]
            if reason:
                log(f"video {entries[row].video_id} ({entries[row].path}): {reason}", "yellow")
            writer.write(row, features, item["n_frames"], reason)
            bar.update(1)
            bar.set_postfix(failed=failed, refresh=False)
    finally:
        writer.commit()  # what was fully written survives an exception or Ctrl-C
        bar.close()
    return bar.n, failed


def _open_or_create(out: Path, settings: dict, ids: np.ndarray, overwrite: bool) -> None:
    """Create ``out`` unless it holds a resumable run with these settings; refuse a mismatch unless overwrite."""
    if out.exists() and not overwrite:
        try:
            with h5py.File(out, "r") as f:
                differences = settings_mismatch(f, settings, ids)
        except OSError as e:
            raise ExtractionError(f"{out} exists but cannot be read as HDF5 ({e}); pass --overwrite to start over")
        if differences:
            raise ExtractionError(f"{out} exists with other settings:\n  " + "\n  ".join(differences)
                                  + "\nrerun with the file's settings to resume it, or pass --overwrite to start over")
        return
    create_feature_file(out, ids, settings)


def run(args: argparse.Namespace, flush_interval_s: float = FLUSH_INTERVAL_S) -> Path:
    """Extract (or resume) the features ``args`` (preprocess_features' flags) describe; returns the output path.
    Finished rows are committed at least every ``flush_interval_s`` seconds."""
    dataset = canonical_dataset_name(args.dataset)
    spec = get_dataset(dataset, args.question_type)
    validate_args(args, dataset)
    backbone = get_backbone(args.model)
    kind = backbone.kind
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise ExtractionError(f"--device: {e}") from None
    if args.fp16 and device.type != "cuda":
        raise ExtractionError("--fp16 needs a CUDA device")
    if device.type == "cuda" and not args.fp16:  # "fp32" in the file means it: no TF32 tensor-core rounding
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    weights = resolve_weights(backbone, args.weights, args.random_init)
    entries = list_videos(dataset, args.dataset_dir, args.question_type)
    settings = extraction_settings(args, spec.file_prefix, weights)

    out = Path(args.out) if args.out else REPO_ROOT / "data" / spec.name / f"{spec.file_prefix}_{kind}_feat.h5"
    rows_of_shard = list(range(args.shard, len(entries), args.num_shards))
    if args.num_shards > 1:
        out = shard_path(out, args.shard, args.num_shards)
        settings.update(shard_index=args.shard, num_shards=args.num_shards, dataset_num_videos=len(entries))
    shard_entries = [entries[position] for position in rows_of_shard]
    ids = np.array([entry.video_id for entry in shard_entries], dtype=np.int64)
    _open_or_create(out, settings, ids, args.overwrite)

    with h5py.File(out, "r+") as f:
        todo = np.flatnonzero(f["done"][:] == 0).tolist()
        if not todo:
            failed = finalize_feature_file(f, [str(e.path) for e in shard_entries], out)
            log(f"{out} is already complete ({len(ids)} videos, {failed} failed); --overwrite to redo it", "green")
            return out
        if len(todo) < len(ids):
            log(f"resuming {out}: {len(ids) - len(todo)} of {len(ids)} videos already done", "cyan")
        if args.limit is not None:
            todo = todo[:args.limit]

        if weights is None:
            log("WARNING: --random_init: features come from an UNTRAINED network and are useless for real "
                "experiments (demo/tests only); recorded as weights='random_init' in the file", "red")
        channels_last = args.channels_last == "on" or (args.channels_last == "auto" and device.type == "cuda")
        size = (args.image_height, args.image_width)
        extractor = backbone.build_extractor(weights, args.seed, size, args.motion_input, channels_last).to(device)
        autocast = torch.autocast("cuda", dtype=torch.float16) if args.fp16 else nullcontext()
        if settings["bn_recalibrated"]:
            calibration_ids = calibrate(extractor, entries, args, kind, device, autocast)
            f.attrs["bn_calibration_ids"] = ",".join(map(str, calibration_ids))
            f.attrs["bn_calibration_num_videos"] = len(calibration_ids)

        log(f"{args.model}: {len(todo)} videos -> {out} ({args.num_clips} clips x {args.num_frames} frames, "
            f"{args.image_height}x{args.image_width}, {device}, {settings['precision']})", "cyan")
        start = time.monotonic()
        processed, failed = extract(f, todo, shard_entries, extractor, args, kind, device, autocast,
                                    flush_interval_s)
        elapsed = time.monotonic() - start
        remaining = int((f["done"][:] == 0).sum())
        rate = processed / max(elapsed, 1e-9)
        if remaining:
            log(f"stopped with {remaining} videos left ({processed} in {elapsed:.0f} s, {rate:.2f} videos/s); "
                "rerun the same command to continue", "yellow")
            return out
        total_failed = finalize_feature_file(f, [str(e.path) for e in shard_entries], out)
        total_partial = int(f.attrs["num_partial"])
    color = "yellow" if total_failed or total_partial else "green"
    report = f", {total_failed} failed (zero rows, valid=0)" if total_failed else ""
    report += f", {total_partial} partial (fewer frames decoded than declared; valid=1)" if total_partial else ""
    report += f"; see {failure_report_path(out)}" if report else ""
    log(f"done: {len(ids)} videos in {out}{report}; {processed} extracted now in {elapsed:.0f} s "
        f"({rate:.2f} videos/s)", color)
    return out
