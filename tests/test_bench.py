"""Smoke tests of the training benchmarks at toy sizes: both ways of running them, the output format, and figures
that agree with each other (questions/s from ms/step, loader/model ratios from the table's columns)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import data_loading

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_MODEL = ["model.module_dim=16", "model.word_dim=6", "model.mfb_dim=4", "model.num_heads=2",
              "model.graph_layers=2"]
TINY_STEP = ["--cfg", "configs/msvd_qa_teacher.yml", *TINY_MODEL, "--num_clips", "2", "--num_frames", "2",
             "--vocab_size", "30", "--num_answers", "7", "--steps", "2", "--warmup", "1", "--device", "cpu",
             "--threads", "1"]
RATE = re.compile(r"^questions/s: (\d+\.\d+)$")


def run_bench(*args) -> list[str]:
    done = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def field(lines: list[str], name: str) -> str:
    (line,) = [x for x in lines if x.startswith(name)]
    return line.split("|", 1)[1].strip()


def check_flop_lines(lines: list[str], medians: dict) -> None:
    """The flops line adds up, and each setting's 'measured Nx it' is its median over its bound."""
    flops = re.match(r"([\d.e+]+) GFLOP per step, counted from the shapes \(LSTMs ([\d.e+]+), other products "
                     r"([\d.e+]+); forward \+ backward\)", field(lines, "flops"))
    assert flops and float(flops.group(1)) == pytest.approx(float(flops.group(2)) + float(flops.group(3)), rel=1e-3)
    bounds = re.findall(r"(float32|bf16): peak \d+ GFLOP/s -> ([\d.e+-]+) ms/step, measured ([\d.e+-]+)x it",
                        field(lines, "FLOP bound"))
    assert [b[0] for b in bounds] == ["float32", "bf16"]
    for name, bound_ms, times in bounds:
        assert float(times) == pytest.approx(float(medians[name]) / float(bound_ms), rel=0.02, abs=0.02)


@pytest.mark.parametrize("invocation, extra, questions", [
    (["bench/train_step.py"], ["--batch_size", "6", "--questions_per_video", "3"], 6),
    (["-m", "bench.train_step"], ["--batch_size", "4", "--mode", "kd", "--teacher_graph_layers", "3", "--no_bound"],
     4),
])
def test_train_step_reports_consistent_figures(invocation, extra, questions):
    lines = run_bench(*invocation, *TINY_STEP, *extra)
    rate = RATE.match(lines[-1])
    assert rate, f"last line is not 'questions/s: X': {lines[-1]!r}"
    medians = dict(re.findall(r"(float32|bf16): ([\d.]+) ms \(median of 2;", field(lines, "ms/step")))
    rates = dict(re.findall(r"(float32|bf16) ([\d.]+) questions/s", field(lines, "rates")))
    assert set(medians) == set(rates) == {"float32", "bf16"}  # side by side by default
    for name, median_ms in medians.items():
        assert float(rates[name]) == pytest.approx(questions * 1000 / float(median_ms), rel=0.01, abs=0.01)
    ratio = float(re.search(r"\(([\d.]+)x float32\)", field(lines, "rates")).group(1))
    assert ratio == pytest.approx(float(rates["bf16"]) / float(rates["float32"]), rel=0.01, abs=0.01)
    assert float(rate.group(1)) == float(rates["bf16"])       # the last line: the last --amp setting
    if "--no_bound" in extra:
        assert not any(line.startswith(("flops", "FLOP bound")) for line in lines)
    else:
        check_flop_lines(lines, medians)
    epoch = field(lines, "epoch")
    assert "MSVD-QA (30,933 questions)" in epoch and "MSRVTT-QA (158,581 questions)" in epoch
    assert re.search(r"[\d.]+ (MiB|GiB) \(CPU peak RSS", field(lines, "peak memory"))
    if "kd" in extra:
        assert "frozen teacher g=3" in field(lines, "batch") and lines[0].startswith("train step | kd, g=2")


