"""One training step, one training epoch, one evaluation pass.

Nothing here synchronises host and device per step: loss parts, predictions and the first non-finite step are
accumulated on the device and read back every ``SYNC_EVERY`` steps (progress bar, NaN check, Ctrl-C agreement
between ranks) and at the end of the epoch.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from utils.progress import progress

from model.losses import Objective, compute_losses
from training import distributed
from training.data import QuestionSplit, batch_to_device
from training.log import get_logger
from model.heads import get_head
from training.metrics import SplitAccuracy, score_by_category

SYNC_EVERY = 25       # steps between host reads of the running sums
NO_BAD_STEP = 2 ** 62  # "no non-finite loss yet"


class NonFiniteLossError(RuntimeError):
    """A loss part became NaN or infinite; the message names the epoch, the step and the part(s)."""


class CompiledWithFallback(torch.nn.Module):
    """``torch.compile(module)`` that falls back to eager execution for good if compilation fails.

    Some torch versions fail to compile parts of the model under autocast (e.g. torch 2.11: a gather backward
    under bf16 autocast raises "Unexpected floating ScalarType in at::autocast::prioritize"); the run then goes on
    uncompiled with a warning instead of crashing. Parameters and state are ``module``'s own.
    """

    def __init__(self, module: torch.nn.Module):
        from torch._dynamo.exc import BackendCompilerFailed
        super().__init__()
        self.module = module
        self.__dict__["_compiled"] = torch.compile(module)  # not registered: no duplicate parameters / state
        self.__dict__["_compile_error"] = BackendCompilerFailed

    def forward(self, *args, **kwargs):
        if self._compiled is not None:
            try:
                return self._compiled(*args, **kwargs)
            except self._compile_error as e:
                reason = next((line for line in reversed(str(e).splitlines()) if "Error" in line), str(e)[:200])
                get_logger().warning(f"train.compile: torch.compile failed ({reason.strip()}); continuing without "
                                     "compilation")
                self.__dict__["_compiled"] = None
        return self.module(*args, **kwargs)


@dataclass
class StepContext:
    """What a training step needs. ``model`` may be compiled / DDP-wrapped; ``teacher`` is frozen or None;
    ``objective`` the weighted loss terms (model/losses.py).

    ``share_video_dropout``: the model's video encoders run once per distinct video of the batch, so questions on
    the same video share the encoders' dropout masks (faster; ``dataset.questions_per_video > 0``). False: each
    question gets its own copy of its video's features and its own masks, as DualVGR trains.
    """
    model: torch.nn.Module
    teacher: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    objective: Objective
    device: torch.device
    amp_dtype: torch.dtype | None
    grad_clip: float
    share_video_dropout: bool = False


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """Autocast to ``amp_dtype`` on ``device`` (bf16/fp16 on CUDA, bf16 on the CPU: training.run_settings.resolve_amp
    decides); a no-op context for float32 (None). Parameters stay float32; the losses turn autocast off."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def model_inputs(batch: dict, per_question_videos: bool = False) -> tuple:
    """The model's positional arguments (appearance, motion, question, question_len, video_index) from a batch
    (the candidates of a multiple-choice batch are keyword arguments: :func:`candidate_inputs`).

    ``per_question_videos``: gather each question's video rows first (appearance (B, C, F, D), motion (B, C, D),
    video_index None), so that the video encoders draw their dropout masks per question in training mode.
    Otherwise the batch's distinct videos (N rows) and ``video_index`` (B,) are passed as they are.
    """
    appearance, motion, video_index = batch["appearance"], batch["motion"], batch["video_index"]
    if per_question_videos:
        appearance, motion, video_index = appearance[video_index], motion[video_index], None
    return appearance, motion, batch["question"], batch["question_len"], video_index


def candidate_inputs(batch: dict) -> dict:
    """``candidates`` (B, K, L_a) and ``candidates_len`` (B, K) of a multiple-choice batch as keyword arguments;
    {} for other batches (models without candidates never see the keywords)."""
    if "candidates" not in batch:
        return {}
    return {"candidates": batch["candidates"], "candidates_len": batch["candidates_len"]}


def forward(model, teacher, batch: dict, objective: Objective, device, amp_dtype, per_question_videos: bool = False):
    """Model (and frozen teacher, when the objective reads it) on one batch -> (model output, dict of scalar loss
    tensors: ``objective.part_names``).

    ``per_question_videos`` applies to the model (see :func:`model_inputs`); the teacher, in eval mode and
    without dropout, always encodes each distinct video once.
    """
    inputs, candidates = model_inputs(batch), candidate_inputs(batch)
    with autocast(device, amp_dtype):
        out = model(*model_inputs(batch, per_question_videos), **candidates)
        teacher_out = None
        if teacher is not None and objective.reads_teacher:
            with torch.no_grad():
                teacher_out = teacher(*inputs, **candidates)
        losses = compute_losses(objective, out, batch["answer"], teacher_out)
    return out, losses


