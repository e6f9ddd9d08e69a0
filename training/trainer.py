"""The training run: set-up from the config, the epoch loop, checkpoints, results, and the final test.

``run_training(cfg, resume=False)`` is what ``train.py`` calls (one process, or each torchrun process).
Results go to ``<dataset.save_dir>/<exp_name>/`` (see train.py's --help for the layout).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import torch

from model.cpu_ops import set_cpu_fast_path
from model.losses import objective_for
from model.params import count_parameters
from model.registry import model_spec
from training import distributed
from training.builders import build_student, load_teacher
from training.checkpoint import (CHECKPOINT_VERSION, CheckpointError, capture_rng_state, check_against_data,
                                 configure_determinism, load_checkpoint, restore_rng_state, save_checkpoint,
                                 seed_everything)
from training.data import build_loader, load_data, resolve_path
from training.engine import CompiledWithFallback, EpochTotals, StepContext, evaluate, split_scores, train_epoch
from training.evaluation import SplitView
from training.log import paint, setup_logging
from training.metrics import better, get_metric, metric_for
from training.plots import plot_run
from training.reporting import best_test_epoch, epoch_record, summary_line, write_history, write_test_results
from training.run_checks import check_resume_config, check_student_smaller
from training.run_settings import (per_process_batch_size, resolve_amp, resolve_feature_dims, resolve_head, resolve_mode,
                                 run_dir_for)
from training.run_dir import RunFolderError, RunLock, StopRequest, check_start, clear_run_outputs
from training.samplers import VideoGroupedBatchSampler
from training.sweep_report import write_run_predictions
from utils.atomic import OutputWriteError, atomic_write, output_error
from utils.config import REPO_ROOT, to_dict
from training.run_schema import check_ranges, save_config


class TrainingInterrupted(Exception):
    """The run stopped on Ctrl-C / SIGTERM after saving last.pt; the message says how to resume."""


class _Run:
    """State of one training run (one process of it)."""

    def __init__(self, cfg, resume: bool, overwrite: bool, dist_ctx):
        """Everything that can fail on bad input (config, run folder state, data, teacher, resume checkpoint) is
        checked before the run folder is touched; then the folder is locked (rank 0) and written."""
        self.cfg, self.dist, self.device = cfg, dist_ctx, dist_ctx.device
        self.run_dir = run_dir_for(cfg)
        self.last_path, self.best_path = self.run_dir / "last.pt", self.run_dir / "best.pt"
        self.resume_notes: list[str] = []  # lines for train.log found before it is open (keys changed on resume)
        self.log = setup_logging(dist_ctx.is_main)  # console only until the run folder is ours
        self.show_progress = dist_ctx.is_main  # a bar on a terminal, timed lines in logs (utils.progress)
        self._apply_config()
        check_start(self.run_dir, resume, overwrite)
        self.teacher_path = self._teacher_checkpoint_path()
        resume_ckpt = self._resume_checkpoint() if resume else None
        self.bundle = load_data(cfg, device=self.device, show_progress=self.show_progress)
        self.lock = RunLock(self.run_dir)
        try:
            self._set_up(resume_ckpt, overwrite)
        except BaseException:
            self.close()
            raise

    def _set_up(self, resume_ckpt: dict | None, overwrite: bool) -> None:
        """Model, teacher, optimiser and resume state; then the run folder (locked, rank 0), the step context and
        the loaders."""
        self.signature = self.bundle.signature
        self.model = self._build_model()
        self.teacher = self._build_teacher()
        torch.manual_seed(self.cfg.seed + self.dist.rank)  # dropout streams differ per rank, the model init does not
        self._build_optimiser()
        self._start_state(resume_ckpt)
        self._claim_run_dir(overwrite)
        if self.dist.is_main:
            self._open_run_files(resume_ckpt)
        self._build_step_context()
        self._build_loaders()

    def close(self) -> None:
        """Release the run folder's lock and the data files."""
        self.bundle.close()
        self.lock.release()

    # ------------------------------------------------------------------------------------------ set-up steps
    def _apply_config(self) -> None:
        """The run's mode and objective, checked; then the process-wide settings the config asks for (CPU fast path,
        autocast dtype, TF32 matmuls on CUDA, deterministic algorithms)."""
        cfg = self.cfg
        self.mode = resolve_mode(cfg)
        self.head = resolve_head(cfg)  # before anything stores or builds the model config
        resolve_feature_dims(cfg)  # likewise: null feature widths -> the feature files'
        self.metric = metric_for(self.head)
        self.objective = objective_for(cfg, self.mode)
        self.objective_without_teacher = objective_for(cfg, "student")  # evaluation without the teacher (test)
        self.objective.check_outputs(model_spec(cfg.model.name).output_fields, None)
        set_cpu_fast_path(cfg.model.cpu_fast_path)
        self.amp_dtype, self.amp_note = resolve_amp(cfg, self.device)
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 matmuls for float32 work (Ampere and newer)
        configure_determinism(cfg.train.deterministic)

    def _teacher_checkpoint_path(self) -> Path | None:
        """kd: the teacher checkpoint's absolute path, written back to the config (saved in the run folder)."""
        if self.mode != "kd":
            return None
        path = resolve_path(self.cfg.distill.teacher_ckpt, REPO_ROOT)
        self.cfg.distill.teacher_ckpt = str(path)
        return path

    def _resume_checkpoint(self) -> dict:
        """--resume: last.pt, refused if the run's config changed in a key that may not change."""
        ckpt = load_checkpoint(self.last_path, "--resume")
        self.resume_notes = check_resume_config(ckpt, self.cfg, self.mode, self.last_path)
        return ckpt

    def _build_model(self) -> torch.nn.Module:
        """The student on the run's device."""
        seed_everything(self.cfg.seed)  # the same initial weights for a given seed, with or without a teacher
        return build_student(self.cfg, self.bundle).to(self.device)

    def _build_teacher(self) -> torch.nn.Module | None:
        """kd: the frozen teacher, checked to be larger than the student; None otherwise."""
        if self.mode != "kd":
            return None
        teacher = load_teacher(self.teacher_path, "config key 'distill.teacher_ckpt' / --teacher_ckpt",
                               self.cfg, self.signature, self.device, self.objective)
        check_student_smaller(self.model, teacher, self.cfg, self.teacher_path)
        return teacher

    def _build_optimiser(self) -> None:
        """Adam over the trainable parameters, its step learning-rate schedule, and the fp16 gradient scaler."""
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.train.lr)
        decay_every = cfg.train.lr_decay_every
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=max(decay_every, 1), gamma=cfg.train.lr_decay_factor if decay_every else 1.0)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def _start_state(self, resume_ckpt: dict | None) -> None:
        """The progress of a new run, or (--resume) last.pt's progress, weights, optimiser and RNG states."""
        self.completed_epochs, self.best_metric, self.best_epoch, self.history = 0, None, 0, []
        self.resume_step, self.resume_partial = 0, None
        if resume_ckpt is not None:
            self._restore(resume_ckpt)

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
        if distributed.any_rank(error is not None, self.dist):
            raise error or RunFolderError(f"rank 0 could not take the run folder {self.run_dir}")

    def _open_run_files(self, resume_ckpt: dict | None) -> None:
        """Rank 0, once the run folder is locked: log to its train.log, bring the files written after last.pt up to
        date with it (--resume), and save the run's config."""
        self.log = setup_logging(True, self.run_dir / "train.log")
        for line in self.resume_notes:
            self.log.info(line)
        if resume_ckpt is not None:
            self._repair_after_crash(resume_ckpt)
        save_config(self.cfg, self.run_dir / "config.yaml")

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

    # ------------------------------------------------------------------------------------------ the run
    def _payload(self, epoch: int, step_in_epoch: int = 0, partial: dict | None = None) -> dict:
        return {
            "format_version": CHECKPOINT_VERSION, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": epoch, "step_in_epoch": step_in_epoch,
            "partial_epoch": partial or {}, "world_size": self.dist.world_size, "rng": capture_rng_state(),
            "mode": self.mode, "model_config": to_dict(self.cfg.model), "config": to_dict(self.cfg),
            "teacher_ckpt": str(self.teacher_path) if self.teacher_path else None,
            **self.signature.to_dict(), "extraction": self.bundle.extraction, "best_metric": self.best_metric,
            "best_epoch": self.best_epoch, "history": list(self.history),
        }

    def _evaluate(self, split: str, teacher=None):
        distributed.broadcast_buffers_(self.eval_model, self.dist)
        objective = self.objective if teacher is not None else self.objective_without_teacher
        return evaluate(self.eval_model, teacher, self.loaders[split], self.bundle.splits[split], objective,
                        self.device, self.amp_dtype, self.dist,
                        show_progress=self.show_progress, desc=f"{split}")

    def log_start(self) -> None:
        splits = self.bundle.splits
        params = count_parameters(self.model)
        self.log.info(paint(f"{self.cfg.exp_name}: {self.mode} | {self.head} head ({self.metric}) | "
                            f"{params:,} trainable parameters | "
                            f"{len(splits['train'])}/{len(splits['val'])}/{len(splits['test'])} train/val/test "
                            f"questions | {self.dist.world_size} process(es) on {self.device} | results in "
                            f"{self.run_dir}", "cyan", bold=True))
        self.log.info(f"precision: {self.amp_note}")
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
        with StopRequest() as stop:
            for epoch in range(self.completed_epochs + 1, cfg.train.max_epochs + 1):
                start_step, partial = self._take_resume_point()
                self.train_sampler.set_epoch(epoch, start_step)
                totals = EpochTotals(len(train_split), self.device, self.objective.part_names, train_split.head,
                                     train_split.unanswerable)
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
                train_acc = split_scores(totals.predictions, train_split, self.device).overall
                val = self._evaluate("val", self.teacher)
                self.scheduler.step()
                is_best = better(self.metric, val.accuracy.overall, self.best_metric if self.best_epoch else None)
                if is_best:
                    self.best_metric, self.best_epoch = val.accuracy.overall, epoch
                row = epoch_record(epoch, lr, time.time() - started, train_losses, train_acc, val.losses,
                                   val.accuracy, is_best)
                row[f"test_{get_metric(self.metric).key}"] = self._epoch_test_accuracy()
                self.history.append(row)
                self.completed_epochs = epoch
                if self.dist.is_main:
                    self._write_epoch(row, is_best, writer)
                distributed.barrier(self.dist)
                if distributed.any_rank(stop.requested, self.dist) and epoch < cfg.train.max_epochs:
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
        with _tensorboard_errors(self.run_dir):
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
        """Evaluate the best checkpoint on the test split; write test_results.{json,md} and its per-question
        predictions, test_predictions.json (rank 0; training/sweep_report.py reads them)."""
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
            if self.amp_dtype is None and not self.cfg.train.compile:
                # A float32 eager pass is the one validate.py and the sweep make: the sweep reads it instead of
                # evaluating again. A bf16/fp16 or compiled pass can differ by rounding, so those runs are left to
                # the sweep's own float32 evaluation, as before.
                write_run_predictions(self.run_dir, SplitView(self.bundle, "test", self.head), result.predictions,
                                      result.accuracy, count_parameters(self.model))
            spec = get_metric(self.metric)
            for name, value in {**result.accuracy.by_type(), **result.accuracy.by_group()}.items():
                if value is not None:
                    writer.add_scalar(f"test/{spec.key}_{name}", value, best["best_epoch"])
            writer.add_scalar(f"test/{spec.key}", result.accuracy.overall, best["best_epoch"])

            def shown(value: float) -> str:  # 45.67% or 0.123 MSE
                return spec.format(value) + (spec.unit or f" {self.metric}")
            self.log.info(paint(f"test {self.metric} of the best checkpoint (epoch {best['best_epoch']}, val "
                                f"{shown(best['best_metric'])}):", "green", bold=True) + "\n" + table)
            if test_selected:
                self.log.info(f"{test_selected['label']}: {shown(test_selected['accuracy'])} "
                              f"at epoch {test_selected['epoch']}")
            self.log.info(f"results: {self.run_dir}")
        return {"run_dir": str(self.run_dir), "mode": self.mode, "best_epoch": best["best_epoch"],
                "best_val_acc": best["best_metric"], "test": result.accuracy.to_dict(),
                "test_selected": test_selected, "history": self.history}


@contextmanager
def _tensorboard_errors(run_dir: Path):
    """An OSError of TensorBoard's writer (a full disk when it starts or writes) as OutputWriteError naming the
    folder; the checkpoints written so far are intact."""
    try:
        yield
    except OSError as e:
        if isinstance(e, OutputWriteError):
            raise
        raise output_error(run_dir / "tensorboard", e) from None


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
            with _tensorboard_errors(run.run_dir):
                writer = SummaryWriter(log_dir=str(run.run_dir / "tensorboard"),
                                       purge_step=run.completed_epochs + 1)  # drops events of epochs not in last.pt
        run.log_start()
        run.train(writer)
        return run.test(writer)
    finally:
        if writer is not None:
            with _tensorboard_errors(run.run_dir):
                writer.close()
        if run is not None:
            run.close()
        distributed.cleanup()