def test_train_step_refuses_a_batch_that_k_does_not_divide():
    done = subprocess.run([sys.executable, "bench/train_step.py", *TINY_STEP, "--batch_size", "5",
                           "--questions_per_video", "2"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "must divide the batch size" in done.stderr


def table_rows(lines: list[str]) -> list[list[str]]:
    start = next(i for i, line in enumerate(lines) if line.startswith("features dtype"))
    return [line.split() for line in lines[start + 2:] if line.split()[0] in ("hdf5", "memory")]


def test_data_loading_table_and_verdict(tmp_path, capsys):
    argv = ["--dir", str(tmp_path), "--num_videos", "12", "--num_questions", "120", "--num_clips", "2",
            "--num_frames", "2", "--batch_size", "8", "--questions_per_video", "4", "--workers", "0", "1",
            "--batches", "3", "--warmup", "1", "--model_rate", "50", "--model_rate_grouped", "80", "--threads", "1",
            "train.batch_size=8", "dataset.num_workers=1", "dataset.features_in_memory=false"]
    assert data_loading.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("wrote ") for line in lines)
    rows = table_rows(lines)
    settings = [(r[0], r[1], r[2], r[3]) for r in rows]
    assert settings == [("hdf5", "float32", "0", "0"), ("hdf5", "float32", "1", "0"), ("hdf5", "float32", "0", "4"),
                        ("hdf5", "float32", "1", "4"), ("memory", "float32", "-", "0"), ("memory", "float16", "-", "0"),
                        ("memory", "float32", "-", "4"), ("memory", "float16", "-", "4")]
    for row in rows:
        loader, model, ratio = float(row[4]), float(row[-2]), float(row[-1])
        assert model == (80.0 if row[3] == "4" else 50.0)
        assert ratio == pytest.approx(loader / model, abs=0.06)
    verdict = re.match(r"config settings \(hdf5, 1 workers, float32, questions_per_video 0, batch 8\): loader (\d+) "
                       r"questions/s = ([\d.]+)x the model's 50.0 questions/s", lines[-1])
    assert verdict and int(verdict.group(1)) == round(float(rows[1][4]))

    assert data_loading.main(argv) == 0                       # same sizes in --dir: the files are reused
    assert not any(line.startswith("wrote ") for line in capsys.readouterr().out.splitlines())


def test_data_loading_measures_the_model_with_train_step(tmp_path, capsys):
    argv = ["--dir", str(tmp_path), "--num_videos", "8", "--num_questions", "48", "--num_clips", "2",
            "--num_frames", "2", "--batch_size", "4", "--questions_per_video", "2", "--workers", "0",
            "--batches", "2", "--warmup", "1", "--model_steps", "1", "--threads", "1", "--device", "cpu",
            *TINY_MODEL, "dataset.num_workers=0"]
    assert data_loading.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    models = {row[3]: float(row[-2]) for row in table_rows(lines)}
    assert set(models) == {"0", "2"} and all(rate > 0 for rate in models.values())
    assert re.search(r"loader \d+ questions/s = [\d.]+x the model's [\d.]+ questions/s", lines[-1])
    assert lines[-1].startswith("config settings (memory, ")  # features_in_memory: auto, and a few KiB fit


@pytest.mark.parametrize("cfg, answers, clips", [("configs/nextqa_teacher.yml", 5, 16),
                                                 ("configs/tgif_qa_count_student.yml", 1, 8)])
def test_train_step_builds_the_heads_batches(cfg, answers, clips, capsys, single_thread):
    from bench import train_step
    from bench.common import BatchShape, random_batch
    argv = ["--cfg", cfg, *TINY_MODEL, "--num_frames", "2", "--vocab_size", "30", "--steps", "1", "--warmup", "0",
            "--device", "cpu", "--batch_size", "4"]
    assert train_step.run(argv) > 0
    batch_line = field(capsys.readouterr().out.splitlines(), "batch")
    assert f"C={clips} " in batch_line and f" A={answers} " in batch_line
    head = "multiple_choice" if answers == 5 else "count"
    batch = random_batch(BatchShape(4, 1, 2, 2, 8, 5, 30, answers, head, candidate_len=3), torch.device("cpu"))
    if head == "multiple_choice":
        assert batch["candidates"].shape == (4, 5, 3) and batch["candidates_len"].shape == (4, 5)
        assert ((batch["candidates"] != 0).sum(-1) == batch["candidates_len"]).all()
        assert batch["answer"].max() < 5
    else:
        assert "candidates" not in batch and batch["answer"].min() >= 1 and batch["answer"].max() <= 10


@pytest.mark.parametrize("input_grad", [False, True])
def test_step_flops_counts_products_and_lstms_from_the_shapes(input_grad, single_thread):
    """A bidirectional LSTM 5 -> 3 over 4 sequences of 7 steps, then Linear(6, 2) on its 28 outputs; hand count
    (2 FLOPs per multiply-add)."""
    from torch import nn
    from bench.step_flops import count_step_flops

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.head = nn.LSTM(5, 3, batch_first=True, bidirectional=True), nn.Linear(6, 2)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    model, x = Tiny(), torch.randn(4, 7, 5, requires_grad=input_grad)
    flops = count_step_flops(lambda: model(x).sum().backward(), [model])
    # per direction and (sequence, step): 12 gate rows, each 5 input + 3 state multiply-adds forward; backward the
    # weight gradients (5 + 3 again), the state gradient (3) and, if x needs one, its gradient (5)
    per_row = 12 * ((5 + 3) + (5 + 3) + 3 + (5 if input_grad else 0))
    assert flops.lstms == 2 * 2 * 28 * per_row
    assert flops.products == 3 * 2 * 28 * 6 * 2  # forward, input gradient, weight gradient of the head
    assert flops.total == flops.lstms + flops.products