def train_step(ctx: StepContext, batch: dict):
    """One optimisation step on a device batch -> (losses dict, logits (B, A) / (B, K) / (B, 1)). No host sync."""
    out, losses = forward(ctx.model, ctx.teacher, batch, ctx.objective, ctx.device, ctx.amp_dtype,
                          per_question_videos=not ctx.share_video_dropout)
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.scaler.scale(losses["total"]).backward()
    if ctx.grad_clip > 0:
        ctx.scaler.unscale_(ctx.optimizer)
        params = [p for group in ctx.optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, ctx.grad_clip)
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    return losses, out.logits


class EpochTotals:
    """Device-side running sums of one epoch (one split).

    loss_sums (P,) float64: sum over questions of each loss part (``part_names`` order, ``total`` first);
    count () float64;
    correct () float64: right answers (accuracy heads) or the sum of squared errors (count head);
    predictions (N,) int64 (answer id, candidate index or rounded count), -1 until the question is seen;
    first_bad_step () int64 and bad_parts (P,) bool: the first step whose loss was not finite and which parts were
    not. ``head`` (a registered answer head's name) decides how logits become predictions and what a question's
    outcome is; ``unanswerable`` the answer id never counted correct.
    """

    def __init__(self, num_questions: int, device: torch.device, part_names: tuple, head: str,
                 unanswerable: int | None):
        self.head, self.unanswerable = head, unanswerable
        self.answer_head = get_head(head)
        self.part_names = tuple(part_names)
        self.loss_sums = torch.zeros(len(self.part_names), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.predictions = torch.full((num_questions,), -1, dtype=torch.int64, device=device)
        self.first_bad_step = torch.full((), NO_BAD_STEP, dtype=torch.int64, device=device)
        self.bad_parts = torch.zeros(len(self.part_names), dtype=torch.bool, device=device)

    def add(self, losses: dict, logits: torch.Tensor, batch: dict, step: int) -> None:
        parts = torch.stack([losses[k].detach().float() for k in self.part_names])
        finite = torch.isfinite(parts)
        size = batch["answer"].shape[0]
        predictions = self.answer_head.predictions(logits)
        self.loss_sums += parts.double() * size
        self.count += size
        self.correct += self.answer_head.outcome(predictions, batch["answer"], self.unanswerable).sum()
        self.predictions[batch["question_index"]] = predictions
        newly_bad = (~finite).any() & (self.first_bad_step == NO_BAD_STEP)
        self.first_bad_step = torch.where(newly_bad, torch.full_like(self.first_bad_step, step), self.first_bad_step)
        self.bad_parts = torch.where(newly_bad, ~finite, self.bad_parts)

    def state_dict(self) -> dict:
        return {k: getattr(self, k).cpu() for k in
                ("loss_sums", "count", "correct", "predictions", "first_bad_step", "bad_parts")}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value.to(getattr(self, key).device))

    def reduce(self, dist_ctx) -> None:
        """Combine the ranks' sums (every question was seen by exactly one rank)."""
        for tensor in (self.loss_sums, self.count, self.correct):
            distributed.all_reduce_(tensor, dist_ctx, "sum")
        distributed.all_reduce_(self.predictions, dist_ctx, "max")

    def mean_losses(self) -> dict:
        """Per-question mean of each loss part (host floats; one sync)."""
        means = (self.loss_sums / self.count.clamp(min=1)).tolist()
        return dict(zip(self.part_names, means))


def check_status(totals: EpochTotals, epoch: int, stop_requested: bool, dist_ctx, split: str = "train") -> tuple:
    """Read the running sums (one host sync; one all-reduce under DDP).

    Raises NonFiniteLossError if any rank saw a non-finite loss. Returns (stop, mean total loss, accuracy) where
    ``stop`` is True when any rank was asked to stop (Ctrl-C / SIGTERM). The third value is the running mean of the
    head's per-question outcome (the MSE for the count head).
    """
    flags = torch.cat([totals.first_bad_step.double().reshape(1),
                       torch.full((1,), -float(stop_requested), dtype=torch.float64, device=totals.count.device),
                       -totals.bad_parts.double()])
    distributed.all_reduce_(flags, dist_ctx, "min")
    values = torch.cat([flags, totals.loss_sums[:1], totals.count.reshape(1), totals.correct.reshape(1)]).tolist()
    bad_step, stop, bad = values[0], values[1] < 0, values[2:2 + len(totals.part_names)]
    if bad_step < NO_BAD_STEP:
        parts = [name for name, flag in zip(totals.part_names, bad) if flag < 0]
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch}, {split} step {int(bad_step) + 1}: loss part(s) "
            f"{', '.join(parts)} became NaN/inf. Stopped before writing any checkpoint of this epoch; the last "
            "good checkpoint is intact. Lower train.lr, check the features for NaN/inf, or try train.amp=none.")
    total_sum, count, correct = values[-3:]
    return stop, total_sum / max(count, 1), correct / max(count, 1)


