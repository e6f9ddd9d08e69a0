"""torchrun with 2 CPU processes (gloo): DistributedDataParallel training that finishes and writes results once."""
import json
import os
import subprocess
import sys

import pytest
import torch

import validate
from train_fixtures import write_config, write_tiny_dataset
from training.trainer import per_process_batch_size, run_training
from utils.config import ConfigError, REPO_ROOT
from training.run_schema import load_config

pytestmark = pytest.mark.usefixtures("single_thread")


def test_two_process_gloo_run_writes_results_once(tmp_path):
    data = write_tiny_dataset(tmp_path / "data", per_video=5)
    cfg = write_config(tmp_path / "tiny.yml", data, tmp_path / "results")
    assert load_config(cfg).dataset.questions_per_video == 0  # the default protocol: dropout masks per question
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py",
               "--cfg", str(cfg), "--exp_name", "ddp", "--device", "cpu"]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "results/ddp"
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert len(summaries) == 2, proc.stdout  # one line per epoch: only rank 0 logs
    log_lines = (run_dir / "train.log").read_text().splitlines()
    assert sum("test accuracy of the best checkpoint" in line for line in log_lines) == 1
    assert not list(run_dir.glob(".*tmp*")) and not (run_dir / "run.lock").exists()  # rank 0 released it

    rows = json.loads((run_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and not any(k.startswith("module.") for k in ckpt["model"])
    # all-reduced metrics: the val accuracy logged for the best epoch equals a single-process evaluation of best.pt
    best = torch.load(run_dir / "best.pt", weights_only=True)
    single = validate.run(["--ckpt", str(run_dir / "best.pt"), "--split", "val"])
    assert single["accuracy"]["all"] == pytest.approx(best["best_metric"])
    assert single["accuracy"]["count"] == 20
    results = json.loads((run_dir / "test_results.json").read_text())
    assert results["count"] == 20 and sum(results["counts"].values()) == 20

    # train.batch_size is the global batch: 2 processes take as many optimiser steps as 1 process does
    run_training(load_config(cfg, ["exp_name=single"]))
    single_ckpt = torch.load(tmp_path / "results/single/last.pt", weights_only=True)
    assert optimizer_steps(ckpt) == optimizer_steps(single_ckpt) == 2 * 7  # 2 epochs of ceil(50 / 8) batches


def optimizer_steps(ckpt: dict) -> int:
    return int(ckpt["optimizer"]["state"][0]["step"])


def test_global_batch_must_divide_among_processes():
    cfg = load_config(None, ["train.batch_size=10"])
    assert per_process_batch_size(cfg, 2) == 5
    with pytest.raises(ConfigError, match="train.batch_size"):
        per_process_batch_size(cfg, 4)
