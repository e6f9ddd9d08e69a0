"""Helpers shared by the training benchmarks: the machine and its load, step timing, peak memory, random batches
shaped like the training loader's, and epoch-time projections.

Timing never synchronises inside a step: on CUDA each step is bracketed by CUDA events and the device is
synchronised once, when the times are read; on the CPU a step is timed with ``time.perf_counter``.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass

import torch

from bench import BenchError
from model.heads import get_head
from utils.device import resolve_device

# Training-split sizes the projections use (HCRN/DualVGR question files).
EPOCH_SIZES = {"MSVD-QA": 30_933, "MSRVTT-QA": 158_581}
OMP_ENV = "OMP_WAIT_POLICY"


# ---------------------------------------------------------------------------------------------- machine
def device_from_flag(name: str) -> torch.device:
    """:func:`utils.device.resolve_device` for a --device flag; BenchError naming the flag for a bad device."""
    try:
        return resolve_device(name)
    except ValueError as e:
        raise BenchError(f"--device: {e}") from None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe_machine(device: torch.device) -> str:
    """One line: the device, torch threads (CPU), the OpenMP wait policy in effect and the torch version."""
    policy = os.environ.get(OMP_ENV, "unset")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return (f"{name} (CUDA {torch.version.cuda}) | host {cpu_model()} | {OMP_ENV}={policy} | "
                f"torch {torch.__version__}")
    return (f"{cpu_model()} ({os.cpu_count()} logical CPUs) | {torch.get_num_threads()} torch threads | "
            f"{OMP_ENV}={policy} | torch {torch.__version__}")


def load_average() -> str:
    """The 1/5/15-minute load averages, e.g. ``'4.12 4.30 3.95'`` (``'n/a'`` where the OS has none)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def busy_machine_note(device: torch.device) -> str | None:
    """A warning when CPU timings will suffer from other processes: the 1-minute load average exceeds the CPUs
    left over by this process's threads while OpenMP threads spin-wait (OMP_WAIT_POLICY unset or active)."""
    if device.type != "cpu":
        return None
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cpus, threads = os.cpu_count() or 1, torch.get_num_threads()
    if threads < 2 or load <= max(cpus - threads, 0) + 0.5 or os.environ.get(OMP_ENV, "").upper() == "PASSIVE":
        return None
    return (f"note: the machine is busy (load {load:.1f} on {cpus} CPUs) and idle OpenMP threads spin: with "
            f"{threads} threads each parallel operator waits for a descheduled partner; timings are "
            f"pessimistic and noisy. Compare at equal load, or leave {OMP_ENV} unset (PASSIVE is the default) "
            f"or run with --threads 1.")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------- timing, memory
class StepTimer:
    """Per-step wall times without a host-device sync inside the timed region.

    ``with timer.step(): ...`` around each step; ``timer.seconds()`` returns the list of step times (one
    synchronisation on CUDA, when the events are read).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._events = []
        self._seconds = []

    def step(self):
        return _TimedStep(self)

    def seconds(self) -> list[float]:
        if self._events:
            synchronize(self.device)
            self._seconds.extend(start.elapsed_time(end) / 1000.0 for start, end in self._events)
            self._events = []
        return list(self._seconds)


class _TimedStep:
    def __init__(self, timer: StepTimer):
        self.timer = timer

    def __enter__(self):
        if self.timer.device.type == "cuda":
            self.start = torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.timer.device.type == "cuda":
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.timer._events.append((self.start, end))
        else:
            self.timer._seconds.append(time.perf_counter() - self.start)
        return False


@dataclass
class TimeSummary:
    """Median, minimum and maximum of a list of durations (seconds)."""
    median: float
    minimum: float
    maximum: float
    count: int

    @classmethod
    def of(cls, seconds: list[float]) -> "TimeSummary":
        if not seconds:
            raise ValueError("no timed steps")
        return cls(statistics.median(seconds), min(seconds), max(seconds), len(seconds))

    def milliseconds(self) -> str:
        return (f"{1000 * self.median:.1f} ms (median of {self.count}; min {1000 * self.minimum:.1f}, "
                f"max {1000 * self.maximum:.1f})")


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    """CUDA: the most memory tensors held since :func:`reset_peak_memory`; CPU: the process's peak RSS."""
    if device.type == "cuda":
        return f"{format_bytes(torch.cuda.max_memory_allocated(device))} (CUDA max allocated)"
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return f"{format_bytes(kib * 1024)} (CPU peak RSS of the whole process)"


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def epoch_projection(questions_per_second: float) -> str:
    """``'MSVD-QA (30,933 questions) 41.2 min | MSRVTT-QA (158,581 questions) 3.52 h'`` at the given rate."""
    return " | ".join(f"{name} ({n:,} questions) {format_duration(n / questions_per_second)}"
                      for name, n in EPOCH_SIZES.items())


