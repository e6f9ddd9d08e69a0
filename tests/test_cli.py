"""utils/cli.py: the error ending every command line shares."""
import traceback

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
