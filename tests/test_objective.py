"""The objective as data: loss terms registered by name (one here, in the test file alone), read from the config,
weighted, logged under their own names; teacher terms need a teacher and a teacher needs a teacher term."""
import json

import pytest
import torch

import train
from model.losses import DistillationParams, build_objective, compute_losses, register_loss
from train_fixtures import write_config, write_tiny_dataset
from training.reporting import summary_line
from utils.config import ConfigError
from training.run_schema import load_config

pytestmark = pytest.mark.usefixtures("single_thread")


@register_loss("logit_energy", student=("logits",))
def logit_energy(params, student, answers, teacher) -> torch.Tensor:
    """Mean squared logit, (B, A) -> scalar."""
    return student.logits.float().pow(2).mean()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("objective")
    return root, write_tiny_dataset(root / "data")


def test_a_registered_term_trains_and_is_logged_under_its_name(tiny):
    root, data = tiny
    cfg = write_config(root / "energy.yml", data, root / "results", exp_name="energy", train={"max_epochs": 1},
                       losses={"logit_energy": {"weight": 0.5}})
    train.run(["--cfg", str(cfg)])
    row = json.loads((root / "results/energy/metrics.json").read_text())[0]
    assert row["train_logit_energy"] > 0 and row["val_logit_energy"] > 0
    expected = sum(w * row[f"train_{name}"] for name, w in
                   (("ce", 1.0), ("similarity", 100.0), ("hsic", 1e-6), ("logit_energy", 0.5)))
    assert row["train_total"] == pytest.approx(expected, rel=1e-4)


def test_unknown_terms_and_parameters_name_the_key():
    with pytest.raises(ConfigError, match="losses.logit_enrgy.*registered:.*logit_energy"):
        load_config(None, ["losses.logit_enrgy.weight=1"])
    with pytest.raises(ConfigError, match="losses.ce.temperature"):
        load_config(None, ["losses.ce.temperature=2"])
    with pytest.raises(ConfigError, match="distill.losses.kd_motion.temperature"):
        load_config(None, ["distill.losses.kd_motion.temperature=hot"])


def test_old_keys_are_aliases_of_the_loss_parameters(tmp_path):
    cfg = load_config(None, ["train.alpha=3", "distill.temperature_motion=2"])
    assert cfg.losses.similarity.weight == 3.0 and cfg.distill.losses.kd_motion.temperature == 2.0
    cfg = load_config(None, ["losses.hsic.weight=5e-7"])
    assert cfg.train.beta == 5e-7
    both = tmp_path / "both.yml"
    both.write_text("train:\n  alpha: 3.0\nlosses:\n  similarity: {weight: 2.0}\n")
    with pytest.raises(ConfigError, match=r"both\.yml.*train.alpha.*losses.similarity.weight"):
        load_config(both)


def test_teacher_terms_and_teachers_go_together():
    kd = {"kd_motion": {"weight": 1.0, "temperature": 1.0}}
    with pytest.raises(ConfigError, match="kd_motion.*read a teacher, but none is given"):
        build_objective({"ce": {}, **kd})
    with pytest.raises(ConfigError, match="no loss term reads it"):
        build_objective({"ce": {}}, {}, teacher_given=True)
    student = build_objective({"ce": {}, **kd}, drop_teacher_terms=True)   # train.mode=student
    assert student.part_names == ("total", "ce", "kd_motion") and not student.reads_teacher


def test_a_teacher_given_to_a_config_without_teacher_terms_is_an_error(tiny, capsys):
    root, data = tiny
    cfg = write_config(root / "noterm.yml", data, root / "results", exp_name="noterm",
                       distill={"losses": {"kd_appearance": None, "kd_motion": None}})
    assert train.main(["--cfg", str(cfg), "--teacher_ckpt", "tests/fixtures/checkpoint_v1_teacher.pt"]) == 2
    assert "no loss term reads it" in capsys.readouterr().err


def test_the_epoch_line_shows_every_weighted_part():
    row = {"epoch": 1, "lr": 1e-4, "time_s": 3.0, "best": False, "train_acc": 0.5, "val_acc": 0.4,
           "train_total": 35.78, "train_ce": 1.65, "train_similarity": 0.3413, "train_hsic": 2.0,
           "val_total": 1.7, "val_ce": 1.7, "val_similarity": 1e-9, "val_hsic": 0.0}
    line = summary_line(row, 10, {"ce": 1.0, "similarity": 100.0, "hsic": 1e-6})
    assert "35.7800 = 1 x ce 1.65 + 100 x similarity 0.3413 + 1e-06 x hsic 2" in line


def test_terms_compute_what_they_are_registered_for():
    objective = build_objective({"logit_energy": {"weight": 2.0}})
    out = type("Out", (), {"logits": torch.tensor([[1.0, 3.0]])})()
    losses = compute_losses(objective, out, torch.tensor([0]))
    assert losses["logit_energy"].item() == 5.0 and losses["total"].item() == 10.0
    assert DistillationParams().temperature == 1.0
