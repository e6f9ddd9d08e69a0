"""Progress in logs: plain newline-terminated lines with rate and ETA, no carriage returns or escape codes."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from utils.progress import LogProgress, progress_seconds

REPO_ROOT = Path(__file__).resolve().parent.parent
# A loop of 6 steps of 0.1 s with stderr redirected to a pipe (not a terminal) and lines every 0.15 s.
LOOP = """
import time
from utils.progress import progress
for _ in progress(range(6), desc="epoch 1 train", unit="batch"):
    time.sleep(0.1)
bar = progress(total=4, desc="extract", unit="video")
for _ in range(4):
    time.sleep(0.1)
    bar.update(1)
    bar.set_postfix(failed=0)
bar.close()
print("done", flush=True)
"""
LINE = re.compile(r"^(epoch 1 train|extract): +\d+% \d/\d \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(batch|video)/s(, failed=0)?\]$")


def test_log_lines_are_plain_and_carry_rate_and_eta():
    env = {"KDVQA_PROGRESS_SECONDS": "0.15", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", LOOP], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert "\r" not in err and "\x1b" not in err and err.endswith("\n")
    lines = err.splitlines()
    assert len(lines) >= 4 and all(LINE.match(line) for line in lines), lines
    assert len(set(lines)) == len(lines)
    assert lines[-1].startswith("extract: 100% 4/4") and any(x.startswith("epoch 1 train: 100% 6/6") for x in lines)


def test_short_loops_stay_silent():
    class Sink:
        text = ""

        def write(self, s):
            Sink.text += s

        def flush(self):
            pass

    for _ in LogProgress(range(1000), desc="quick", interval=60, file=Sink()):
        pass
    assert Sink.text == ""


def test_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("KDVQA_PROGRESS_SECONDS", raising=False)
    assert progress_seconds() == 30
    monkeypatch.setenv("KDVQA_PROGRESS_SECONDS", "5")
    assert progress_seconds() == 5
    monkeypatch.setenv("KDVQA_PROGRESS_SECONDS", "soon")
    with pytest.raises(SystemExit, match="KDVQA_PROGRESS_SECONDS='soon' is not a number of seconds"):
        progress_seconds()
