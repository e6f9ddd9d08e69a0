"""The error ending every command line shares: an error of input or environment is one line and exit code 2, any
other exception (a bug) keeps its traceback.

Input or environment errors are the project's own error classes (a bad config, data, checkpoint, pickle, run
folder, sweep, dataset layout, feature file...) and every ``OSError`` (a missing or unreadable file, a read-only
or full disk, a damaged HDF5 file). A ValueError, IndexError, KeyError... raised anywhere else is a bug and is not
turned into one line. The classes are looked up by module name and only in modules already imported: an error of
a module that was never imported cannot have been raised, and no CLI pays for importing the others.

Every CLI ``main()`` ends in ``except Exception as e:`` with :func:`exit_on_input_error`, either
``return exit_on_input_error(e)`` (the module runs ``sys.exit(main())``) or ``raise SystemExit(exit_on_input_error(e))``
(a ``main()`` whose in-process callers expect SystemExit); both print one line and exit with code 2.
"""
from __future__ import annotations

import errno
import sys

# (module, class): the project's error classes that describe bad input or environment.
INPUT_ERRORS = (
    ("utils.config", "ConfigError"), ("utils.strict_yaml", "StrictYAMLError"),
    ("utils.safe_pickle", "UnsafePickleError"), ("utils.atomic", "OutputWriteError"),
    ("training.data.paths", "DataError"), ("training.checkpoint", "CheckpointError"),
    ("training.run_dir", "RunFolderError"), ("training.sweep_plan", "SweepError"),
    ("preprocess.datasets.base", "DatasetLayoutError"), ("preprocess.question_file", "QuestionFileError"),
    ("preprocess.glove", "GloveFileError"), ("preprocess.backbones", "WeightsError"),
    ("preprocess.resnext3d", "CheckpointError"), ("preprocess.merge_features", "MergeError"),
    ("preprocess.feature_extraction", "ExtractionError"), ("inference", "PredictError"), ("bench", "BenchError"),
)


def _input_error_classes() -> tuple[type, ...]:
    classes = []
    for module, name in INPUT_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            classes.append(cls)
    return tuple(classes)


def _os_error_line(error: OSError) -> str:
    """``<file>: <reason>`` on one line (the reason of a full disk says so)."""
    reason = error.strerror or " ".join(str(error).split()) or type(error).__name__
    if error.errno == errno.ENOSPC and "space" not in reason.lower():
        reason += " (no space left on the device)"
    name = error.filename if error.filename is not None else None
    if name is not None and error.filename2 is not None:
        return f"{name} -> {error.filename2}: {reason}"
    return f"{name}: {reason}" if name is not None and str(name) not in reason else reason


def _worker_message(text: str) -> str:
    """The original message of an error a DataLoader worker raised (torch re-raises it in the main process as
    "Caught X in DataLoader worker process N. Original Traceback ...: X: message"), else ``text``."""
    if "Original Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]
    name, sep, message = last.partition(": ")
    return message if sep and name.replace(".", "").replace("_", "").isalnum() else last


def error_line(error: BaseException, extra: tuple[type, ...] = ()) -> str | None:
    """The message to print for ``error`` when it is an error of input or environment (the project's error
    classes, ``extra``, any OSError), else None (a bug: let its traceback show)."""
    if isinstance(error, (*_input_error_classes(), *extra)) and not isinstance(error, OSError):
        return _worker_message(str(error)).strip() or type(error).__name__
    if isinstance(error, OSError):
        if "Original Traceback" in str(error):
            return _worker_message(str(error))
        return " ".join(_os_error_line(error).split())
    return None


class InputErrorStatus(int):
    """Exit status 2 of an error of input that was reported as one line; ``str()`` gives that line, so a caller of
    a ``main()`` that raised ``SystemExit(status)`` reads the message from the exception while the process still
    exits with code 2 (an int exit code prints nothing more)."""

    def __new__(cls, line: str) -> "InputErrorStatus":
        status = super().__new__(cls, 2)
        status.line = line
        return status

    def __str__(self) -> str:
        return self.line


def print_error(line: str) -> None:
    """Print ``line`` in red on standard error (the default reporter of :func:`exit_on_input_error`)."""
    from termcolor import colored
    print(colored(line, "red"), file=sys.stderr)


def exit_on_input_error(error: BaseException, report=print_error, extra: tuple[type, ...] = ()) -> InputErrorStatus:
    """The ending of every CLI's ``except Exception``: an error of input or environment (:func:`error_line`) is
    reported as one line ``error: <message>`` through ``report`` and gives exit code 2 (an
    :class:`InputErrorStatus` that reads as that line); anything else is raised again, so a bug keeps its
    traceback."""
    message = error_line(error, extra)
    if message is None:
        raise error
    line = f"error: {message}"
    report(line)
    return InputErrorStatus(line)
