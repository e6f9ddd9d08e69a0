"""End to end on CPU: teacher -> distilled student -> validate, the files each writes, CLI flags and errors."""
import csv
import json
import math

import numpy as np
import pytest
import torch

import train
import validate
from train_fixtures import write_config, write_tiny_dataset
from training.checkpoint import vocab_fingerprint
from training.run_schema import load_config

pytestmark = pytest.mark.usefixtures("single_thread")
CHECKPOINT_KEYS = {"format_version", "model", "optimizer", "scheduler", "scaler", "epoch", "step_in_epoch",
                   "partial_epoch", "rng", "mode", "model_config", "config", "vocab_fingerprint",
                   "num_question_tokens", "num_answers", "num_clips", "frames_per_clip", "appearance_dim",
                   "motion_dim", "best_metric", "best_epoch", "history"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    """A teacher (HDF5 features read by a worker) and a distilled student (fp16 features in RAM)."""
    root = tmp_path_factory.mktemp("e2e")
    data = write_tiny_dataset(root / "data")
    cfg = write_config(root / "tiny.yml", data, root / "results")
    assert load_config(cfg).dataset.questions_per_video == 0  # the default protocol: dropout masks per question
    teacher = train.run(["--cfg", str(cfg), "--exp_name", "teacher", "dataset.num_workers=1"])
    student = train.run(["--cfg", str(cfg), "--exp_name", "student_kd", "--graph_layers", "1", "train.mode=kd",
                         "--teacher_ckpt", str(root / "results/teacher/best.pt"), "dataset.features_in_memory=true",
                         "dataset.feature_dtype=float16"])
    return {"root": root, "data": data, "cfg": cfg, "teacher": teacher, "student": student}


def _finite(row, keys):
    return all(math.isfinite(float(row[k])) for k in keys)


def test_teacher_run_writes_sane_results(runs):
    run_dir = runs["root"] / "results/teacher"
    for name in ("config.yaml", "best.pt", "last.pt", "metrics.csv", "metrics.json", "loss_ce.png", "accuracy.png",
                 "test_results.json", "test_results.md", "train.log"):
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    assert not (run_dir / "loss_distillation.png").exists()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    cfg = load_config(run_dir / "config.yaml")
    assert cfg.exp_name == "teacher" and cfg.train.mode == "teacher" and cfg.dataset.num_workers == 1

    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert _finite(rows[-1], ["train_total", "train_ce", "train_similarity", "train_hsic", "val_ce", "val_total"])
    assert float(rows[1]["train_ce"]) < float(rows[0]["train_ce"])  # it learns
    assert all(0 <= float(r["val_acc"]) <= 1 and 0 <= float(r["train_acc"]) <= 1 for r in rows)
    assert float(rows[0]["train_kd_motion"]) == 0.0
    assert json.loads((run_dir / "metrics.json").read_text())[-1]["val_acc"] == pytest.approx(float(rows[-1]["val_acc"]))

    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert CHECKPOINT_KEYS <= set(ckpt)
    vocab = json.loads((runs["data"].data_dir / "tiny_vocab.json").read_text())
    assert ckpt["vocab_fingerprint"] == vocab_fingerprint(vocab)
    assert (ckpt["epoch"], ckpt["num_question_tokens"], ckpt["num_answers"]) == (2, 16, 8)
    assert ckpt["model_config"]["graph_layers"] == 2 and ckpt["mode"] == "teacher"
    best = torch.load(run_dir / "best.pt", weights_only=True)
    val_accs = [float(r["val_acc"]) for r in rows]
    assert best["best_metric"] == pytest.approx(max(val_accs)) and best["epoch"] == 1 + int(np.argmax(val_accs))

    results = json.loads((run_dir / "test_results.json").read_text())
    assert results["count"] == 16 and sum(results["counts"].values()) == 16  # all test questions, every type
    assert results["all"] == pytest.approx(results["correct"] / 16)
    assert results["all"] == pytest.approx(runs["teacher"]["test"]["all"])
    assert "| questions | 16 |" in (run_dir / "test_results.md").read_text()


def test_distilled_student_run_uses_the_teacher(runs):
    run_dir = runs["root"] / "results/student_kd"
    assert (run_dir / "loss_distillation.png").stat().st_size > 0
    rows = json.loads((run_dir / "metrics.json").read_text())
    for row in rows:
        for split in ("train", "val"):
            assert row[f"{split}_kd_appearance"] > 0 and row[f"{split}_kd_motion"] > 0
            assert math.isfinite(row[f"{split}_kd_motion"])
    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    assert ckpt["mode"] == "kd" and ckpt["model_config"]["graph_layers"] == 1
    assert ckpt["teacher_ckpt"] == str(runs["root"] / "results/teacher/best.pt")
    teacher_size = sum(v.numel() for v in torch.load(runs["root"] / "results/teacher/best.pt",
                                                       weights_only=True)["model"].values())
    assert sum(v.numel() for v in ckpt["model"].values()) < teacher_size
    assert runs["student"]["mode"] == "kd"


def test_validate_reproduces_the_runs_test_accuracy(runs, tmp_path):
    best = runs["root"] / "results/teacher/best.pt"
    preds_file = tmp_path / "preds.json"
    result = validate.run(["--ckpt", str(best), "--split", "test", "--write_preds", str(preds_file),
                           "--json", str(tmp_path / "r.json")])
    assert result["accuracy"]["all"] == pytest.approx(runs["teacher"]["test"]["all"])
    preds = json.loads(preds_file.read_text())
    assert len(preds) == 16 and sum(p["correct"] for p in preds) == result["accuracy"]["correct"]
    assert json.loads((tmp_path / "r.json").read_text())["accuracy"]["count"] == 16


def test_compare_table_lists_every_model(runs, tmp_path):
    results = runs["root"] / "results"
    out = tmp_path / "cmp.md"
    result = validate.run(["--compare", str(results / "teacher/best.pt"), str(results / "student_kd/best.pt"),
                           "--names", "Teacher", "Student-KD", "--out", str(out), "--plot", str(tmp_path / "c.png")])
    text = out.read_text()
    assert "| Teacher |" in text and "| Student-KD |" in text and (tmp_path / "c.png").stat().st_size > 0
    params = [m["parameters"] for m in result["models"]]
    assert params[0] > params[1]
    assert f"{params[0]:,}" in text


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag, key in (("--alpha", "train.alpha"), ("--beta", "train.beta"), ("--unit_layers", "model.unit_layers"),
                      ("--graph_layers", "model.graph_layers"), ("--teacher_ckpt", "distill.teacher_ckpt"),
                      ("--exp_name", "exp_name"), ("--resume", "last.pt"), ("--overwrite", "--resume"),
                      ("--seed", "seed"),
                      ("--device", "device")):
        assert flag in text and key in text


def test_flags_map_onto_config_keys(tmp_path):
    args = train.build_parser().parse_intermixed_args(["--cfg", "configs/msvd_qa_teacher.yml", "--alpha", "2", "--beta", "3e-7",
                                            "--unit_layers", "2", "--graph_layers", "3", "--exp_name", "x",
                                            "--seed", "5", "--device", "cpu", "--teacher_ckpt", "t.pt",
                                            "train.lr=1e-3"])
    cfg = train.config_from_args(args)
    assert (cfg.train.alpha, cfg.train.beta, cfg.model.unit_layers, cfg.model.graph_layers) == (2.0, 3e-7, 2, 3)
    assert (cfg.exp_name, cfg.seed, cfg.device, cfg.train.lr) == ("x", 5, "cpu", 1e-3)
    assert cfg.distill.teacher_ckpt.endswith("/t.pt") and cfg.distill.teacher_ckpt.startswith("/")


def test_config_typo_and_missing_data_name_the_key(runs, capsys):
    assert train.main(["--cfg", str(runs["cfg"]), "train.lrr=1"]) == 2
    assert "train.lrr" in capsys.readouterr().err
    assert train.main(["--cfg", str(runs["cfg"]), "--exp_name", "nodata", "dataset.train_question_pt=gone.pt"]) == 2
    err = capsys.readouterr().err
    assert "gone.pt" in err and "dataset.train_question_pt" in err


def test_kd_without_a_usable_teacher_checkpoint_names_path_and_key(runs, capsys):
    assert train.main(["--cfg", str(runs["cfg"]), "--exp_name", "kd_nothing", "train.mode=kd"]) == 2
    assert "distill.teacher_ckpt" in capsys.readouterr().err
    missing = runs["root"] / "no_teacher.pt"
    assert train.main(["--cfg", str(runs["cfg"]), "--exp_name", "kd_missing", "train.mode=kd", "--teacher_ckpt",
                       str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "distill.teacher_ckpt" in err
    assert not (runs["root"] / "results/kd_missing/last.pt").exists()


def test_glove_width_mismatch_is_a_clear_error(runs, capsys):
    code = train.main(["--cfg", str(runs["cfg"]), "--exp_name", "wide", "model.word_dim=12"])
    assert code == 2 and "model.word_dim" in capsys.readouterr().err
