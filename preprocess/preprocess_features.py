"""Extract HCRN/DualVGR clip features from a dataset's videos into HDF5 with a registered backbone (appearance or
motion; preprocess/backbones/: ResNet-101, 3D ResNeXt-101, ...).

    python -m preprocess.preprocess_features --dataset msvd-qa --dataset_dir /data/MSVD-QA --model resnet101
    python -m preprocess.preprocess_features --dataset msvd-qa --dataset_dir /data/MSVD-QA --model resnext101
    python -m preprocess.preprocess_features --dataset tgif-qa --question_type action --dataset_dir /data/TGIF-QA \
        --model resnet101

Output (HCRN/DualVGR layout, docs/data_formats.md): appearance ``resnet_features`` float32 (N, C, F, D) or motion
``resnext_features`` float32 (N, C, D), whatever the backbone (D its feature width; the ``model`` attribute names
it); ``ids`` int64 (N,) video ids in increasing order; plus ``valid`` uint8 (N,)
(0: the video did not decode, its row is zeros), ``done`` uint8 (N,) (rows finished, for resuming),
``num_decoded_frames`` int32 (N,) (frames the video decoded to; clips were sampled over these),
``failure_reason`` (N,) bytes, and the extraction settings as attributes (the backbone's name, kind, feature width,
input size, normalisation, frame sampling, weights file, source and sha256, whether BatchNorm was recalibrated). Failed videos are also listed in
``<out>.failed.tsv`` (video_id, path, reason, status ``failed``), and so are *partial* ones (status ``partial``):
videos that decode fewer frames than their container declares (a truncated or damaged file) keep ``valid = 1``,
with clips sampled over the frames that did decode, and their ``failure_reason`` says how many decoded.
BatchNorm recalibration (``--random_init``) uses only videos that decoded fully; their ids are recorded in the
attributes ``bn_calibration_ids`` (comma-separated) and ``bn_calibration_num_videos``.

Rerunning the same command resumes an interrupted run; other settings than the file's are refused (``--overwrite``).
``--shard I --num_shards N`` extracts every N-th video into ``<out stem>.shard<I>of<N>.h5``; join the shards with
``python -m preprocess.merge_features``.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import h5py
import numpy as np
import torch
from termcolor import colored
from tqdm import tqdm

from preprocess.backbones import (RESIZE, backbone_names, file_sha256, get_backbone, recalibrate_batchnorm,
                                  resize_to_uint8, resolve_weights)
from preprocess.datasets import VideoEntry, canonical_dataset_name, dataset_names, get_dataset, list_videos
from preprocess.video import ClipDecodingDataset
from utils.config import REPO_ROOT
from utils.device import resolve_device
from utils.cli import exit_on_input_error
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


# ---------------------------------------------------------------- the command line


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only where it has one."""

    def _get_help_string(self, action):
        return action.help if action.default in (None, False) else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.preprocess_features", description=__doc__.split("\n\n")[0],
        formatter_class=_HelpFormatter)
    parser.add_argument("--dataset", required=True, choices=dataset_names(with_aliases=True),
                        help="which published layout --dataset_dir has")
    parser.add_argument("--question_type", default=None,
                        help="TGIF-QA task (action, transition, count, frameqa): its question files name the GIFs "
                             "to extract and the output file")
    parser.add_argument("--dataset_dir", required=True,
                        help="MSVD-QA: YouTubeClips/ and youtube_mapping.txt; MSRVTT-QA: TrainValVideo/ and "
                             "TestVideo/; both and SVQA: {train,val,test}_qa.json (the videos they reference are "
                             "extracted; SVQA's from useVideo/<id>.mp4); TGIF-QA: {Train,Test}_<task>_question.csv "
                             "and gifs/; NExT-QA: {train,val,test}.csv, map_vid_vidorID.json and NExTVideo/")
    parser.add_argument("--model", required=True, choices=backbone_names(),
                        help="the backbone (preprocess/backbones/): resnet101: appearance (frames, 2048-d); "
                             "resnext101: motion (clips, 2048-d); efficientnet_lite0: appearance (frames, 1280-d, "
                             "ImageNet weights from its pip package); efficientnet_lite0_motion: motion (clips, "
                             "400-d, built from the same weights)")
    parser.add_argument("--out", default=None,
                        help="output HDF5 (default data/<dataset>/<dataset>[_<question_type>]_{appearance,motion}"
                             "_feat.h5 in the repo)")
    parser.add_argument("--num_clips", type=int, default=None,
                        help="clips per video (default: the dataset's: 8 MSVD-QA and TGIF-QA, 16 MSRVTT-QA and "
                             "NExT-QA, 20 SVQA)")
    parser.add_argument("--num_frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--image_height", type=int, default=None,
                        help="frame height (default: the backbone's input size, 224 resnet101, 112 resnext101)")
    parser.add_argument("--image_width", type=int, default=None,
                        help="frame width (default: the backbone's input size)")
    parser.add_argument("--weights", default=None,
                        help="resnet101: torchvision ImageNet state dict (.pth); resnext101: resnext-101-kinetics.pth. "
                             "Default: data/weights/<that file> in the repo (its hash checked), or the file a "
                             "package installed for the backbone")
    parser.add_argument("--random_init", action="store_true",
                        help="use random weights (demo/tests: the features carry little information)")
    parser.add_argument("--no_bn_recalibration", action="store_true",
                        help="with --random_init, keep the initial BatchNorm statistics instead of recalibrating them "
                             "on the dataset's frames")
    parser.add_argument("--calibration_videos", type=int, default=8,
                        help="videos (seeded sample of the whole dataset) whose frames recalibrate BatchNorm")
    parser.add_argument("--seed", type=int, default=666, help="seeds random init and the calibration sample")
    parser.add_argument("--motion_input", default=None,
                        help="the backbone's input normalisation, for those that offer several (default: its first). "
                             "resnext101: kinetics_mean (default) = 0-255 minus (114.7748, 107.7354, 99.4750), the "
                             "checkpoint's training input; raw = 0-255 pixels, as HCRN/DualVGR fed it")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--fp16", action="store_true",
                        help="float16 autocast (CUDA only; otherwise float32 throughout, TF32 disabled)")
    parser.add_argument("--channels_last", choices=["auto", "on", "off"], default="auto",
                        help="channels-last memory format (auto: on for CUDA)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="frames (appearance) or clips (motion) per CNN batch (default: the backbone's, "
                             "resnet101 128, resnext101 16)")
    parser.add_argument("--num_workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)),
                        help="decoding worker processes (0: decode in the main process)")
    parser.add_argument("--shard", type=int, default=0, help="this run's shard index I (0 <= I < N)")
    parser.add_argument("--num_shards", type=int, default=1,
                        help="split the videos into N disjoint shards (every N-th video), each its own file")
    parser.add_argument("--limit", type=int, default=None,
                        help="stop after this many videos (a quick try; rerun without it to finish the file)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over even if the output exists with other settings or is already complete")
    return parser


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

    def __init__(self, f: h5py.File, feature_key: str):
        self.f, self.features = f, f[feature_key]
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
        if time.monotonic() - self.last_commit >= FLUSH_INTERVAL_S:
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
            args: argparse.Namespace, kind: str, device: torch.device, autocast) -> tuple[int, int]:
    """Extract ``entries[rows[i]]`` into row ``rows[i]`` of ``f``. Returns (videos processed, of which failed).

    A partial video (fewer frames decoded than declared) is extracted and logged; its reason is kept in the row."""
    writer = _RowWriter(f, get_backbone(args.model).feature_key)
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


def run(args: argparse.Namespace) -> Path:
    """Extract (or resume) the features ``args`` describe; returns the output path."""
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
        processed, failed = extract(f, todo, shard_entries, extractor, args, kind, device, autocast)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except KeyboardInterrupt:
        log("interrupted: the finished videos are saved; rerun the same command to continue", "yellow")
        return 130
    except Exception as e:  # input or environment: one line and exit code 2 (utils/cli.py); a bug: its traceback
        return exit_on_input_error(e, lambda line: log(line, "red"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
