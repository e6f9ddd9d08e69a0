"""Every command line's --help starts with the command a user types and spells multi-word flags with underscores."""
import re
import runpy
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# (how the test runs it: a file under the repository or a module name, the usage line's command)
COMMANDS = [
    ("train.py", "python train.py"),
    ("validate.py", "python validate.py"),
    ("predict.py", "python predict.py"),
    ("bench/predict.py", "python bench/predict.py"),
    ("txt2pickle.py", "python txt2pickle.py"),
    ("bench/train_step.py", "python bench/train_step.py"),
    ("bench/amp_accuracy.py", "python bench/amp_accuracy.py"),
    ("bench/data_loading.py", "python bench/data_loading.py"),
    ("bench/txt2pickle_memory.py", "python bench/txt2pickle_memory.py"),
    ("bench.extraction", "python -m bench.extraction"),
    ("bench.probe_features", "python -m bench.probe_features"),
    ("model.summary", "python -m model.summary"),
    ("preprocess.preprocess_features", "python -m preprocess.preprocess_features"),
    ("preprocess.preprocess_questions", "python -m preprocess.preprocess_questions"),
    ("preprocess.merge_features", "python -m preprocess.merge_features"),
    ("preprocess.synthetic.msvd_qa", "python -m preprocess.synthetic.msvd_qa"),
    ("preprocess.synthetic", "python -m preprocess.synthetic"),
    ("preprocess.glove", "python -m preprocess.glove"),
    ("tests/mutation.py", "python tests/mutation.py"),
]
DASHED_FLAG = re.compile(r"--[a-z0-9]+-[a-z0-9]")


def help_text(target: str, capsys, monkeypatch) -> str:
    """What ``target --help`` prints, run in this process as ``python`` would run it."""
    monkeypatch.setattr(sys, "argv", [target, "--help"])
    with pytest.raises(SystemExit) as done:
        if target.endswith(".py"):
            runpy.run_path(str(REPO_ROOT / target), run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
@pytest.mark.parametrize("target, command", COMMANDS)
def test_help_names_the_command_and_uses_underscored_flags(target, command, capsys, monkeypatch):
    text = help_text(target, capsys, monkeypatch)
    assert text.startswith(f"usage: {command} "), text.splitlines()[0]
    assert not DASHED_FLAG.findall(text), f"{target}: dashed flags {DASHED_FLAG.findall(text)}"


def test_summary_accepts_the_old_dashed_flag():
    from model.summary import parse_args
    old = parse_args(["--cfg", "configs/msvd_qa_teacher.yml", "--question-tokens", "40", "--answers", "5"])
    new = parse_args(["--cfg", "configs/msvd_qa_teacher.yml", "--question_tokens", "40", "--answers", "5"])
    assert old.question_tokens == new.question_tokens == 40
