"""Checkpoints written by earlier versions keep working: validate.py, --teacher_ckpt and --resume."""
import shutil
from pathlib import Path

import pytest
import torch

import train
import validate
from train_fixtures import write_config, write_tiny_dataset

pytestmark = pytest.mark.usefixtures("single_thread")
FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_v1_teacher.pt"


@pytest.fixture()
def tiny(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    return tmp_path, data


def test_v1_checkpoint_evaluates_in_validate(tiny):
    root, data = tiny
    cfg = write_config(root / "tiny.yml", data, root / "results")
    result = validate.run(["--ckpt", str(FIXTURE), "--cfg", str(cfg), "--split", "test"])
    assert result["parameters"] == sum(t.numel() for k, t in
                                       torch.load(FIXTURE, weights_only=True)["model"].items()
                                       if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert 0.0 <= result["accuracy"]["all"] <= 1.0


def test_v1_checkpoint_is_a_teacher(tiny):
    root, data = tiny
    cfg = write_config(root / "tiny.yml", data, root / "results", exp_name="kd", train={"max_epochs": 1})
    summary = train.run(["--cfg", str(cfg), "--graph_layers", "1", "--teacher_ckpt", str(FIXTURE)])
    distillation = {k: v for k, v in summary["history"][0].items() if k.startswith("train_kd_")}
    assert distillation and all(v > 0 for v in distillation.values())


def test_v1_checkpoint_resumes(tiny):
    root, data = tiny
    cfg = write_config(root / "tiny.yml", data, root / "results", exp_name="fixture", dataset_name="tiny",
                       train={"max_epochs": 2})  # its config names dataset "tiny" (registered by train_fixtures)
    run_dir = root / "results" / "fixture"
    run_dir.mkdir(parents=True)
    shutil.copy(FIXTURE, run_dir / "last.pt")
    shutil.copy(FIXTURE, run_dir / "best.pt")
    summary = train.run(["--cfg", str(cfg), "--resume"])
    assert [row["epoch"] for row in summary["history"]] == [1, 2]
