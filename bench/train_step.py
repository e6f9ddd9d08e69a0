"""Training-step speed of the configured model on random inputs shaped like the data, float32 and bf16 side by
side, against the step's FLOP bound.

    python bench/train_step.py --cfg configs/msvd_qa_teacher.yml --batch_size 32 --steps 5 --per_question_dropout
    python bench/train_step.py --cfg configs/msvd_qa_teacher.yml --batch_size 32 --questions_per_video 16
    python bench/train_step.py --cfg configs/msvd_qa_student.yml --mode kd --batch_size 256 --device cuda --amp none
    OMP_WAIT_POLICY=ACTIVE python bench/train_step.py --cfg configs/msvd_qa_teacher.yml --threads 2 --batch_size 32

One step is what ``train.py`` runs per batch (``training.engine.train_step``): forward, the configured losses
(CE + alpha * similarity + beta * HSIC, plus the distillation terms from a frozen teacher in kd mode), backward,
gradient clipping at ``train.grad_clip`` and an Adam step (on CUDA with TF32 matmuls, as the trainer sets them).
A batch holds B questions about B/K videos (K = --questions_per_video): the video encoders run once per video, as
with the training loader's grouped batches (dataset.questions_per_video = K), so questions on one video share the
encoders' dropout masks; --per_question_dropout gives each question its own copy of its video and its own masks,
as training does by default (dataset.questions_per_video = 0). The batch is already on the device (the loader's speed is
bench/data_loading.py's job).

Each --amp setting (default: none and bf16) gets its own model built from the same seed; their steps alternate, so
on a shared machine every setting sees the same load, and the ratio between them is the figure to quote. Prints
the median ms/step of each over --steps timed steps (after --warmup untimed ones), questions/s and their ratio, the
FLOP bound (bench/step_flops.py: the step's FLOPs counted from the shapes, LSTMs included, over the peak speed of a
large product in each dtype, measured in the same run), peak memory, the projected epoch time at the MSVD-QA and
MSRVTT-QA training-split sizes, and as its LAST line ``questions/s: X`` of the last --amp setting. The load average
is printed before and after. Like every entry point it runs with OMP_WAIT_POLICY=PASSIVE unless the environment
sets another policy (the header says which): spinning OpenMP threads that wait for a descheduled partner make steps
several times slower on a busy machine.
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import torch
from termcolor import colored

from bench import BenchError
from bench.common import (BatchShape, StepTimer, TimeSummary, busy_machine_note, describe_machine, device_from_flag,
                          epoch_projection, load_average, peak_memory, random_batch, reset_peak_memory)
from bench.step_flops import PEAK_SHAPE, count_step_flops, peak_flops
from model import build_model
from model.cpu_ops import set_cpu_fast_path
from model.heads import get_head
from model.losses import objective_for
from model.params import count_parameters
from preprocess.datasets.files import dataset_spec
from training.engine import CompiledWithFallback, StepContext, train_step
from training.run_schema import load_config
from training.run_settings import AMP_CHOICES, AMP_DTYPES, resolve_amp
from utils.cli import exit_on_input_error
from utils.config import add_config_arguments

MODES = ("teacher", "student", "kd")
ADAM_IMPLEMENTATIONS = ("default", "fused", "foreach", "forloop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bench/train_step.py",
        description="Time training steps (forward, losses, backward, grad clip, Adam) of the configured model on "
                    "random inputs; the last line printed is 'questions/s: X'.")
    add_config_arguments(parser)
    parser.add_argument("--batch_size", type=int, help="questions per step B (default: train.batch_size)")
    parser.add_argument("--steps", type=int, default=10,
                        help="timed steps; the median is reported (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps first: allocator, kernel choice (default: %(default)s)")
    parser.add_argument("--questions_per_video", type=int, default=1,
                        help="K: the batch holds B/K videos with K questions each; 1: every question its own video "
                             "(default: %(default)s)")
    parser.add_argument("--per_question_dropout", action="store_true",
                        help="expand the batch to one video row per question before the encoders (own dropout "
                             "masks per question, as training with dataset.questions_per_video=0); default: encode "
                             "each of the B/K videos once, sharing masks (dataset.questions_per_video=K)")
    parser.add_argument("--num_clips", type=int,
                        help="clips per video C (default: the dataset's extraction default: 8 MSVD-QA and TGIF-QA, "
                             "16 MSRVTT-QA and NExT-QA, 20 SVQA)")
    parser.add_argument("--num_frames", type=int, default=16, help="frames per clip F (default: %(default)s)")
    parser.add_argument("--question_len", type=int, default=20,
                        help="question tokens L of the longest question (default: %(default)s)")
    parser.add_argument("--vocab_size", type=int, default=4000, help="question vocabulary V (default: %(default)s)")
    parser.add_argument("--num_answers", type=int, default=1002,
                        help="answer classes A of open-ended heads (default: %(default)s); multiple choice: the "
                             "dataset's candidates per question, count: 1")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the config's device)")
    parser.add_argument("--mode", choices=MODES,
                        help="teacher/student: the config's model with CE + similarity + HSIC; kd: also the "
                             "distillation terms from a frozen teacher (default: train.mode)")
    parser.add_argument("--teacher_graph_layers", type=int, default=4,
                        help="graph layers g of the frozen teacher in kd mode; the rest of its shape is the config's "
                             "(default: %(default)s)")
    parser.add_argument("--amp", nargs="+", choices=AMP_CHOICES, default=["none", "bf16"],
                        help="autocast settings timed side by side, steps interleaved, each on a model built from "
                             "the same seed: none (float32), bf16 (CUDA or CPU autocast), fp16 (CUDA), auto (what "
                             "train.amp=auto picks here). The last one gives the final 'questions/s' line "
                             "(default: %(default)s)")
    parser.add_argument("--no_bound", action="store_true",
                        help="skip the FLOP bound (one extra counted step on a throw-away model, and three "
                             "2048x2048x2048 products per setting to measure the peak)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the trained model, falling back to eager if compilation fails (as "
                             "train.compile)")
    parser.add_argument("--adam", choices=ADAM_IMPLEMENTATIONS, default="default",
                        help="Adam implementation: default = torch.optim.Adam(params, lr) as training/trainer.py "
                             "builds it (torch picks: foreach on CUDA, a per-parameter for-loop on the CPU); "
                             "fused / foreach / forloop force one (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0 leaves torch's default (default: %(default)s)")
    parser.add_argument("--profile", action="store_true",
                        help="after timing, profile 2 more steps with torch.profiler and print the top operators")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the weights and the random batch (default: %(default)s)")
    return parser


def build_optimizer(params, lr: float, implementation: str) -> torch.optim.Optimizer:
    options = {"default": {}, "fused": {"fused": True}, "foreach": {"foreach": True},
               "forloop": {"foreach": False}}[implementation]
    return torch.optim.Adam(params, lr=lr, **options)


def build_models(cfg, mode: str, shape: BatchShape, teacher_graph_layers: int, device: torch.device):
    """(trained model in train mode, frozen teacher in eval mode or None)."""
    model = build_model(cfg.model, shape.vocab_size, shape.num_answers).to(device).train()
    teacher = None
    if mode == "kd":
        teacher_cfg = copy.deepcopy(cfg.model)
        teacher_cfg.graph_layers = teacher_graph_layers
        teacher = build_model(teacher_cfg, shape.vocab_size, shape.num_answers).to(device).eval()
        teacher.requires_grad_(False)
    return model, teacher


def describe_step(cfg, mode: str, teacher, adam: str) -> str:
    losses = " + ".join(f"{w:g} x {name}" for name, w in objective_for(cfg, mode).weights.items() if w)
    losses += " (frozen teacher)" if teacher is not None else ""
    clip = f"grad clip {cfg.train.grad_clip:g}" if cfg.train.grad_clip > 0 else "no grad clip"
    return f"{mode}, g={cfg.model.graph_layers}, {losses}, {clip}, Adam ({adam})"


@dataclass
class Variant:
    """One autocast setting under test: its name (as --amp), dtype (None = float32) and step context."""
    amp: str
    dtype: torch.dtype | None
    ctx: StepContext
    timer: StepTimer


def resolve_bench_amp(amp: str, device: torch.device) -> str:
    """An --amp value as training resolves it on ``device`` (``auto``: training.run_settings.resolve_amp); fp16 on a
    CPU is refused (training runs it in float32)."""
    if amp == "auto":
        dtype, _ = resolve_amp(SimpleNamespace(train=SimpleNamespace(amp=amp)), device)
        return "bf16" if dtype == torch.bfloat16 else "none"
    if amp == "fp16" and device.type != "cuda":
        raise BenchError("--amp fp16 needs a CUDA device (training runs train.amp=fp16 in float32 on a CPU)")
    return amp


def build_variant(cfg, args, mode: str, shape: BatchShape, device: torch.device, amp: str) -> Variant:
    """A freshly seeded model (and teacher), its optimiser and step context for one autocast setting: every
    variant starts from the same weights."""
    torch.manual_seed(args.seed)
    model, teacher = build_models(cfg, mode, shape, args.teacher_graph_layers, device)
    params = [p for p in model.parameters() if p.requires_grad]
    dtype = AMP_DTYPES[amp]
    ctx = StepContext(model=CompiledWithFallback(model) if args.compile else model, teacher=teacher,
                      optimizer=build_optimizer(params, cfg.train.lr, args.adam),
                      scaler=torch.amp.GradScaler("cuda", enabled=dtype == torch.float16),
                      objective=objective_for(cfg, mode), device=device,
                      amp_dtype=dtype, grad_clip=cfg.train.grad_clip,
                      share_video_dropout=not args.per_question_dropout)
    return Variant(amp, dtype, ctx, StepTimer(device))


def dtype_name(dtype: torch.dtype | None) -> str:
    return "float32" if dtype is None else str(dtype).replace("torch.", "").replace("bfloat16", "bf16")


def run(argv=None) -> float:
    """Parse ``argv``, time the steps, print the report; returns the questions/s of the last --amp setting."""
    args = build_parser().parse_args(argv)
    cfg = load_config(args.cfg, args.overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = device_from_flag(args.device or cfg.device)
    mode = args.mode or cfg.train.mode
    if args.steps < 1 or args.warmup < 0:
        raise BenchError("--steps must be >= 1 and --warmup >= 0")
    amps = list(dict.fromkeys(resolve_bench_amp(a, device) for a in args.amp))
    spec = dataset_spec(cfg)
    num_clips = args.num_clips or spec.default_num_clips
    head = cfg.model.head
    num_answers = get_head(head).num_outputs(args.num_answers, spec.num_candidates)
    try:
        shape = BatchShape(args.batch_size or cfg.train.batch_size, args.questions_per_video, num_clips,
                           args.num_frames, cfg.model.vision_dim, args.question_len, args.vocab_size,
                           num_answers, head)
    except ValueError as e:
        raise BenchError(str(e)) from None

    set_cpu_fast_path(cfg.model.cpu_fast_path)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # as training/trainer.py: TF32 for float32 matmuls on CUDA
    variants = [build_variant(cfg, args, mode, shape, device, amp) for amp in amps]
    batch = random_batch(shape, device, seed=args.seed)
    first = variants[0].ctx
    params = count_parameters(first.model)

    print(colored(f"train step | {describe_step(cfg, mode, first.teacher, args.adam)} | {args.cfg}", "cyan"))
    print(f"machine    | {device}: {describe_machine(device)}")
    teacher_note = f" (+ frozen teacher g={args.teacher_graph_layers})" if first.teacher is not None else ""
    print(f"batch      | B={shape.batch_size} questions = {shape.num_videos} videos x K={shape.questions_per_video} "
          f"| C={shape.num_clips} F={shape.num_frames} D={shape.vision_dim} L={shape.question_len} "
          f"V={shape.vocab_size} A={shape.num_answers} | "
          f"{'dropout masks per question' if args.per_question_dropout else 'videos encoded once (shared masks)'} | "
          f"amp {', '.join(amps)}{' (steps interleaved)' if len(amps) > 1 else ''}"
          f"{' | compiled' if args.compile else ''} | {params:,} trainable parameters{teacher_note}")
    load_before = load_average()
    note = busy_machine_note(device)
    if note:
        print(colored(note, "yellow"))

    flops = None
    if not args.no_bound:
        model_copy = build_variant(cfg, args, mode, shape, device, "none")   # a throw-away step to count
        models = [m for m in (model_copy.ctx.model, model_copy.ctx.teacher) if m is not None]
        flops = count_step_flops(lambda: train_step(model_copy.ctx, batch), models)
        del model_copy, models
    for _ in range(args.warmup):
        for v in variants:
            train_step(v.ctx, batch)
    reset_peak_memory(device)
    for _ in range(args.steps):  # interleaved: every setting sees the same machine load
        for v in variants:
            with v.timer.step():
                train_step(v.ctx, batch)
    summaries = {v.amp: TimeSummary.of(v.timer.seconds()) for v in variants}
    rates = {amp: shape.batch_size / s.median for amp, s in summaries.items()}

    print(f"load avg   | before {load_before} | after {load_average()}")
    print(colored("ms/step    | " + " | ".join(f"{dtype_name(v.dtype)}: {summaries[v.amp].milliseconds()}"
                                                for v in variants), "green"))
    base = rates[amps[0]]
    print("rates      | " + " | ".join(
        f"{dtype_name(v.dtype)} {rates[v.amp]:.2f} questions/s" + (f" ({rates[v.amp] / base:.2f}x {dtype_name(variants[0].dtype)})" if i else "")
        for i, v in enumerate(variants)))
    if flops is not None:
        print(f"flops      | {flops.total / 1e9:.4g} GFLOP per step, counted from the shapes (LSTMs "
              f"{flops.lstms / 1e9:.4g}, other products {flops.products / 1e9:.4g}; forward + backward)")
        parts = []
        for v in variants:
            peak = peak_flops(device, v.dtype or torch.float32)
            bound = flops.total / peak
            parts.append(f"{dtype_name(v.dtype)}: peak {peak / 1e9:.0f} GFLOP/s -> {1000 * bound:.4g} ms/step, "
                         f"measured {summaries[v.amp].median / bound:.3g}x it")
        print("FLOP bound | " + " | ".join(parts) + f" ({'x'.join(map(str, PEAK_SHAPE))} product)")
    print(f"peak memory| {peak_memory(device)}{' (all settings together)' if len(variants) > 1 else ''}")
    print(f"epoch      | {dtype_name(variants[-1].dtype)}: {epoch_projection(rates[amps[-1]])}")
    if args.profile:
        for v in variants:
            print_profile(v.ctx, batch, device, label=dtype_name(v.dtype))
    print(f"questions/s: {rates[amps[-1]]:.2f}")
    return rates[amps[-1]]


def print_profile(ctx: StepContext, batch: dict, device: torch.device, label: str, steps: int = 2,
                  rows: int = 25) -> None:
    """Profile ``steps`` training steps and print the operators with the most self time."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            train_step(ctx, batch)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"profile    | {label}: {steps} steps, top {rows} operators by self time")
    print(prof.key_averages().table(sort_by=sort_by, row_limit=rows))


def main(argv=None) -> int:
    try:
        run(argv)
    except Exception as e:  # bad input: one line and exit code 2 (utils/cli.py)
        return exit_on_input_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
