"""Resuming gives the uninterrupted result; Ctrl-C saves a resumable state; NaN and mismatches stop cleanly."""
import hashlib
import json
import os
import shutil
import signal

import h5py
import numpy as np
import pytest
import torch

import train
from train_fixtures import write_config, write_tiny_dataset
from training import engine
from training.checkpoint import CheckpointError
from training.engine import NonFiniteLossError
from training.trainer import TrainingInterrupted

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, single_thread):
    root = tmp_path_factory.mktemp("resume")
    data = write_tiny_dataset(root / "data", seed=1)
    cfg = write_config(root / "tiny.yml", data, root / "results",  # the default protocol: per-question masks
                       train={"max_epochs": 2, "lr_decay_every": 1})
    from training.run_schema import load_config
    assert load_config(cfg).dataset.questions_per_video == 0  # random batches, dropout masks drawn per question
    straight = train.run(["--cfg", str(cfg), "--exp_name", "straight"])
    return {"root": root, "data": data, "cfg": str(cfg), "straight": straight}


def _final_state(root, exp):
    return torch.load(root / "results" / exp / "last.pt", weights_only=True)


def _assert_same_run(root, exp_a, exp_b):
    a, b = _final_state(root, exp_a), _final_state(root, exp_b)
    assert a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    assert a["scheduler"] == b["scheduler"]
    rows_a = json.loads((root / "results" / exp_a / "metrics.json").read_text())
    rows_b = json.loads((root / "results" / exp_b / "metrics.json").read_text())
    strip = [{k: v for k, v in row.items() if k != "time_s"} for row in rows_a]
    assert strip == [{k: v for k, v in row.items() if k != "time_s"} for row in rows_b]
    results_a = json.loads((root / "results" / exp_a / "test_results.json").read_text())
    results_b = json.loads((root / "results" / exp_b / "test_results.json").read_text())
    assert results_a["by_type"] == results_b["by_type"]


def test_resume_after_an_epoch_equals_the_uninterrupted_run(setup):
    cfg, root = setup["cfg"], setup["root"]
    train.run(["--cfg", cfg, "--exp_name", "split", "train.max_epochs=1"])
    assert _final_state(root, "split")["epoch"] == 1
    train.run(["--cfg", cfg, "--exp_name", "split", "--resume"])
    _assert_same_run(root, "straight", "split")


def test_ctrl_c_mid_epoch_saves_a_state_that_resumes_to_the_same_result(setup, monkeypatch, capsys):
    cfg, root = setup["cfg"], setup["root"]
    calls = {"train": 0}
    real = engine.compute_losses

    def interrupting_losses(*args, **kwargs):
        if torch.is_grad_enabled():  # training steps only
            calls["train"] += 1
            if calls["train"] == 7:  # epoch 2 (5 steps per epoch), its second step
                os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "compute_losses", interrupting_losses)
    assert train.main(["--cfg", cfg, "--exp_name", "interrupted"]) == 130
    err = capsys.readouterr().err
    assert "--resume" in err and "--exp_name interrupted" in err
    state = _final_state(root, "interrupted")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)
    assert state["partial_epoch"]["count"].item() > 0
    monkeypatch.setattr(engine, "compute_losses", real)
    train.run(["--cfg", cfg, "--exp_name", "interrupted", "--resume"])
    _assert_same_run(root, "straight", "interrupted")


def test_video_grouped_batches_resume_mid_epoch_to_the_straight_result(setup, monkeypatch):
    """The speed option (dataset.questions_per_video > 0: batches grouped by video, masks shared within a video)
    resumes mid-epoch to its own straight run too."""
    cfg, root = setup["cfg"], setup["root"]
    grouped = "dataset.questions_per_video=2"
    train.run(["--cfg", cfg, "--exp_name", "straight_grouped", grouped])
    calls = {"train": 0}
    real = engine.compute_losses

    def interrupting_losses(*args, **kwargs):
        if torch.is_grad_enabled():
            calls["train"] += 1
            if calls["train"] == 7:  # epoch 2, its second step
                os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "compute_losses", interrupting_losses)
    assert train.main(["--cfg", cfg, "--exp_name", "grouped", grouped]) == 130
    assert _final_state(root, "grouped")["step_in_epoch"] == 2
    monkeypatch.setattr(engine, "compute_losses", real)
    train.run(["--cfg", cfg, "--exp_name", "grouped", grouped, "--resume"])
    _assert_same_run(root, "straight_grouped", "grouped")


def test_non_finite_loss_stops_with_the_last_checkpoint_intact(setup, tmp_path):
    data = write_tiny_dataset(tmp_path / "data", seed=2)
    cfg = str(write_config(tmp_path / "tiny.yml", data, tmp_path / "results"))
    train.run(["--cfg", cfg, "--exp_name", "nan", "train.max_epochs=1"])
    run_dir = tmp_path / "results/nan"
    digests = {name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest() for name in ("last.pt", "best.pt")}
    train_video = min(data.colour)  # the lowest usable id belongs to the train split
    with h5py.File(data.motion_path, "r+") as f:
        row = int(np.flatnonzero(f["ids"][()] == train_video)[0])
        f["resnext_features"][row] = np.inf
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, train step \d+: loss part\(s\) total, ce") as error:
        train.run(["--cfg", cfg, "--exp_name", "nan", "train.max_epochs=2", "--resume"])
    assert "last good checkpoint is intact" in str(error.value)
    for name, digest in digests.items():
        assert hashlib.sha256((run_dir / name).read_bytes()).hexdigest() == digest
    assert len(json.loads((run_dir / "metrics.json").read_text())) == 1


