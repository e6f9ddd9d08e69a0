"""How fast the training loader delivers batches, against how fast the model consumes them.

    python bench/data_loading.py                               # MSVD-QA scale in a temporary folder (~1.1 GB)
    python bench/data_loading.py --dir /data/bench --model_rate 20.5 --model_rate_grouped 60
    python bench/data_loading.py --num_videos 200 --num_questions 3000 --workers 0 2
    python bench/data_loading.py --device cuda

Writes an HDF5 feature-file pair shaped like the extraction's output (appearance (N, C, F, 2048) and motion
(N, C, 2048) float32, with ``ids`` and ``valid``), a vocabulary and a training question file (questions spread
over the first 1200/1970 of the videos, as MSVD-QA's training split is), unless ``--dir`` already holds them. Then
builds the loader exactly as train.py does (``training.data.load_data`` + ``VideoGroupedBatchSampler`` +
``build_loader``, the batch moved to --device like the training loop does) and times it:

- features read from the HDF5 files by 0, 1, 2, 4 DataLoader workers (``dataset.features_in_memory=false``);
- features held in memory as float32 and float16 (``features_in_memory=true``, ``feature_dtype``);
each with ordinary batches (``dataset.questions_per_video=0``) and video-grouped ones (``=K``).

The model's consumption rate at the same settings comes from bench/train_step.py (run in a subprocess) or from
--model_rate / --model_rate_grouped. Notes: the HDF5 files were just written, so they are in the OS page cache (a
cold read is disk-bound); and here the loader runs alone, while in CPU training its workers share the cores with
the model.
"""
from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import h5py
import numpy as np
import torch
from termcolor import colored

from bench import BenchError
from bench.common import describe_machine, device_from_flag, format_bytes, load_average, synchronize
from training.data import (APPEARANCE_DATASET, MOTION_DATASET, batch_to_device, build_loader, choose_feature_placement,
                           host_memory_available, load_data)
from training.samplers import VideoGroupedBatchSampler
from training.run_schema import load_config
from utils.cli import exit_on_input_error
from utils.config import add_config_arguments
from utils.progress import progress
from utils.safe_pickle import dump_pickle

REPO_ROOT = Path(__file__).resolve().parent.parent
MSVD_QA_VIDEOS, MSVD_QA_TRAIN_VIDEOS, MSVD_QA_TRAIN_QUESTIONS = 1970, 1200, 30_933
FILES = {"appearance_feat": "bench_appearance_feat.h5", "motion_feat": "bench_motion_feat.h5",
         "vocab_json": "bench_vocab.json", "train_question_pt": "bench_train_questions.pt"}
WRITE_CHUNK = 64  # videos generated and written at a time


