"""Launching a sweep's runs: here (in this process, or one subprocess per visible GPU) or as Slurm jobs.

Teachers are launched first and waited for; the students, which read the teachers' best.pt, follow. A finished run
is skipped and an interrupted one resumed (``sweep_plan.prepare``), so relaunching completes a sweep.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from training.sweep_plan import Plan, Run, SweepError, check_finished_runs, prepare
from utils.config import REPO_ROOT

TRAIN_SCRIPT = REPO_ROOT / "train.py"


@dataclass(frozen=True)
class Job:
    """A command to run with its log file (subprocess launchers)."""
    label: str
    command: list[str]
    log: Path


@dataclass(frozen=True)
class SlurmOptions:
    """Slurm resources per run (sweep.py's --slurm_* flags); ``cluster`` "local" runs the jobs through submitit's
    local executor (tests, or a machine without Slurm)."""
    partition: str | None = None
    account: str | None = None
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 32
    time_min: int = 240
    cluster: str = "slurm"


def visible_gpus() -> list[str]:
    """The ids to put in CUDA_VISIBLE_DEVICES, one per GPU this process sees (respects CUDA_VISIBLE_DEVICES)."""
    import torch
    count = torch.cuda.device_count()
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def pending(runs: list[Run], out: Path) -> list[tuple[Run, list[str]]]:
    """(run, train.py arguments) for every run that is not finished yet."""
    todo = [(run, prepare(run, out)) for run in runs]
    return [(run, args) for run, args in todo if args is not None]


def describe(run: Run, args: list[str]) -> str:
    return f"{run.folder} ({'resuming' if '--resume' in args else 'training'})"


def run_in_process(todo: list[tuple[Run, list[str]]]) -> None:
    """Train each run here, one after another; the trainer's errors propagate (the sweep stops at the first)."""
    from training import train_command
    for run, args in todo:
        print(f"[sweep] {describe(run, args)}", flush=True)
        train_command.run(args)


def run_parallel(jobs: list[Job], slots: list[tuple[str, dict]], poll_seconds: float = 0.5) -> list[Job]:
    """Run ``jobs`` as subprocesses from the repository root, one per slot at a time; a slot is (label, environment
    variables it sets: a GPU's CUDA_VISIBLE_DEVICES, or a CPU share's thread count). Each job's output goes to its
    log. Returns the jobs that failed."""
    queue, free, running, failed = list(jobs), list(slots), {}, []
    with _terminate_on_sigterm():
        try:
            while queue or running:
                while queue and free:
                    job, (where, env) = queue.pop(0), free.pop(0)
                    job.log.parent.mkdir(parents=True, exist_ok=True)
                    log = open(job.log, "w")
                    print(f"[sweep] {job.label} on {where}; log: {job.log}", flush=True)
                    proc = subprocess.Popen(job.command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **env})
                    running[proc] = (job, (where, env), log)
                time.sleep(poll_seconds)
                for proc in [p for p in running if p.poll() is not None]:
                    job, slot, log = running.pop(proc)
                    log.close()
                    free.append(slot)
                    if proc.returncode != 0:
                        failed.append(job)
        finally:
            _stop(running)
    return failed


STOP_GRACE_SECONDS = 120  # a training run stops at its next step and saves last.pt; then it is killed


