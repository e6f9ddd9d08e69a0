"""Launching a sweep's runs: here (in this process, or one subprocess per visible GPU) or as Slurm jobs.

Teachers are launched first and waited for; the students, which read the teachers' best.pt, follow. A finished run
is skipped and an interrupted one resumed (``sweep_plan.prepare``), so relaunching completes a sweep.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from training.sweep_plan import Plan, Run, SweepError, prepare
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
    import train
    for run, args in todo:
        print(f"[sweep] {describe(run, args)}", flush=True)
        train.run(args)


def run_on_gpus(jobs: list[Job], gpu_ids: list[str], poll_seconds: float = 0.5) -> list[Job]:
    """Run ``jobs`` as subprocesses from the repository root, one per GPU id at a time (CUDA_VISIBLE_DEVICES set to
    that id, output to the job's log). Returns the jobs that failed."""
    queue, free, running, failed = list(jobs), list(gpu_ids), {}, []
    while queue or running:
        while queue and free:
            job, gpu = queue.pop(0), free.pop(0)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            log = open(job.log, "w")
            print(f"[sweep] {job.label} on GPU {gpu}; log: {job.log}", flush=True)
            proc = subprocess.Popen(job.command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "CUDA_VISIBLE_DEVICES": gpu})
            running[proc] = (job, gpu, log)
        time.sleep(poll_seconds)
        for proc in [p for p in running if p.poll() is not None]:
            job, gpu, log = running.pop(proc)
            log.close()
            free.append(gpu)
            if proc.returncode != 0:
                failed.append(job)
    return failed


def _jobs(todo: list[tuple[Run, list[str]]], out: Path) -> list[Job]:
    return [Job(describe(run, args), [sys.executable, str(TRAIN_SCRIPT), *args], out / "logs" / f"{run.folder}.log")
            for run, args in todo]


def launch_local(plan: Plan, gpu_ids: list[str] | None = None) -> None:
    """Teachers, then students: in this process (fewer than two GPUs), else one subprocess per GPU at once."""
    gpu_ids = visible_gpus() if gpu_ids is None else gpu_ids
    for runs in (plan.teachers, plan.students):
        todo = pending(runs, plan.out)
        if len(gpu_ids) < 2:
            run_in_process(todo)
            continue
        failed = run_on_gpus(_jobs(todo, plan.out), gpu_ids)
        if failed:
            raise SweepError("runs failed (their logs say why; rerun the sweep to retry): " +
                             ", ".join(f"{job.label} -> {job.log}" for job in failed))


def launch_slurm(plan: Plan, options: SlurmOptions) -> None:
    """Submit each unfinished run as a Slurm job (submitit); wait for the teachers' jobs before submitting the
    students', and for those before returning. Job logs: <out>/slurm/<job id>_*."""
    try:
        import submitit
    except ImportError:
        raise SweepError("--launcher slurm needs submitit: pip install submitit") from None
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
