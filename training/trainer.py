"""The training run: set-up from the config, the epoch loop, checkpoints, results, and the final test.

``run_training(cfg, resume=False)`` is what ``train.py`` calls (one process, or each torchrun process).
Results go to ``<dataset.save_dir>/<exp_name>/`` (see train.py's --help for the layout).
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from model import build_model
from model.cpu_ops import set_cpu_fast_path
from model.losses import loss_term, objective_for
from model.registry import architecture, model_spec
from preprocess.question_file import first_nonfinite_row
from training import distributed
from training.checkpoint import (CHECKPOINT_VERSION, CheckpointError, build_checkpoint_model, capture_rng_state,
                                 check_against_data, check_model_fits_memory, load_checkpoint, restore_rng_state,
                                 save_checkpoint)
from training.data import DataError, build_loader, inverse_vocab, load_data, resolve_path
from training.engine import CompiledWithFallback, EpochTotals, StepContext, evaluate, train_epoch
from training.log import get_logger, paint, setup_logging
from training.metrics import accuracy_by_type
from training.plots import plot_run
from training.reporting import best_test_epoch, epoch_record, summary_line, write_history, write_test_results
from training.run_checks import check_student_smaller, resume_differences
from training.run_dir import RunFolderError, RunLock, check_start, clear_run_outputs
from training.samplers import VideoGroupedBatchSampler
from utils.atomic import OutputWriteError, atomic_write
from utils.config import ConfigError, REPO_ROOT, check_ranges, save_config, to_dict

MODES = ("teacher", "student", "kd")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingInterrupted(Exception):
    """The run stopped on Ctrl-C / SIGTERM after saving last.pt; the message says how to resume."""


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a request to stop at the next safe point; a second Ctrl-C aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, _frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        get_logger().warning(f"\n{signal.Signals(signum).name}: finishing the current step, then saving last.pt "
                             "(Ctrl-C again to abort without saving)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# ---------------------------------------------------------------------------------------------- set-up helpers
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def configure_determinism(enabled: bool) -> None:
    """``train.deterministic``: deterministic algorithms (warning on ops that have none) and cuDNN settings."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    if enabled != torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(enabled, warn_only=True)


def run_dir_for(cfg) -> Path:
    return resolve_path(cfg.dataset.save_dir, REPO_ROOT) / cfg.exp_name


def resolve_mode(cfg) -> str:
    """The run's mode; a teacher checkpoint with mode teacher means a distilled student (base.yml)."""
    mode = cfg.train.mode
    if mode not in MODES:
        raise ConfigError(f"config key 'train.mode' must be one of {', '.join(MODES)}, got '{mode}'")
    ckpt = cfg.distill.teacher_ckpt
    if mode == "teacher" and ckpt:
        get_logger().info(f"teacher checkpoint given ({ckpt}): training a distilled student (train.mode=kd)")
        mode = "kd"
    elif mode == "student" and ckpt:
        get_logger().info("train.mode=student: distill.teacher_ckpt is ignored (no distillation)")
    if mode == "kd" and not ckpt:
        raise ConfigError("train.mode=kd needs a teacher checkpoint: set config key 'distill.teacher_ckpt' or pass "
                          "--teacher_ckpt PATH (e.g. results/<teacher exp_name>/best.pt)")
    cfg.train.mode = mode
    return mode


def amp_dtype_for(cfg, device: torch.device) -> torch.dtype | None:
    if cfg.train.amp not in AMP_DTYPES:
        raise ConfigError(f"config key 'train.amp' must be one of {', '.join(AMP_DTYPES)}, got '{cfg.train.amp}'")
    amp_dtype = AMP_DTYPES[cfg.train.amp]
    if amp_dtype is not None and device.type != "cuda":
        get_logger().warning(f"train.amp={cfg.train.amp} needs a CUDA device; running in float32 on {device}")
        return None
    return amp_dtype