def _stop(running: dict) -> None:
    """Stop the runs still going when the sweep ends early (Ctrl-C, SIGTERM, an error): SIGTERM (each saves
    last.pt), then SIGKILL after STOP_GRACE_SECONDS; no run outlives its sweep."""
    for proc in running:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for proc, (_, _, log) in running.items():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def _terminate_on_sigterm():
    """SIGTERM raises KeyboardInterrupt in the sweep while its subprocesses run (by default it ends Python at
    once, leaving them orphaned); the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def gpu_slots(gpu_ids: list[str]) -> list[tuple[str, dict]]:
    """One slot per GPU: the run sees only that GPU."""
    return [(f"GPU {gpu}", {"CUDA_VISIBLE_DEVICES": gpu}) for gpu in gpu_ids]


def cpu_slots(jobs: int, cores: int | None = None) -> list[tuple[str, dict]]:
    """``jobs`` slots that share the CPU cores: each run gets ``cores // jobs`` threads (at least one) and no GPU.
    Small models use two threads poorly, so two one-thread runs at once finish about twice as fast as one after
    the other (docs/notes.md)."""
    cores = cores or os.cpu_count() or 1
    threads = str(max(1, cores // jobs))
    return [(f"CPU slot {i} ({threads} thread(s))", {"OMP_NUM_THREADS": threads, "CUDA_VISIBLE_DEVICES": ""})
            for i in range(jobs)]


def _jobs(todo: list[tuple[Run, list[str]]], out: Path) -> list[Job]:
    return [Job(describe(run, args), [sys.executable, str(TRAIN_SCRIPT), *args], out / "logs" / f"{run.folder}.log")
            for run, args in todo]


def _run_stage(todo: list[tuple[Run, list[str]]], slots: list[tuple[str, dict]] | None, out: Path) -> None:
    """Train ``todo``: in this process when ``slots`` is None, else as parallel subprocesses over the slots."""
    if slots is None:
        run_in_process(todo)
        return
    failed = run_parallel(_jobs(todo, out), slots)
    if failed:
        raise SweepError("runs failed (their logs say why; rerun the sweep to retry): " +
                         ", ".join(f"{job.label} -> {job.log}" for job in failed))


def launch_local(plan: Plan, gpu_ids: list[str] | None = None, cpu_jobs: int = 1) -> None:
    """Teachers with the plain students (which need no teacher), then the distilled students. On several GPUs one
    subprocess per GPU at once; else, with ``cpu_jobs`` > 1 on a machine without GPUs, that many subprocesses
    sharing the cores; else one run after another in this process."""
    check_finished_runs(plan)
    gpu_ids = visible_gpus() if gpu_ids is None else gpu_ids
    if len(gpu_ids) >= 2:
        slots = gpu_slots(gpu_ids)
    elif cpu_jobs > 1 and not gpu_ids:
        slots = cpu_slots(cpu_jobs)
    else:
        slots = None
    distilled = [run for run in plan.students if run.kind == "kd"]
    first = plan.teachers + [run for run in plan.students if run.kind != "kd"]
    for runs in (first, distilled):
        _run_stage(pending(runs, plan.out), slots, plan.out)


def launch_slurm(plan: Plan, options: SlurmOptions) -> None:
    """Submit each unfinished run as a Slurm job (submitit); wait for the teachers' jobs before submitting the
    students', and for those before returning. Job logs: <out>/slurm/<job id>_*."""
    try:
        import submitit
    except ImportError:
        raise SweepError("--launcher slurm needs submitit: pip install submitit") from None
    check_finished_runs(plan)
    if options.cluster == "slurm" and shutil.which("sbatch") is None:
        raise SweepError("--launcher slurm: no Slurm here (sbatch is not on PATH); use --launcher local, or "
                         "--slurm_cluster local to try the Slurm path without Slurm")
    executor = submitit.AutoExecutor(folder=plan.out / "slurm" / "%j", cluster=options.cluster)
    executor.update_parameters(name="kdvqa-sweep", timeout_min=options.time_min, gpus_per_node=options.gpus_per_node,
                               cpus_per_task=options.cpus_per_task, mem_gb=options.mem_gb,
                               slurm_partition=options.partition, slurm_account=options.account)
    for runs in (plan.teachers, plan.students):
        todo = pending(runs, plan.out)
        jobs = [executor.submit(submitit.helpers.CommandFunction([sys.executable, str(TRAIN_SCRIPT), *args],
                                                                 cwd=REPO_ROOT, verbose=False))
                for _, args in todo]
        for (run, args), job in zip(todo, jobs):
            print(f"[sweep] {describe(run, args)}: job {job.job_id}", flush=True)
        failed = []
        for (run, _), job in zip(todo, jobs):
            try:
                job.result()
            except Exception as e:  # submitit re-raises the job's failure; report every failed run together
                failed.append(f"{run.folder} (job {job.job_id}): {str(e).strip().splitlines()[-1] if str(e) else e}")
        if failed:
            raise SweepError("Slurm jobs failed (logs in " + str(plan.out / "slurm") + "): " + "; ".join(failed))
