"""Feature-extraction speed on this machine: decoding, each CNN alone, and the whole pipeline, with projections.

    python -m bench.extraction                       # both extractors, CPU or the GPU if there is one
    python -m bench.extraction --device cuda --fp16 --videos 16
    python -m bench.extraction --extractors resnext101 --image_size 112

Writes a few real videos with PyAV (moving shapes, --video_size, --video_frames each), then for each extractor:
- decode: PyAV decoding + resizing of the clips' frames, one process (videos/s);
- cnn: the extractor alone (resize, normalisation, network) on batches of uint8 frames/clips of the videos' size,
  already on the device (frames/s or clips/s);
- pipeline: ``feature_extraction.extract`` end to end (decoding workers, CNN, HDF5 writes) into a scratch file;
and projects the full extraction time of MSVD-QA (1,970 videos, 8 clips) and MSRVTT-QA (10,000 videos, 16 clips)
from the pipeline's rate. Weights are random (BatchNorm recalibrated on noise so that float16 does not overflow);
speed does not depend on them.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
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

from preprocess import feature_extraction as extraction
from preprocess.preprocess_features import build_parser
from preprocess.backbones import build_extractor, get_backbone, recalibrate_batchnorm
from preprocess.datasets import VideoEntry
from preprocess.video import decode_clips, encode_video
from utils.cli import exit_on_input_error
from utils.device import resolve_device

DATASETS = {"MSVD-QA": (1970, 8), "MSRVTT-QA": (10000, 16)}  # videos, clips per video


def synthetic_video(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """uint8 (T, H, W, 3): a textured background with a bright square moving across it."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    background = np.kron(background, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
    frames = np.repeat(background[None], num_frames, axis=0)
    side = height // 4
    for t in range(num_frames):
        x = int((width - side) * t / max(num_frames - 1, 1))
        frames[t, height // 3:height // 3 + side, x:x + side] = (255, 220, 40)
    return frames


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calibrate_on_noise(extractor, kind: str, num_frames: int, frame_shape: tuple[int, int],
                      device: torch.device) -> None:
    """Recalibrate BatchNorm on random pixels: random-init activations otherwise overflow float16."""
    shape = (16, *frame_shape, 3) if kind == "appearance" else (4, num_frames, *frame_shape, 3)
    recalibrate_batchnorm(extractor, [torch.randint(0, 256, shape, dtype=torch.uint8, device=device)])


def bench_decode(paths: list[Path], num_clips: int, num_frames: int) -> float:
    """Videos per second decoding the clip frames in one process."""
    decode_clips(paths[0], num_clips, num_frames)  # warm-up (codec set-up)
    start = time.perf_counter()
    for path in paths:
        decode_clips(path, num_clips, num_frames)
    return len(paths) / (time.perf_counter() - start)


def bench_cnn(extractor, kind: str, batch: int, num_frames: int, frame_shape: tuple[int, int], device: torch.device,
              fp16: bool, repeats: int) -> float:
    """Frames (appearance) or clips (motion) per second through the extractor (resize, normalise, network).

    frame_shape: (height, width) of the decoded frames given to it.
    """
    shape = (batch, *frame_shape, 3) if kind == "appearance" else (batch, num_frames, *frame_shape, 3)
    inputs = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    autocast = torch.autocast("cuda", dtype=torch.float16) if fp16 else nullcontext()
    with torch.inference_mode(), autocast:
        extractor(inputs)  # warm-up (kernel selection, allocator)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            extractor(inputs)
        synchronize(device)
    return batch * repeats / (time.perf_counter() - start)


def bench_pipeline(model: str, extractor, entries: list[VideoEntry], args: argparse.Namespace, size: int,
                   device: torch.device, scratch: Path) -> float:
    """Videos per second through ``feature_extraction.extract`` (workers, CNN, HDF5 writes)."""
    options = build_parser().parse_args([
        "--dataset", "msvd-qa", "--dataset_dir", str(scratch), "--model", model, "--random_init",
        "--num_clips", str(args.num_clips), "--num_frames", str(args.num_frames), "--image_height", str(size),
        "--image_width", str(size), "--num_workers", str(args.num_workers), "--device", str(device),
        *(["--batch_size", str(args.batch_size)] if args.batch_size else []), *(["--fp16"] if args.fp16 else [])])
    extraction.validate_args(options, "msvd-qa")
    settings = extraction.extraction_settings(options, "msvd-qa", None)
    out = scratch / f"{model}.h5"
    extraction.create_feature_file(out, np.array([e.video_id for e in entries]), settings)
    autocast = torch.autocast("cuda", dtype=torch.float16) if args.fp16 else nullcontext()
    with h5py.File(out, "r+") as f:
        start = time.perf_counter()
        processed, failed = extraction.extract(f, list(range(len(entries))), entries, extractor, options,
                                               get_backbone(model).kind, device, autocast)
        elapsed = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{failed} benchmark videos failed (reasons above)")
    return processed / elapsed


def format_duration(seconds: float) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{int(hours)} h {rest / 60:04.1f} min" if hours else f"{seconds / 60:.1f} min"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.extraction", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--extractors", default="resnet101,resnext101", help="comma-separated: resnet101,resnext101")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--fp16", action="store_true", help="float16 autocast (CUDA only)")
    parser.add_argument("--image_size", type=int, default=None,
                        help="network input size (default: 224 for resnet101, 112 for resnext101)")
    parser.add_argument("--videos", type=int, default=2, help="videos in the pipeline run")
    parser.add_argument("--video_frames", type=int, default=150, help="frames per synthetic video")
    parser.add_argument("--video_size", default="320x240", help="synthetic video WIDTHxHEIGHT (MSVD/MSRVTT-like)")
    parser.add_argument("--num_clips", type=int, default=8, help="clips per video in the pipeline run")
    parser.add_argument("--num_frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="CNN batch (frames/clips; default: the extraction defaults, 128 frames / 16 clips)")
    parser.add_argument("--num_workers", type=int, default=1, help="decoding workers in the pipeline run")
    parser.add_argument("--repeats", type=int, default=2, help="timed batches for the CNN-alone figure")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        parser.error(f"--device: {e}")
    if args.fp16 and device.type != "cuda":
        parser.error("--fp16 needs a CUDA device")
    try:
        return measure(args, device)
    except Exception as e:  # bad input or environment: one line and exit code 2 (utils/cli.py)
        return exit_on_input_error(e)


def measure(args: argparse.Namespace, device: torch.device) -> int:
    """Time decoding, the extractor and the pipeline for every extractor of ``args``; print them; returns 0."""
    width, height = (int(v) for v in args.video_size.lower().split("x"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores" if hasattr(os, "getloadavg") else ""
    print(f"device: {device} ({name}{load}); {args.videos} videos of {args.video_frames} frames at {width}x{height}; "
          f"{args.num_clips} clips x {args.num_frames} frames; {'fp16' if args.fp16 else 'fp32'}")

    with tempfile.TemporaryDirectory(prefix="bench_extraction_") as scratch:
        scratch = Path(scratch)
        entries = []
        for index in range(args.videos):
            path = scratch / f"video{index}.mp4"
            encode_video(path, synthetic_video(args.video_frames, height, width, index))
            entries.append(VideoEntry(index, path))
        for model in args.extractors.split(","):
            backbone = get_backbone(model)
            size = args.image_size or backbone.input_size[0]
            kind = backbone.kind
            unit = "frames" if kind == "appearance" else "clips"
            units_per_video = args.num_clips * (args.num_frames if kind == "appearance" else 1)
            batch = args.batch_size or backbone.batch_size
            channels_last = device.type == "cuda"
            extractor = build_extractor(model, None, 0, (size, size), channels_last=channels_last).to(device)
            calibrate_on_noise(extractor, kind, args.num_frames, (height, width), device)
            decode_rate = bench_decode([e.path for e in entries], args.num_clips, args.num_frames)
            cnn_rate = bench_cnn(extractor, kind, batch, args.num_frames, (height, width), device, args.fp16,
                                 args.repeats)
            video_rate = bench_pipeline(model, extractor, entries, args, size, device, scratch)
            print(f"\n{model} ({kind}, {size}x{size}, batch {batch} {unit}):")
            print(f"  decode alone : {decode_rate:8.2f} videos/s  ({decode_rate * args.video_frames:.0f} frames/s "
                  f"decoded, 1 process)")
            print(f"  extractor    : {cnn_rate:8.2f} {unit}/s (resize + network, no decoding)")
            print(f"  pipeline     : {video_rate:8.3f} videos/s = {video_rate * units_per_video:.2f} {unit}/s")
            for dataset, (videos, clips) in DATASETS.items():
                units = videos * clips * (args.num_frames if kind == "appearance" else 1)
                seconds = units / (video_rate * units_per_video)
                print(f"  {dataset:<10}: {videos} videos x {clips} clips -> {format_duration(seconds)} projected")
            del extractor
    return 0


if __name__ == "__main__":
    sys.exit(main())