# ---------------------------------------------------------------------------------------------- data files
@dataclass(frozen=True)
class DataShape:
    num_videos: int
    num_questions: int
    num_clips: int
    num_frames: int
    feature_dim: int
    vocab_size: int
    num_answers: int
    max_question_len: int = 20

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def write_dataset(folder: Path, shape: DataShape, seed: int = 0) -> None:
    """Feature files, vocabulary and training question file in ``folder`` (names in FILES)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n, c, f, d = shape.num_videos, shape.num_clips, shape.num_frames, shape.feature_dim
    ids = np.arange(n, dtype=np.int64)
    for key, name, row_shape in (("appearance_feat", APPEARANCE_DATASET, (c, f, d)),
                                 ("motion_feat", MOTION_DATASET, (c, d))):
        with h5py.File(folder / FILES[key], "w") as h5:
            dataset = h5.create_dataset(name, shape=(n, *row_shape), dtype=np.float32)
            for start in progress(range(0, n, WRITE_CHUNK), desc=f"writing {FILES[key]}", unit="chunk",
                                  leave=False):
                rows = min(WRITE_CHUNK, n - start)
                dataset[start:start + rows] = rng.standard_normal((rows, *row_shape), dtype=np.float32)
            h5.create_dataset("ids", data=ids)
            h5.create_dataset("valid", data=np.ones(n, dtype=np.uint8))
            h5.attrs["bench_shape"] = json.dumps(shape.as_dict())
    vocab = {"question_token_to_idx": {"<NULL>": 0, "<UNK>": 1, **{f"w{i}": i for i in range(2, shape.vocab_size)}},
             "answer_token_to_idx": {"<UNK0>": 0, "<UNK1>": 1, **{f"a{i}": i for i in range(2, shape.num_answers)}}}
    vocab["question_answer_token_to_idx"] = dict(vocab["question_token_to_idx"])
    (folder / FILES["vocab_json"]).write_text(json.dumps(vocab))
    train_videos = max(1, round(n * MSVD_QA_TRAIN_VIDEOS / MSVD_QA_VIDEOS))
    lengths = np.clip(3 + rng.poisson(4, shape.num_questions), 1, shape.max_question_len)
    questions = rng.integers(2, shape.vocab_size, (shape.num_questions, shape.max_question_len), dtype=np.int32)
    questions[np.arange(shape.max_question_len) >= lengths[:, None]] = 0
    video_ids = rng.integers(0, train_videos, shape.num_questions).astype(np.int64)
    dump_pickle({"questions": questions, "questions_len": lengths.astype(np.int64),
                 "question_id": np.arange(shape.num_questions, dtype=np.int64), "video_ids": video_ids,
                 "video_names": video_ids.copy(), "answers": rng.integers(0, shape.num_answers, shape.num_questions),
                 "glove": None}, folder / FILES["train_question_pt"])


def existing_shape(folder: Path) -> DataShape | None:
    """The shape recorded in ``folder``'s appearance file, or None when the files are absent or unreadable."""
    if not all((folder / name).is_file() for name in FILES.values()):
        return None
    try:
        with h5py.File(folder / FILES["appearance_feat"], "r") as h5:
            return DataShape(**json.loads(h5.attrs["bench_shape"]))
    except (OSError, KeyError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- loader timing
@dataclass
class LoaderResult:
    features: str          # "hdf5" or "memory"
    dtype: str
    workers: int
    questions_per_video: int
    questions_per_second: float
    bytes_per_second: float
    first_batch_seconds: float


def loader_config(cfg_path: str, overrides: list, folder: Path, batch_size: int, in_memory: bool, dtype: str,
                  workers: int, k: int):
    """The config train.py would run with these loader settings, reading the generated files in ``folder``."""
    cfg = load_config(cfg_path, overrides)
    cfg.dataset.data_dir = str(folder)
    for key, name in FILES.items():
        cfg.dataset[key] = name
    cfg.dataset.features_in_memory, cfg.dataset.feature_dtype = in_memory, dtype
    cfg.dataset.num_workers, cfg.dataset.questions_per_video = workers, k
    cfg.train.batch_size = batch_size
    return cfg


def time_loader(cfg, device: torch.device, batches: int, warmup: int) -> LoaderResult:
    """Questions/s the training loader delivers to ``device`` (after ``warmup`` batches; the first batch, which
    includes starting the workers, is timed separately)."""
    bundle = load_data(cfg, splits=("train",), device=device, show_progress=False)
    split = bundle.splits["train"]
    sampler = VideoGroupedBatchSampler(split.video_key, cfg.train.batch_size, cfg.dataset.questions_per_video,
                                       shuffle=True, seed=cfg.seed)
    sampler.set_epoch(1)
    loader = build_loader(bundle.dataset("train"), sampler, cfg.dataset.num_workers, device, cfg.seed)
    batches = min(batches, len(sampler) - warmup - 1)
    if batches < 1:
        raise BenchError(f"{len(split)} questions make only {len(sampler)} batches of "
                         f"{cfg.train.batch_size}: lower --batch_size or --warmup, or raise --num_questions")
    try:
        iterator = iter(loader)
        start = time.perf_counter()
        batch_to_device(next(iterator), device)
        synchronize(device)
        first = time.perf_counter() - start
        for _ in range(warmup):
            batch_to_device(next(iterator), device)
        synchronize(device)
        questions = feature_bytes = 0
        start = time.perf_counter()
        for _ in range(batches):
            batch = batch_to_device(next(iterator), device)
            questions += batch["answer"].shape[0]
            feature_bytes += batch["appearance"].nbytes + batch["motion"].nbytes
        synchronize(device)
        seconds = time.perf_counter() - start
    finally:
        del loader
        bundle.close()
        del bundle
        gc.collect()
    return LoaderResult("memory" if cfg.dataset.features_in_memory else "hdf5", cfg.dataset.feature_dtype,
                        cfg.dataset.num_workers, cfg.dataset.questions_per_video, questions / seconds,
                        feature_bytes / seconds, first)


def model_rate(args, k: int) -> float:
    """questions/s of bench/train_step.py at the bench's settings (its last line), run in a subprocess."""
    command = [sys.executable, "-m", "bench.train_step", "--cfg", str(Path(args.cfg).resolve()),
               "--batch_size", str(args.batch_size), "--questions_per_video", str(max(k, 1)),
               "--num_clips", str(args.num_clips), "--num_frames", str(args.num_frames),
               "--steps", str(args.model_steps), "--warmup", "1", "--device", str(args.device),
               "--threads", str(args.threads), "--amp", load_config(args.cfg, args.overrides).train.amp,
               "--no_bound", *args.overrides]
    print(colored(f"model rate: {' '.join(command[1:])}", "cyan"), flush=True)
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].startswith("questions/s:"):
        raise BenchError(f"bench/train_step.py failed (exit {done.returncode}): {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return float(lines[-1].split(":", 1)[1])


# ---------------------------------------------------------------------------------------------- report
def print_table(results: list[LoaderResult], rates: dict) -> None:
    header = (f"{'features':<8} {'dtype':<8} {'workers':>7} {'K':>3} {'loader q/s':>11} {'features/s':>12} "
              f"{'1st batch':>9} {'model q/s':>10} {'loader/model':>12}")
    print(header)
    print("-" * len(header))
    for r in results:
        rate = rates.get(r.questions_per_video)
        ratio = f"{r.questions_per_second / rate:12.1f}" if rate else f"{'-':>12}"
        workers = str(r.workers) if r.features == "hdf5" else "-"
        print(f"{r.features:<8} {r.dtype:<8} {workers:>7} {r.questions_per_video:>3} {r.questions_per_second:11.0f} "
              f"{format_bytes(r.bytes_per_second) + '/s':>12} {r.first_batch_seconds:8.2f}s "
              f"{(f'{rate:.1f}' if rate else '-'):>10} {ratio}")


def config_features(dataset_cfg, shape: DataShape, device: torch.device) -> str:
    """``'memory'`` or ``'hdf5'``: where train.py would keep these features (``features_in_memory`` auto resolved
    with this machine's free memory, as training.data does)."""
    item = 2 if dataset_cfg.feature_dtype == "float16" else 4
    needed = item * shape.num_videos * shape.num_clips * (shape.num_frames + 1) * shape.feature_dim
    gpu_free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    placement = choose_feature_placement(dataset_cfg.features_in_memory, needed, device, gpu_free,
                                         host_memory_available())
    return "hdf5" if placement is None else "memory"


def print_verdict(results: list[LoaderResult], rates: dict, dataset_cfg, batch_size: int, features: str) -> None:
    """The line comparing the loader at the config's own settings (``features``: memory | hdf5) with the model's
    rate."""
    k = dataset_cfg.questions_per_video
    matching = [r for r in results if r.features == features and r.questions_per_video == k
                and (features == "memory" and r.dtype == dataset_cfg.feature_dtype
                     or features == "hdf5" and r.workers == dataset_cfg.num_workers)]
    settings = (f"{features}, {dataset_cfg.num_workers} workers, {dataset_cfg.feature_dtype}, questions_per_video "
                f"{k}, batch {batch_size}")
    if not matching:
        print(colored(f"the config's settings ({settings}) were not among the measured rows", "yellow"))
        return
    loader_rate = matching[0].questions_per_second
    verdict = ""
    if rates.get(k):
        ratio = loader_rate / rates[k]
        verdict = (f" = {ratio:.1f}x the model's {rates[k]:.1f} questions/s: "
                   + ("the loader keeps up" if ratio >= 1 else "the loader is the bottleneck"))
    print(colored(f"config settings ({settings}): loader {loader_rate:.0f} questions/s{verdict}", "green"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bench/data_loading.py",
        description="Questions/s of the training loader (HDF5 with 0-4 workers, in-memory float32/float16, ordinary "
                    "and video-grouped batches) against the model's training rate, on MSVD-QA-sized random data. "
                    "--cfg defaults to configs/msvd_qa_teacher.yml; its dataset section gives the settings of the "
                    "verdict line.")
    add_config_arguments(parser, cfg_required=False)
    parser.set_defaults(cfg=str(REPO_ROOT / "configs" / "msvd_qa_teacher.yml"))
    parser.add_argument("--dir", type=Path,
                        help="folder for the generated files; reused when it already holds them at the same sizes "
                             "(default: a temporary folder, removed afterwards)")
    parser.add_argument("--num_videos", type=int, default=MSVD_QA_VIDEOS, help="videos (default: %(default)s)")
    parser.add_argument("--num_questions", type=int, default=MSVD_QA_TRAIN_QUESTIONS,
                        help="training questions (default: %(default)s)")
    parser.add_argument("--num_clips", type=int, default=8, help="clips per video C (default: %(default)s)")
    parser.add_argument("--num_frames", type=int, default=16, help="frames per clip F (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, help="questions per batch (default: the config's train.batch_size)")
    parser.add_argument("--questions_per_video", type=int, default=16,
                        help="K of the video-grouped rows (default: %(default)s)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4],
                        help="DataLoader worker counts for the HDF5 rows (default: 0 1 2 4)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per row (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches after the first (default: %(default)s)")
    parser.add_argument("--device", default="cpu",
                        help="where batches go, as in training: cpu | cuda | cuda:N (default: %(default)s)")
    parser.add_argument("--model_rate", type=float,
                        help="the model's questions/s with ordinary batches (skips running bench/train_step.py)")
    parser.add_argument("--model_rate_grouped", type=float,
                        help="the model's questions/s with K questions per video (skips running bench/train_step.py)")
    parser.add_argument("--no_model", action="store_true", help="do not measure the model's rate")
    parser.add_argument("--model_steps", type=int, default=3,
                        help="timed steps of bench/train_step.py per model rate (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads, here and in bench/train_step.py; 0 leaves torch's default "
                             "(default: %(default)s)")
    return parser


def main(argv=None) -> int:
    try:
        return run(argv)
    except Exception as e:  # bad input: one line and exit code 2 (utils/cli.py)
        return exit_on_input_error(e)


def run(argv=None) -> int:
    """Parse ``argv``, time every loader setting and print the table and the verdict; returns 0."""
    args = build_parser().parse_args(argv)
    # The worker-count rows go beyond the CPU count on purpose; the machine line gives the count.
    warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = load_config(args.cfg, args.overrides)
    args.batch_size = args.batch_size or base.train.batch_size
    device = device_from_flag(args.device)
    args.device = device
    shape = DataShape(args.num_videos, args.num_questions, args.num_clips, args.num_frames, base.model.vision_dim,
                      vocab_size=4000, num_answers=1002)
    temporary = None if args.dir else tempfile.TemporaryDirectory(prefix="kdvqa_loader_bench_")
    folder = args.dir or Path(temporary.name)
    try:
        if existing_shape(folder) != shape:
            started = time.perf_counter()
            write_dataset(folder, shape)
            size = sum((folder / name).stat().st_size for name in FILES.values())
            print(f"wrote {format_bytes(size)} to {folder} in {time.perf_counter() - started:.0f} s")
        print(colored(f"data loading | {shape.num_videos:,} videos x C={shape.num_clips} F={shape.num_frames} "
                      f"D={shape.feature_dim}, {shape.num_questions:,} training questions | batch "
                      f"{args.batch_size} | to {device}", "cyan"))
        print(f"machine      | {describe_machine(device)} | load {load_average()}")
        settings = [(False, "float32", w, k) for k in (0, args.questions_per_video) for w in args.workers]
        settings += [(True, dtype, 0, k) for k in (0, args.questions_per_video) for dtype in ("float32", "float16")]
        results = []
        for in_memory, dtype, workers, k in settings:
            cfg = loader_config(args.cfg, args.overrides, folder, args.batch_size, in_memory, dtype, workers, k)
            results.append(time_loader(cfg, device, args.batches, args.warmup))
            r = results[-1]
            print(f"  {r.features} {r.dtype} workers={workers} K={k}: {r.questions_per_second:.0f} questions/s",
                  flush=True)
        rates = {}
        if not args.no_model:
            rates[0] = args.model_rate or model_rate(args, 0)
            rates[args.questions_per_video] = args.model_rate_grouped or model_rate(args, args.questions_per_video)
        print(f"load after   | {load_average()}")
        print_table(results, rates)
        print_verdict(results, rates, base.dataset, args.batch_size, config_features(base.dataset, shape, device))
    finally:
        if temporary is not None:
            temporary.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