def load_teacher(path: Path, source: str, cfg, signature, device: torch.device, objective) -> torch.nn.Module:
    """The frozen teacher (eval mode, no gradients) from its checkpoint, built from the checkpoint's own model name
    and config; the model-config keys the objective's teacher terms need equal (``same_config``) are checked."""
    if not path.is_file():
        raise CheckpointError(f"teacher checkpoint not found: {path} (from {source}); train the teacher first, e.g. "
                              "python train.py --cfg configs/msvd_qa_teacher.yml")
    ckpt = load_checkpoint(path, source)
    shared = {key for name in objective.teacher_terms for key in loss_term(name).same_config}
    check_against_data(ckpt, signature, path, source, model_dims={key: cfg.model.get(key) for key in sorted(shared)})
    objective.check_outputs(model_spec(cfg.model.name).output_fields,
                            model_spec(ckpt["model_config"].get("name")).output_fields)
    teacher = build_checkpoint_model(ckpt, path, source)
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


def build_student(cfg, bundle) -> torch.nn.Module:
    """The model being trained, GloVe-initialised when ``model.glove`` is true."""
    sig = bundle.signature
    if sig.appearance_dim != cfg.model.vision_dim or sig.motion_dim != cfg.model.vision_dim:
        raise DataError(f"model.vision_dim is {cfg.model.vision_dim} but the features are {sig.appearance_dim}-d "
                        f"(appearance, dataset.appearance_feat) and {sig.motion_dim}-d (motion, "
                        "dataset.motion_feat)")
    check_model_fits_memory(cfg.model, sig.num_question_tokens, sig.num_answers,
                            f"config section 'model' with {sig.num_question_tokens} question tokens", ConfigError)
    model = build_model(cfg.model, sig.num_question_tokens, sig.num_answers)
    if cfg.model.glove and not hasattr(model, "load_glove"):
        raise ConfigError(f"model.glove is true but model '{cfg.model.name}' has no word embedding to load GloVe "
                          "into: set model.glove=false")
    if cfg.model.glove:
        source = f"{bundle.glove_source} (config key 'dataset.train_question_pt')"
        if bundle.glove is None:
            raise DataError(f"{source} holds no 'glove' matrix but model.glove is true; set model.glove=false to "
                            "start from random word embeddings")
        rows, dim = bundle.glove.shape
        if dim != cfg.model.word_dim:
            raise DataError(f"{source}: the GloVe matrix is {dim}-d but model.word_dim is {cfg.model.word_dim} "
                            f"(set model.word_dim={dim})")
        if rows != sig.num_question_tokens:
            raise DataError(f"{source}: the GloVe matrix has {rows} rows but the vocabulary (dataset.vocab_json) "
                            f"has {sig.num_question_tokens} question tokens")
        bad = first_nonfinite_row(bundle.glove)
        if bad is not None:
            raise DataError(f"{source}: row {bad} of the GloVe matrix (question token "
                            f"{inverse_vocab(bundle.vocab['question_token_to_idx'])[bad]!r}) holds NaN or inf")
        model.load_glove(bundle.glove)
    return model


def per_process_batch_size(cfg, world_size: int) -> int:
    """``train.batch_size`` is the global batch: each of ``world_size`` processes takes an equal share."""
    batch_size = cfg.train.batch_size
    if batch_size < 1 or batch_size % world_size:
        raise ConfigError(f"config key 'train.batch_size' ({batch_size}) is the global batch and must be a positive "
                          f"multiple of the number of processes ({world_size})")
    return batch_size // world_size


def _check_resume_config(ckpt: dict, cfg, mode: str, path: Path) -> None:
    """CheckpointError naming every config key that differs from the checkpoint's config, except the keys that
    may change on resume (run_checks.RESUME_MAY_CHANGE), which are logged. ``cfg`` is resolved (mode, teacher)."""
    problems = []
    if ckpt.get("mode") != mode:
        problems.append(f"train.mode: checkpoint {ckpt.get('mode')} vs this run {mode}")
    current, saved = architecture(cfg.model), architecture(ckpt["model_config"])
    for key in sorted(set(current) | set(saved)):
        if current.get(key) != saved.get(key):
            problems.append(f"model.{key}: checkpoint {saved.get(key)} vs this run {current.get(key)}")
    allowed = []
    if isinstance(ckpt.get("config"), dict):
        refused, allowed = resume_differences(ckpt["config"], cfg)
        problems += [line for line in refused if not line.startswith(("model.", "train.mode:"))]
    if problems:
        raise CheckpointError(f"cannot resume from {path}: the run's config changed (start a new --exp_name, or "
                              "--overwrite to start this one over):\n  - " + "\n  - ".join(problems))
    for line in allowed:
        get_logger().info(f"resume: {line} (this key may change on resume)")