def test_teacher_of_another_vocabulary_is_refused_before_training(setup, tmp_path, capsys):
    root = setup["root"]
    other = write_tiny_dataset(tmp_path / "other", seed=1)
    vocab_path = other.data_dir / "tiny_vocab.json"
    vocab = json.loads(vocab_path.read_text())
    answers = vocab["answer_token_to_idx"]
    answers["red"], answers["green"] = answers["green"], answers["red"]  # same sizes, other meaning
    vocab_path.write_text(json.dumps(vocab))
    cfg = str(write_config(tmp_path / "other.yml", other, tmp_path / "results"))
    teacher = root / "results/straight/best.pt"
    with pytest.raises(CheckpointError) as error:
        train.run(["--cfg", cfg, "--exp_name", "kd", "--graph_layers", "1", "train.mode=kd", "--teacher_ckpt",
                   str(teacher)])
    message = str(error.value)
    theirs = torch.load(teacher, weights_only=True)["vocab_fingerprint"]
    assert theirs in message and "data vocabulary fingerprint" in message and str(teacher) in message
    assert message.count(theirs) >= 1 and "num_answers" not in message
    assert not (tmp_path / "results/kd/last.pt").exists()


def test_teacher_of_other_dimensions_is_refused(setup, tmp_path):
    root = setup["root"]
    cfg = str(write_config(tmp_path / "wide.yml", setup["data"], tmp_path / "results",
                           model={"module_dim": 16, "word_dim": 8}))
    with pytest.raises(CheckpointError, match=r"model\.module_dim: checkpoint 32 vs this run 16"):
        train.run(["--cfg", cfg, "--exp_name", "kd", "--graph_layers", "1", "train.mode=kd", "--teacher_ckpt",
                   str(root / "results/straight/best.pt")])


def test_resume_with_a_changed_model_is_refused(setup):
    with pytest.raises(CheckpointError, match=r"model\.graph_layers: checkpoint 2 vs this run 3"):
        train.run(["--cfg", setup["cfg"], "--exp_name", "straight", "--graph_layers", "3", "--resume"])


def test_sigterm_between_epochs_stops_after_saving(setup, monkeypatch):
    cfg, root = setup["cfg"], setup["root"]
    real = engine.evaluate

    def evaluate_then_terminate(*args, **kwargs):
        result = real(*args, **kwargs)
        if kwargs.get("desc") == "val":
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr("training.trainer.evaluate", evaluate_then_terminate)
    with pytest.raises(TrainingInterrupted, match="after epoch 1"):
        train.run(["--cfg", cfg, "--exp_name", "terminated"])
    state = _final_state(root, "terminated")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 0)


def _rows(root, exp):
    return [{k: v for k, v in row.items() if k != "time_s"}
            for row in json.loads((root / "results" / exp / "metrics.json").read_text())]


def test_ctrl_c_mid_epoch_affects_only_that_epoch_after_resume(setup, monkeypatch):
    """Epochs after the resumed one start from their first batch and from zero sums, as in a straight run."""
    cfg, root = setup["cfg"], setup["root"]
    train.run(["--cfg", cfg, "--exp_name", "straight3", "train.max_epochs=3"])
    calls = {"train": 0}
    real = engine.compute_losses

    def interrupting_losses(*args, **kwargs):
        if torch.is_grad_enabled():
            calls["train"] += 1
            if calls["train"] == 2:  # epoch 1, its second step
                os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "compute_losses", interrupting_losses)
    with pytest.raises(TrainingInterrupted, match="epoch 1 after step 2"):
        train.run(["--cfg", cfg, "--exp_name", "early3", "train.max_epochs=3"])
    monkeypatch.setattr(engine, "compute_losses", real)
    train.run(["--cfg", cfg, "--exp_name", "early3", "train.max_epochs=3", "--resume"])
    assert _rows(root, "early3") == _rows(root, "straight3")
    a, b = _final_state(root, "straight3"), _final_state(root, "early3")
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.parametrize("override, line", [
    ("train.lr=1e-3", "train.lr: checkpoint 0.003 vs this run 0.001"),
    ("train.batch_size=4", "train.batch_size: checkpoint 8 vs this run 4"),
    ("seed=4", "seed: checkpoint 3 vs this run 4"),
    ("train.alpha=1", "train.alpha: checkpoint 100.0 vs this run 1.0"),
    ("distill.temperature_motion=2", "distill.temperature_motion: checkpoint 0.7 vs this run 2.0"),
    ("dataset.questions_per_video=2", "dataset.questions_per_video: checkpoint 0 vs this run 2"),
])
def test_resume_with_a_changed_setting_is_refused_naming_it(setup, override, line):
    with pytest.raises(CheckpointError) as error:
        train.run(["--cfg", setup["cfg"], "--exp_name", "straight", "--resume", override])
    assert line in str(error.value)


def test_resume_applies_and_logs_a_key_that_may_change(setup, capsys):
    root = setup["root"]
    shutil.copytree(root / "results/straight", root / "results/longer")
    summary = train.run(["--cfg", setup["cfg"], "--exp_name", "longer", "--resume", "train.max_epochs=3",
                         "dataset.num_workers=1"])
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3]
    out = capsys.readouterr().out
    assert "train.max_epochs: checkpoint 2 vs this run 3" in out and "dataset.num_workers: checkpoint 0" in out
    assert "exp_name: checkpoint straight vs this run longer" in out
