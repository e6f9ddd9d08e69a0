"""utils/cli.py: the error ending every command line shares."""
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from utils.cli import exit_on_input_error
from utils.config import ConfigError


def _raise(error):
    raise error


def test_input_and_environment_errors_are_one_reported_line_and_exit_code_2():
    for error, expected in ((ConfigError("train.lr: must be > 0"), "error: train.lr: must be > 0"),
                            (FileNotFoundError(2, "No such file or directory", "data/x.h5"),
                             "error: data/x.h5: No such file or directory")):
        lines = []
        try:
            _raise(error)
        except Exception as e:
            assert exit_on_input_error(e, lines.append) == 2
        assert lines == [expected]


def test_a_bug_is_raised_again_with_the_frame_that_raised_it():
    lines = []
    with pytest.raises(ValueError) as info:
        try:
            _raise(ValueError("internal"))
        except Exception as e:
            exit_on_input_error(e, lines.append)
    assert lines == []
    assert any(frame.name == "_raise" for frame in traceback.extract_tb(info.value.__traceback__))


def test_extra_classes_count_as_input_errors():
    class Stop(RuntimeError):
        pass
    lines = []
    assert exit_on_input_error(Stop("loss is nan at step 3"), lines.append, extra=(Stop,)) == 2
    assert lines == ["error: loss is nan at step 3"]


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command, expected", [
    (["-m", "preprocess.preprocess_questions", "--dataset", "msvd", "--dataset_dir", "{tmp}",
      "--glove_pt", "{tmp}/absent.pkl"], "absent.pkl"),
    (["-m", "model.summary", "--cfg", "configs/msvd_qa_teacher.yml", "--vocab", "{tmp}/absent.json"],
     "vocabulary file not found"),
    (["txt2pickle.py", "--input", "{tmp}/absent.txt", "--output", "{tmp}/g.pkl"], "GloVe text file not found"),
    (["-m", "preprocess.glove", "--from_package", "absent-package", "--output", "{tmp}/g.pkl"], "absent-package"),
    (["-m", "preprocess.synthetic", "--dataset", "svqa", "--out", "{tmp}/raw", "--num_videos", "2"],
     "num_videos must be at least 4"),
    (["bench/train_step.py", "--cfg", "configs/msvd_qa_teacher.yml", "--steps", "0", "--device", "cpu"],
     "--steps must be >= 1"),
], ids=["preprocess_questions", "model.summary", "txt2pickle", "preprocess.glove", "preprocess.synthetic",
        "bench.train_step"])
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, command, expected):
    """The CLIs that used to end with SystemExit(message) (exit code 1) or a traceback end as every other one does."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, *(part.format(tmp=tmp_path) for part in command)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr


def test_a_main_that_raises_systemexit_exits_2_and_keeps_the_line():
    """``raise SystemExit(exit_on_input_error(e))``: exit code 2 and the line readable from the exception."""
    lines = []
    status = exit_on_input_error(ConfigError("model.name: unknown"), lines.append)
    assert status == 2 and str(SystemExit(status)) == "error: model.name: unknown" == lines[0]
    code = ("import sys; from utils.cli import exit_on_input_error; from utils.config import ConfigError\n"
            "raise SystemExit(exit_on_input_error(ConfigError('bad key'), print))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (2, "error: bad key\n", "")