@dataclass
class EpochOutcome:
    """How a training epoch ended: ``steps_done`` batches of this rank; ``interrupted`` if asked to stop."""
    steps_done: int
    interrupted: bool


def train_epoch(ctx: StepContext, loader, totals: EpochTotals, epoch: int, start_step: int, total_steps: int,
                interrupt, dist_ctx, show_progress: bool) -> EpochOutcome:
    """Train on ``loader``'s batches (this rank's, from ``start_step`` on), accumulating into ``totals``.

    Stops early, at a step boundary that all ranks agree on, when ``interrupt.requested`` is set.
    """
    ctx.model.train()
    step = start_step
    bar = progress(total=total_steps, initial=start_step, desc=f"epoch {epoch} train", unit="batch",
               disable=not show_progress, dynamic_ncols=True, leave=False)
    try:
        for batch in loader:
            batch = batch_to_device(batch, ctx.device)
            losses, logits = train_step(ctx, batch)
            totals.add(losses, logits, batch, step)
            step += 1
            bar.update(1)
            stop_now = interrupt.requested and not dist_ctx.is_distributed
            if step % SYNC_EVERY == 0 or stop_now:
                stop, mean_total, accuracy = check_status(totals, epoch, interrupt.requested, dist_ctx)
                head = totals.answer_head  # shows e.g. mse=0.812 (lower is better) or acc=41.3%
                shown = f"{accuracy:.3f}" if head.lower_is_better else f"{100 * accuracy:.1f}%"
                bar.set_postfix(loss=f"{mean_total:.4f}", **{head.metric.lower()[:3]: shown})
                if stop and step < total_steps:
                    return EpochOutcome(steps_done=step, interrupted=True)
        check_status(totals, epoch, False, dist_ctx)
    finally:
        bar.close()
    return EpochOutcome(steps_done=step, interrupted=False)


@dataclass
class EvalResult:
    """Scores (accuracy or MSE per category), per-question mean losses and predictions (N,) (numpy, split order:
    answer ids, candidate indices or rounded counts) of one pass over a split."""
    accuracy: SplitAccuracy
    losses: dict
    predictions: np.ndarray


@torch.no_grad()
def evaluate(model, teacher, loader, split: QuestionSplit, objective: Objective, device, amp_dtype, dist_ctx,
             show_progress: bool = False, desc: str = "eval") -> EvalResult:
    """Predict every question of ``split`` (shared across ranks) and compute its losses and scores."""
    model.eval()
    totals = EpochTotals(len(split), device, objective.part_names, split.head, split.unanswerable)
    for step, batch in enumerate(progress(loader, desc=desc, unit="batch", disable=not show_progress,
                                      dynamic_ncols=True, leave=False)):
        batch = batch_to_device(batch, device)
        out, losses = forward(model, teacher, batch, objective, device, amp_dtype)
        totals.add(losses, out.logits, batch, step)
    totals.reduce(dist_ctx)
    accuracy = split_scores(totals.predictions, split, device)
    losses = totals.mean_losses()
    if not all(math.isfinite(v) for v in losses.values()):
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        raise NonFiniteLossError(f"non-finite {desc} loss part(s) {', '.join(bad)}: the model produces NaN/inf "
                                 "on this split (check its features for NaN/inf)")
    return EvalResult(accuracy=accuracy, losses=losses, predictions=totals.predictions.cpu().numpy())


def split_scores(predictions: torch.Tensor, split: QuestionSplit, device) -> SplitAccuracy:
    """The metric of ``predictions`` (N,) on ``split``, per category and group (one host sync)."""
    answers = torch.from_numpy(split.answers).to(device)
    types = torch.from_numpy(split.types).to(device)
    return score_by_category(predictions, answers, types, split.category_names, split.category_groups or {},
                             split.metric, unanswerable=split.unanswerable, head=split.head)