def _agree(flag: bool, dist_ctx) -> bool:
    """True on every rank if it is True on any rank."""
    if not dist_ctx.is_distributed:
        return flag
    value = torch.tensor([float(flag)], device=dist_ctx.device)
    return bool(distributed.all_reduce_(value, dist_ctx, "max").item())


# ---------------------------------------------------------------------------------------------- the run
class _Run:
    """State of one training run (one process of it)."""

    def __init__(self, cfg, resume: bool, overwrite: bool, dist_ctx):
        """Everything that can fail on bad input (config, run folder state, data, teacher, resume checkpoint) is
        checked before the run folder is touched; then the folder is locked (rank 0) and written."""
        self.cfg = cfg
        self.dist = dist_ctx
        self.device = dist_ctx.device
        self.run_dir = run_dir_for(cfg)
        self.log = setup_logging(dist_ctx.is_main)  # console only until the run folder is ours
        self.show_progress = dist_ctx.is_main  # a bar on a terminal, timed lines in logs (utils.progress)
        self.mode = resolve_mode(cfg)
        self.objective = objective_for(cfg, self.mode)
        self.objective.check_outputs(model_spec(cfg.model.name).output_fields, None)
        set_cpu_fast_path(cfg.model.cpu_fast_path)
        self.amp_dtype = amp_dtype_for(cfg, self.device)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 matmuls for float32 work (Ampere and newer)
        configure_determinism(cfg.train.deterministic)
        self.last_path, self.best_path = self.run_dir / "last.pt", self.run_dir / "best.pt"
        check_start(self.run_dir, resume, overwrite)
        self.teacher_path = None
        if self.mode == "kd":
            self.teacher_path = resolve_path(cfg.distill.teacher_ckpt, REPO_ROOT)
            cfg.distill.teacher_ckpt = str(self.teacher_path)
        resume_ckpt = load_checkpoint(self.last_path, "--resume") if resume else None
        if resume_ckpt is not None:
            _check_resume_config(resume_ckpt, cfg, self.mode, self.last_path)

        self.bundle = load_data(cfg, device=self.device, show_progress=self.show_progress)
        self.lock = RunLock(self.run_dir)
        try:
            self._set_up(resume_ckpt, overwrite)
        except BaseException:
            self.close()
            raise

    def _set_up(self, resume_ckpt: dict | None, overwrite: bool) -> None:
        """Model, teacher, optimiser and resume state; then the run folder (locked, rank 0) and the loaders."""
        cfg, dist_ctx = self.cfg, self.dist
        self.signature = self.bundle.signature
        seed_everything(cfg.seed)  # the same initial weights for a given seed, with or without a teacher
        self.model = build_student(cfg, self.bundle).to(self.device)
        self.teacher = None
        if self.mode == "kd":
            self.teacher = load_teacher(self.teacher_path, "config key 'distill.teacher_ckpt' / --teacher_ckpt",
                                        cfg, self.signature, self.device, self.objective)
            check_student_smaller(self.model, self.teacher, cfg, self.teacher_path)
        torch.manual_seed(cfg.seed + dist_ctx.rank)  # dropout streams differ per rank, the model init does not
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.train.lr)
        decay_every = cfg.train.lr_decay_every
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=max(decay_every, 1), gamma=cfg.train.lr_decay_factor if decay_every else 1.0)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.completed_epochs, self.best_metric, self.best_epoch, self.history = 0, -1.0, 0, []
        self.resume_step, self.resume_partial = 0, None
        if resume_ckpt is not None:
            self._restore(resume_ckpt)

        self._claim_run_dir(overwrite)
        if dist_ctx.is_main:
            self.log = setup_logging(True, self.run_dir / "train.log")
            if resume_ckpt is not None:
                self._repair_after_crash(resume_ckpt)
            save_config(cfg, self.run_dir / "config.yaml")
        self._build_step_context()

    def close(self) -> None:
        """Release the run folder's lock and the data files."""
        self.bundle.close()
        self.lock.release()

    def _build_step_context(self) -> None:
        cfg, dist_ctx = self.cfg, self.dist
        forward_model = CompiledWithFallback(self.model) if cfg.train.compile else self.model
        self.eval_model = forward_model
        if dist_ctx.is_distributed:
            forward_model = torch.nn.parallel.DistributedDataParallel(
                forward_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.step_ctx = StepContext(model=forward_model, teacher=self.teacher, optimizer=self.optimizer,
                                    scaler=self.scaler, objective=self.objective, device=self.device,
                                    amp_dtype=self.amp_dtype, grad_clip=cfg.train.grad_clip,
                                    share_video_dropout=cfg.dataset.questions_per_video > 0)
        self._build_loaders()

    def _claim_run_dir(self, overwrite: bool) -> None:
        """Rank 0 takes the run folder's lock (and, with --overwrite, removes the earlier run's files); every rank
        raises if that failed."""
        error = None
        if self.dist.is_main:
            try:
                self.lock.acquire()
                if overwrite:
                    removed = clear_run_outputs(self.run_dir)
                    if removed:
                        self.log.warning(f"--overwrite: removed the earlier run's {', '.join(removed)} from "
                                         f"{self.run_dir}")
            except (RunFolderError, OutputWriteError) as e:
                error = e
        if _agree(error is not None, self.dist):
            raise error or RunFolderError(f"rank 0 could not take the run folder {self.run_dir}")

    def _repair_after_crash(self, ckpt: dict) -> None:
        """Bring the files written after last.pt up to date with it (a crash may have stopped the run between
        writes): best.pt must hold last.pt's best epoch, metrics and plots its history."""
        best_epoch = ckpt["best_epoch"]
        if best_epoch:
            found = self._epoch_of(self.best_path)
            if found != best_epoch:
                holds = "is missing or unreadable" if found is None else f"holds epoch {found}"
                if ckpt["epoch"] == best_epoch and not ckpt.get("step_in_epoch"):
                    self.log.warning(f"{self.best_path} {holds}, but the best epoch is {best_epoch} (the run stopped "
                                     "before writing it): restoring it from last.pt")
                    best_bytes = self.last_path.read_bytes()
                    with atomic_write(self.best_path) as f:
                        f.write(best_bytes)
                else:
                    raise CheckpointError(
                        f"{self.best_path} {holds} but {self.last_path} names epoch {best_epoch} as the best, and "
                        "that model is in neither file: the best checkpoint is lost; start over with --overwrite")
        if self.history:
            write_history(self.history, self.run_dir)
            plot_run(self.history, self.run_dir, teacher_terms=self.objective.teacher_terms if self.teacher else ())

    @staticmethod
    def _epoch_of(path: Path):
        """The epoch a checkpoint holds, or None if it is missing or unreadable."""
        if not path.is_file():
            return None
        try:
            return load_checkpoint(path, "the run's best.pt")["epoch"]
        except CheckpointError:
            return None

    def _restore(self, ckpt: dict) -> None:
        check_against_data(ckpt, self.signature, self.last_path, "--resume")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.completed_epochs, self.history = ckpt["epoch"], list(ckpt["history"])
        self.best_metric, self.best_epoch = ckpt["best_metric"], ckpt["best_epoch"]
        self.resume_step = ckpt.get("step_in_epoch", 0)
        self.resume_partial = ckpt.get("partial_epoch") or None
        if self.resume_step and ckpt.get("world_size", 1) != self.dist.world_size:
            raise CheckpointError(f"{self.last_path} was saved mid-epoch by {ckpt.get('world_size', 1)} process(es); "
                                  f"resume it with the same number of processes (now {self.dist.world_size})")
        restore_rng_state(ckpt["rng"])
        where = (f"epoch {self.completed_epochs + 1}, step {self.resume_step}" if self.resume_step
                 else f"the end of epoch {self.completed_epochs}")
        self.log.info(paint(f"resuming {self.last_path} from {where}", "cyan"))

    def _build_loaders(self) -> None:
        cfg, d = self.cfg, self.dist
        splits = self.bundle.splits
        batch_size = per_process_batch_size(cfg, d.world_size)
        self.train_sampler = VideoGroupedBatchSampler(
            splits["train"].video_key, batch_size, cfg.dataset.questions_per_video, shuffle=True,
            seed=cfg.seed, rank=d.rank, world_size=d.world_size)
        self.loaders = {"train": build_loader(self.bundle.dataset("train"), self.train_sampler,
                                              cfg.dataset.num_workers, self.device, cfg.seed)}
        for split in ("val", "test"):
            sampler = VideoGroupedBatchSampler(splits[split].video_key, batch_size, shuffle=False,
                                               rank=d.rank, world_size=d.world_size)
            self.loaders[split] = build_loader(self.bundle.dataset(split), sampler, cfg.dataset.num_workers,
                                               self.device, cfg.seed)

    def _payload(self, epoch: int, step_in_epoch: int = 0, partial: dict | None = None) -> dict:
        return {
            "format_version": CHECKPOINT_VERSION, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
            "partial_epoch": partial or {}, "world_size": self.dist.world_size, "rng": capture_rng_state(),
            "mode": self.mode, "model_config": to_dict(self.cfg.model), "config": to_dict(self.cfg),
            "teacher_ckpt": str(self.teacher_path) if self.teacher_path else None,
            **self.signature.to_dict(), "best_metric": self.best_metric, "best_epoch": self.best_epoch,
            "history": list(self.history),
        }

    def _evaluate(self, split: str, teacher=None):
        distributed.broadcast_buffers_(self.eval_model, self.dist)
        objective = self.objective if teacher is not None else objective_for(self.cfg, "student")
        return evaluate(self.eval_model, teacher, self.loaders[split], self.bundle.splits[split], objective,
                        self.device, self.amp_dtype, self.dist,
                        show_progress=self.show_progress, desc=f"{split}")

    def log_start(self) -> None:
        splits = self.bundle.splits
        params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.log.info(paint(f"{self.cfg.exp_name}: {self.mode} | {params:,} trainable parameters | "
                            f"{len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])} train/val/test "
                            f"questions | {self.dist.world_size} process(es) on {self.device} | results in "
                            f"{self.run_dir}", "cyan", bold=True))
        for split in ("val", "test"):
            self.log.info(f"{split} scoring: {splits[split].scoring_note()}")

    def _epoch_test_accuracy(self) -> float | None:
        """``eval.test_every_epoch``: the current model's test accuracy (for the test-selected figure), else None."""
        if not self.cfg.eval.test_every_epoch:
            return None
        return self._evaluate("test").accuracy.overall

    def train(self, writer) -> None:
        cfg = self.cfg
        train_split = self.bundle.splits["train"]
        answers = torch.from_numpy(train_split.answers).to(self.device)
        types = torch.from_numpy(train_split.types).to(self.device)
        with StopRequest() as stop:
            for epoch in range(self.completed_epochs + 1, cfg.train.max_epochs + 1):
                start_step, partial = self._take_resume_point()
                self.train_sampler.set_epoch(epoch, start_step)
                totals = EpochTotals(len(train_split), self.device, self.objective.part_names)
                if start_step and partial:
                    totals.load_state_dict(partial)
                started = time.time()
                lr = self.optimizer.param_groups[0]["lr"]
                outcome = train_epoch(self.step_ctx, self.loaders["train"], totals, epoch, start_step,
                                      self.train_sampler.batches_per_rank, stop, self.dist, self.show_progress)
                if outcome.interrupted:
                    if self.dist.is_main:
                        save_checkpoint(self._payload(epoch - 1, outcome.steps_done, totals.state_dict()),
                                        self.last_path)
                    distributed.barrier(self.dist)
                    raise TrainingInterrupted(f"stopped in epoch {epoch} after step {outcome.steps_done}")
                totals.reduce(self.dist)
                train_losses = totals.mean_losses()
                train_acc = accuracy_by_type(totals.predictions, answers, types).overall
                val = self._evaluate("val", self.teacher)
                self.scheduler.step()
                is_best = val.accuracy.overall > self.best_metric
                if is_best:
                    self.best_metric, self.best_epoch = val.accuracy.overall, epoch
                row = epoch_record(epoch, lr, time.time() - started, train_losses, train_acc, val.losses,
                                   val.accuracy, is_best)
                row["test_acc"] = self._epoch_test_accuracy()
                self.history.append(row)
                self.completed_epochs = epoch
                if self.dist.is_main:
                    self._write_epoch(row, is_best, writer)
                distributed.barrier(self.dist)
                if _agree(stop.requested, self.dist) and epoch < cfg.train.max_epochs:
                    raise TrainingInterrupted(f"stopped after epoch {epoch}")

    def _take_resume_point(self) -> tuple[int, dict | None]:
        """(first step, running sums) of the next epoch: the interrupted step for the first epoch after a mid-epoch
        resume, (0, None) for every other epoch."""
        point = (self.resume_step, self.resume_partial)
        self.resume_step, self.resume_partial = 0, None
        return point

    def _write_epoch(self, row: dict, is_best: bool, writer) -> None:
        """An epoch's files, in an order that a crash between any two writes cannot corrupt: TensorBoard first
        (a resume purges the steps after last.pt), then last.pt (what --resume continues from), then best.pt,
        metrics and plots (a resume rewrites them from last.pt, see _repair_after_crash)."""
        for key, value in row.items():
            if key not in ("epoch", "best") and value is not None:
                writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
        writer.flush()
        payload = self._payload(row["epoch"])
        save_checkpoint(payload, self.last_path)
        if is_best:
            save_checkpoint(payload, self.best_path)
        write_history(self.history, self.run_dir)
        plot_run(self.history, self.run_dir, teacher_terms=self.objective.teacher_terms if self.teacher else ())
        self.log.info(summary_line(row, self.cfg.train.max_epochs, self.objective.weights))

    def test(self, writer) -> dict:
        """Evaluate the best checkpoint on the test split; write test_results.{json,md} (rank 0)."""
        if not self.best_path.is_file():
            raise CheckpointError(f"no best checkpoint at {self.best_path}: no epoch finished (train.max_epochs is "
                                  f"{self.cfg.train.max_epochs})")
        best = load_checkpoint(self.best_path, "the run's best.pt")
        if best["epoch"] != self.best_epoch:
            raise CheckpointError(f"{self.best_path} holds epoch {best['epoch']}, but the run's best epoch is "
                                  f"{self.best_epoch}: the file was replaced outside this run")
        self.model.load_state_dict(best["model"])
        result = self._evaluate("test")
        test_selected = best_test_epoch(self.history)
        if self.dist.is_main:
            table = write_test_results(self.run_dir, result.accuracy, best["best_epoch"], best["best_metric"],
                                       self.best_path, self.bundle.splits["test"].scoring(), test_selected)
            for name, value in result.accuracy.by_type().items():
                if value is not None:
                    writer.add_scalar(f"test/acc_{name}", value, best["best_epoch"])
            writer.add_scalar("test/acc", result.accuracy.overall, best["best_epoch"])
            self.log.info(paint(f"test accuracy of the best checkpoint (epoch {best['best_epoch']}, val "
                                f"{100 * best['best_metric']:.2f}%):", "green", bold=True) + "\n" + table)
            if test_selected:
                self.log.info(f"{test_selected['label']}: {100 * test_selected['accuracy']:.2f}% at epoch "
                              f"{test_selected['epoch']}")
            self.log.info(f"results: {self.run_dir}")
        return {"run_dir": str(self.run_dir), "mode": self.mode, "best_epoch": best["best_epoch"],
                "best_val_acc": best["best_metric"], "test": result.accuracy.to_dict(),
                "test_selected": test_selected, "history": self.history}


def run_training(cfg, resume: bool = False, overwrite: bool = False) -> dict:
    """Train (or resume) the run that ``cfg`` describes, then test its best checkpoint. Returns a summary dict.

    ``overwrite``: start over in a run folder that holds an earlier run (its files are removed first).
    Raises ConfigError / DataError / CheckpointError on bad input, RunFolderError when the run folder is in use
    or would be replaced without --overwrite, OutputWriteError when it cannot be written,
    engine.NonFiniteLossError on NaN/inf losses, TrainingInterrupted after saving last.pt on Ctrl-C / SIGTERM.
    """
    check_ranges(to_dict(cfg))
    dist_ctx = distributed.setup(cfg.device)
    run = None
    writer = None
    try:
        run = _Run(cfg, resume, overwrite, dist_ctx)
        if dist_ctx.is_main:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(log_dir=str(run.run_dir / "tensorboard"),
                                   purge_step=run.completed_epochs + 1)  # drops events of epochs not in last.pt
        run.log_start()
        run.train(writer)
        return run.test(writer)
    finally:
        if writer is not None:
            writer.close()
        if run is not None:
            run.close()
        distributed.cleanup()