# ---------------------------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class BatchShape:
    """Sizes of a random batch: B questions, K per video (B/K videos), C clips, F frames, D features,
    L question tokens, V question vocabulary, A answers (multiple choice: the candidates per question; count: 1),
    the answer head, and L_a tokens per candidate (multiple choice)."""
    batch_size: int
    questions_per_video: int
    num_clips: int
    num_frames: int
    vision_dim: int
    question_len: int
    vocab_size: int
    num_answers: int
    head: str = "open_ended"
    candidate_len: int = 4

    def __post_init__(self):
        if self.batch_size < 2:
            raise ValueError(f"batch size must be at least 2 (BatchNorm in train mode), got {self.batch_size}")
        if self.questions_per_video < 1 or self.batch_size % self.questions_per_video:
            raise ValueError(f"questions per video ({self.questions_per_video}) must divide the batch size "
                             f"({self.batch_size})")
        if self.question_len < 1 or self.vocab_size < 3 or self.candidate_len < 1:
            raise ValueError("need question and candidate length >= 1 and vocabulary >= 3 tokens")
        get_head(self.head).check_outputs(self.vocab_size, self.num_answers)

    @property
    def num_videos(self) -> int:
        return self.batch_size // self.questions_per_video


def random_batch(shape: BatchShape, device: torch.device, seed: int = 0) -> dict:
    """A batch in the training loader's format (training/data/batches.py), made of random numbers on ``device``.

    appearance (N, C, F, D) float32, motion (N, C, D), question (B, L) int64 0-padded beyond question_len (B,)
    (lengths in [L/2, L], the first question full length), answer (B,), video_index (B,) (question b is about
    video b // K), question_index (B,), with N = B / K videos. Multiple choice adds candidates (B, A, L_a) and
    candidates_len (B, A) (answer: a candidate index); count answers are counts 1..10.
    """
    g = torch.Generator().manual_seed(seed)
    b, n, length = shape.batch_size, shape.num_videos, shape.question_len
    lengths = torch.randint(max(length // 2, 1), length + 1, (b,), generator=g)
    lengths[0] = length
    question = torch.randint(2, shape.vocab_size, (b, length), generator=g)
    question[torch.arange(length) >= lengths[:, None]] = 0
    batch = {
        "appearance": torch.randn(n, shape.num_clips, shape.num_frames, shape.vision_dim, generator=g),
        "motion": torch.randn(n, shape.num_clips, shape.vision_dim, generator=g),
        "question": question,
        "question_len": lengths,
        "answer": get_head(shape.head).random_answers(b, shape.num_answers, g),
        "video_index": torch.arange(n).repeat_interleave(shape.questions_per_video),
        "question_index": torch.arange(b),
    }
    if get_head(shape.head).uses_candidates:
        k, width = shape.num_answers, shape.candidate_len
        candidates_len = torch.randint(1, width + 1, (b, k), generator=g)
        candidates = torch.randint(2, shape.vocab_size, (b, k, width), generator=g)
        candidates[torch.arange(width) >= candidates_len[..., None]] = 0
        batch.update(candidates=candidates, candidates_len=candidates_len)
    return {k: v.to(device) for k, v in batch.items()}
