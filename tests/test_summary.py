"""`python -m model.summary`: the per-part parameter table and its last line."""
import json
import os
import subprocess
import sys

import pytest
import torch

from model import build_model
from model.summary import main
from utils.config import REPO_ROOT
from training.run_schema import load_config


def last_line_count(text):
    line = text.strip().splitlines()[-1]
    prefix = "trainable parameters: "
    assert line.startswith(prefix), line
    return int(line[len(prefix):].replace(",", ""))


@pytest.mark.parametrize("config, expected", [("configs/msvd_qa_student.yml", 23_189_116),
                                              ("configs/msvd_qa_teacher.yml", 30_294_700),
                                              ("configs/msrvtt_qa_teacher.yml", 35_031_756)])
def test_paper_counts_from_the_cli(capsys, config, expected):
    assert main(["--cfg", config, "--question_tokens", "4000", "--answers", "1002", "model.mfb_factor=2"]) == 0
    assert last_line_count(capsys.readouterr().out) == expected


def test_rows_add_up_and_vocab_file_is_read(tmp_path, capsys):
    vocab = {"question_token_to_idx": {f"w{i}": i for i in range(37)},
             "answer_token_to_idx": {f"a{i}": i for i in range(9)},
             "question_answer_token_to_idx": {}}
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(vocab))
    main(["--cfg", "configs/msvd_qa_teacher.yml", "--vocab", str(path), "model.unit_layers=2"])
    text = capsys.readouterr().out
    with torch.device("meta"):
        model = build_model(load_config("configs/msvd_qa_teacher.yml", ["model.unit_layers=2"]).model, 37, 9)
    total = sum(p.numel() for p in model.parameters())
    assert last_line_count(text) == total
    rows = [line for line in text.splitlines()[1:-1]]
    assert sum(int(row.split()[-1].replace(",", "")) for row in rows) == total
    assert sum("graph layer" in row for row in rows) == 8
    assert "graph layer 3 (4 GAT blocks, index 7)" in text


def test_missing_vocabulary_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="vocabulary file not found"):
        main(["--cfg", "configs/msvd_qa_teacher.yml", "--vocab", str(tmp_path / "absent.json")])
    with pytest.raises(SystemExit):
        main(["--cfg", "configs/msvd_qa_teacher.yml", "--question_tokens", "40"])


def test_runs_as_a_module():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "model.summary", "--cfg", "configs/msvd_qa_student.yml",
                             "--question_tokens", "4000", "--answers", "1002", "model.mfb_factor=4"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert last_line_count(result.stdout) == 23_189_116 + 787_456


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in ("--cfg", "--vocab", "--question_tokens", "--answers", "KEY=VALUE", "thousands"):
        assert flag in help_text
