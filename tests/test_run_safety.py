"""The run folder survives crashes, concurrent runs, reruns and bad checkpoints; unwritable outputs stop cleanly."""
import errno
import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

import train
import validate
from train_fixtures import write_config, write_tiny_dataset
from training import trainer
from training.checkpoint import CheckpointError
from training.run_dir import LOCK_NAME
from training.run_schema import load_config

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, single_thread):
    root = tmp_path_factory.mktemp("safety")
    data = write_tiny_dataset(root / "data", seed=4)  # with this seed and lr, epoch 2 is a new best
    cfg = write_config(root / "tiny.yml", data, root / "results",  # the default protocol: per-question masks
                       train={"max_epochs": 2, "lr_decay_every": 1, "lr": 3e-2})
    assert load_config(cfg).dataset.questions_per_video == 0  # random batches, dropout masks drawn per question
    straight = train.run(["--cfg", str(cfg), "--exp_name", "straight"])
    return {"root": root, "data": data, "cfg": str(cfg), "straight": straight}


def _digests(run_dir):
    return {p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _rows(run_dir):
    return [{k: v for k, v in row.items() if k != "time_s"}
            for row in json.loads((run_dir / "metrics.json").read_text())]


class Crash(Exception):
    """Stands for the process being killed at that point."""


# ------------------------------------------------------------------------------------- item: crash between writes
CRASH_POINTS = ("tensorboard", "last.pt", "best.pt", "metrics", "plots")


def _crash_in_epoch_2(monkeypatch, point):
    """Make the write named ``point`` of epoch 2's end raise Crash (the writes before it happen)."""
    real_save, real_history, real_plot = trainer.save_checkpoint, trainer.write_history, trainer.plot_run
    real_flush = SummaryWriter.flush
    flushes = {"n": 0}

    def save(payload, path):
        if payload["epoch"] == 2 and not payload["step_in_epoch"] and path.name == point:
            raise Crash(point)
        real_save(payload, path)

    def history(rows, run_dir):
        if len(rows) == 2 and point == "metrics":
            raise Crash(point)
        real_history(rows, run_dir)

    def plot(rows, run_dir, teacher_terms=()):
        if len(rows) == 2 and point == "plots":
            raise Crash(point)
        return real_plot(rows, run_dir, teacher_terms=teacher_terms)

    def flush(self):
        flushes["n"] += 1
        if flushes["n"] == 2 and point == "tensorboard":
            raise Crash(point)
        real_flush(self)

    monkeypatch.setattr(trainer, "save_checkpoint", save)
    monkeypatch.setattr(trainer, "write_history", history)
    monkeypatch.setattr(trainer, "plot_run", plot)
    monkeypatch.setattr(SummaryWriter, "flush", flush)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_between_the_writes_of_an_epoch_resumes_to_the_straight_result(setup, monkeypatch, point):
    root, cfg = setup["root"], setup["cfg"]
    straight_dir = root / "results/straight"
    straight_best = torch.load(straight_dir / "best.pt", weights_only=True)
    assert straight_best["epoch"] == 2  # the crash hits a new best
    exp = f"crash_{point}"
    with monkeypatch.context() as patch:
        _crash_in_epoch_2(patch, point)
        with pytest.raises(Crash):
            train.run(["--cfg", cfg, "--exp_name", exp])
    run_dir = root / "results" / exp
    train.run(["--cfg", cfg, "--exp_name", exp, "--resume"])
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert (best["epoch"], best["best_epoch"]) == (2, 2)
    for key, tensor in straight_best["model"].items():
        assert torch.equal(best["model"][key], tensor), key
    assert _rows(run_dir) == _rows(straight_dir)
    results = json.loads((run_dir / "test_results.json").read_text())
    assert results["by_type"] == json.loads((straight_dir / "test_results.json").read_text())["by_type"]


def test_resume_with_best_checkpoint_lost_is_a_clear_error(setup, tmp_path):
    import shutil
    run_dir = setup["root"] / "results/lost_best"
    shutil.copytree(setup["root"] / "results/straight", run_dir)
    last = torch.load(run_dir / "last.pt", weights_only=True)
    last["epoch"], last["best_epoch"] = 2, 1  # epoch 1 named the best, but best.pt holds epoch 2
    torch.save(last, run_dir / "last.pt")
    with pytest.raises(CheckpointError, match=r"best\.pt holds epoch 2 but .*last\.pt names epoch 1"):
        train.run(["--cfg", setup["cfg"], "--exp_name", "lost_best", "--resume"])


# ------------------------------------------------------------------------------------------ item: the run folder
def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


HOLD_LOCK = """
import fcntl, os, socket, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()} {socket.gethostname()}\\n".encode())
print("ready", flush=True)
sys.stdin.read()
"""


def _hold_lock(path):
    """A live process holding ``path``'s flock (as a running training run does) until its stdin is closed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    return holder


def test_a_second_run_into_a_locked_folder_is_refused(setup, capsys):
    run_dir = setup["root"] / "results/straight"
    before = _digests(run_dir)
    holder = _hold_lock(run_dir / LOCK_NAME)
    try:
        assert train.main(["--cfg", setup["cfg"], "--exp_name", "straight", "--resume"]) == 2
    finally:
        holder.stdin.close()
        holder.wait()
        (run_dir / LOCK_NAME).unlink()
    err = capsys.readouterr().err
    assert f"in use by process {holder.pid}" in err and len(err.strip().splitlines()) == 1
    assert _digests(run_dir) == before


def test_a_reused_pid_does_not_make_a_stale_lock_look_held(setup, capsys):
    """The lock named a pid that a new, unrelated process now has (here: our parent): it used to look held."""
    run_dir = setup["root"] / "results/reused_pid"
    run_dir.mkdir(parents=True)
    (run_dir / LOCK_NAME).write_text(f"{os.getppid()} {os.uname().nodename}\n")
    train.run(["--cfg", setup["cfg"], "--exp_name", "reused_pid", "train.max_epochs=1"])
    assert f"taking over the lock of process {os.getppid()}" in capsys.readouterr().out
    assert (run_dir / "best.pt").is_file() and not (run_dir / LOCK_NAME).exists()


TAKE_OVER = """
import os, sys, time
from pathlib import Path
from training.run_dir import RunFolderError, RunLock
run_dir, start_at, trials = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
for trial in range(trials):
    while time.time() < start_at + trial * 0.05:
        pass
    try:
        lock = RunLock(run_dir / str(trial)).acquire()
        print("took", trial, flush=True)
    except RunFolderError:
        print("refused", trial, flush=True)
# Hold every lock taken until both racers are through (a racer started late on a loaded machine must not find the
# other one's locks released by its exit, which would be a legitimate takeover of a dead holder's lock).
(run_dir / f"done.{os.getpid()}").touch()
deadline = time.time() + 100
while len(list(run_dir.glob("done.*"))) < 2 and time.time() < deadline:
    time.sleep(0.01)
"""


def test_two_processes_never_both_take_over_one_stale_lock(tmp_path):
    """Checking that the holder is gone and deleting its lock were two steps: in 3-71 of 100 trials both of two
    processes took over one stale lock. Now exactly one takes it (it keeps it: its flock is held until exit)."""
    trials = 100
    for trial in range(trials):
        (tmp_path / str(trial)).mkdir()
        (tmp_path / str(trial) / LOCK_NAME).write_text(f"{_dead_pid()} {os.uname().nodename}\n")
    start_at = time.time() + 2.0
    racers = [subprocess.Popen([sys.executable, "-c", TAKE_OVER, str(tmp_path), str(start_at), str(trials)],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
              for _ in range(2)]
    outputs = [racer.communicate(timeout=120)[0] for racer in racers]
    took = [line.split()[1] for output in outputs for line in output.splitlines() if line.startswith("took")]
    assert sorted(took, key=int) == [str(t) for t in range(trials)], outputs  # each trial: exactly one winner


def test_a_stale_lock_is_taken_over_with_a_warning(setup, capsys):
    run_dir = setup["root"] / "results/stale"
    run_dir.mkdir(parents=True)
    dead = _dead_pid()
    (run_dir / LOCK_NAME).write_text(f"{dead} {os.uname().nodename}\n")
    train.run(["--cfg", setup["cfg"], "--exp_name", "stale", "train.max_epochs=1"])
    assert f"taking over the lock of process {dead}" in capsys.readouterr().out
    assert not (run_dir / LOCK_NAME).exists() and (run_dir / "best.pt").is_file()


def test_rerunning_a_finished_run_needs_resume_or_overwrite(setup, capsys):
    run_dir = setup["root"] / "results/straight"
    before = _digests(run_dir)
    assert train.main(["--cfg", setup["cfg"], "--exp_name", "straight"]) == 2
    err = capsys.readouterr().err.strip()
    assert "use --resume to continue it or --overwrite to start over" in err and len(err.splitlines()) == 1
    assert _digests(run_dir) == before
    # --overwrite with a bad value fails before touching anything
    assert train.main(["--cfg", setup["cfg"], "--exp_name", "straight", "--overwrite",
                       "dataset.train_question_pt=gone.pt"]) == 2
    assert "gone.pt" in capsys.readouterr().err
    assert _digests(run_dir) == before
    assert train.main(["--cfg", setup["cfg"], "--exp_name", "straight", "--resume", "--overwrite"]) == 2


def test_overwrite_starts_over_from_an_empty_folder(setup, tmp_path):
    import shutil
    run_dir = setup["root"] / "results/redo"
    shutil.copytree(setup["root"] / "results/straight", run_dir)
    train.run(["--cfg", setup["cfg"], "--exp_name", "redo", "--overwrite", "train.max_epochs=1", "--seed", "9"])
    assert [row["epoch"] for row in json.loads((run_dir / "metrics.json").read_text())] == [1]
    assert torch.load(run_dir / "best.pt", weights_only=True)["config"]["seed"] == 9
    assert len(list((run_dir / "tensorboard").iterdir())) == 1  # the earlier run's events are gone


# --------------------------------------------------------------------------------- item: bad checkpoints, outputs
@pytest.fixture()
def bad_files(tmp_path):
    (tmp_path / "random.pt").write_bytes(os.urandom(4096))
    with open(tmp_path / "plain_dict.pt", "wb") as f:
        pickle.dump({"weights": [1, 2, 3]}, f)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign_dict.pt")
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    return tmp_path


@pytest.mark.parametrize("name", ["random.pt", "plain_dict.pt", "foreign_dict.pt", "list.pt"])
def test_foreign_files_are_not_checkpoints_of_this_project(setup, bad_files, capsys, name):
    path = bad_files / name
    assert validate.main(["--ckpt", str(path), "--cfg", setup["cfg"]]) == 2
    assert f"{path} (from --ckpt) is not a checkpoint written by this project" in capsys.readouterr().err
    assert train.main(["--cfg", setup["cfg"], "--exp_name", f"kd_{name}", "--graph_layers", "1",
                       "--teacher_ckpt", str(path)]) == 2
    assert "is not a checkpoint written by this project" in capsys.readouterr().err
    run_dir = setup["root"] / "results" / f"resume_{name}"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "last.pt").write_bytes(path.read_bytes())
    assert train.main(["--cfg", setup["cfg"], "--exp_name", f"resume_{name}", "--resume"]) == 2
    assert "(from --resume) is not a checkpoint written by this project" in capsys.readouterr().err


@pytest.mark.parametrize("change, words", [
    ({"graph_layers": 3}, ["graph_layers=3", "units.units.0.graph_layers.2."]),
    ({"graph_layers": 1}, ["graph_layers=1", "units.units.0.graph_layers.1."]),
    ({"word_dim": 12}, ["word_dim=12", "question_encoder.embedding.weight"]),
])
def test_model_config_that_does_not_match_the_tensors_names_key_and_tensor(setup, tmp_path, capsys, change, words):
    ckpt = torch.load(setup["root"] / "results/straight/best.pt", weights_only=True)
    ckpt["model_config"].update(change)
    torch.save(ckpt, tmp_path / "edited.pt")
    assert validate.main(["--ckpt", str(tmp_path / "edited.pt"), "--cfg", setup["cfg"]]) == 2
    err = capsys.readouterr().err
    assert "model config does not match its tensors" in err and all(w in err for w in words), err


def test_absurd_sizes_are_refused_before_allocating(setup, tmp_path, capsys):
    ckpt = torch.load(setup["root"] / "results/straight/best.pt", weights_only=True)
    ckpt["model_config"]["mfb_dim"] = 10 ** 12
    torch.save(ckpt, tmp_path / "huge.pt")
    assert validate.main(["--ckpt", str(tmp_path / "huge.pt"), "--cfg", setup["cfg"]]) == 2
    assert "GiB for its weights alone" in capsys.readouterr().err
    assert train.main(["--cfg", setup["cfg"], "--exp_name", "huge", "model.mfb_dim=1000000000000"]) == 2
    err = capsys.readouterr().err
    assert "config section 'model'" in err and "GiB" in err
    assert not (setup["root"] / "results/huge").exists()


def test_unwritable_results_folder_is_one_line_naming_it(setup, tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the results folder should be")
    assert train.main(["--cfg", setup["cfg"], "dataset.save_dir=" + str(blocker)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write " + str(blocker)) and len(err.splitlines()) == 1


def test_full_disk_stops_with_the_path_and_leaves_no_partial_file(setup, monkeypatch, capsys):
    def no_space(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("utils.atomic.os.fsync", no_space)
    assert train.main(["--cfg", setup["cfg"], "--exp_name", "full"]) == 2
    run_dir = setup["root"] / "results/full"
    err = capsys.readouterr().err.strip()
    assert f"cannot write {run_dir / 'config.yaml'}: No space left on device" in err
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))
    assert not (run_dir / "config.yaml").exists() and not (run_dir / LOCK_NAME).exists()


# ------------------------------------------------------------------------------------------- the student's size
def test_distilling_into_a_teacher_sized_student_needs_the_key(setup, capsys):
    teacher = str(setup["root"] / "results/straight/best.pt")
    assert train.main(["--cfg", setup["cfg"], "--exp_name", "big_student", "--teacher_ckpt", teacher]) == 2
    err = capsys.readouterr().err
    assert "distill.allow_larger_student=true" in err and "--graph_layers 1" in err
    assert not (setup["root"] / "results/big_student").exists()
    summary = train.run(["--cfg", setup["cfg"], "--exp_name", "big_student", "--teacher_ckpt", teacher,
                         "distill.allow_larger_student=true", "train.max_epochs=1"])
    assert summary["mode"] == "kd"
