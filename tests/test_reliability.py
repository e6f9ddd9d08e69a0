"""Second reliability round (issue 23): one-line errors where tracebacks were, checks made before results or run
folders exist. Each test names the behaviour it guards and how it failed before."""
import errno
import json
import os

import pytest
import torch

import train
import validate
from train_fixtures import write_config, write_tiny_dataset
from training.checkpoint import save_checkpoint
from utils.atomic import OutputWriteError
from utils.config import ConfigError
from training.run_schema import load_config

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, single_thread):
    root = tmp_path_factory.mktemp("reliability")
    data = write_tiny_dataset(root / "data", seed=2)
    cfg = write_config(root / "tiny.yml", data, root / "results", train={"max_epochs": 1})
    train.run(["--cfg", str(cfg), "--exp_name", "teacher"])
    return {"root": root, "data": data, "cfg": str(cfg), "ckpt": str(root / "results/teacher/best.pt")}


def test_a_full_disk_while_writing_a_checkpoint_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    """torch's zip writer turned ENOSPC into 'RuntimeError: [enforce fail ...] unexpected pos'."""
    import utils.atomic
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)
    before = path.read_bytes()
    real_open = open

    class FullDisk:
        def __init__(self, file):
            self.file, self.written = file, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 500:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

    monkeypatch.setattr(utils.atomic, "open", lambda p, mode: FullDisk(real_open(p, mode)), raising=False)
    with pytest.raises(OutputWriteError) as error:
        save_checkpoint({"epoch": 2, "weights": torch.zeros(10_000)}, path)
    assert str(error.value) == f"cannot write {path}: No space left on device"
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@pytest.mark.parametrize("flag", ["--json", "--write_preds"])
def test_validate_checks_its_output_files_before_evaluating(tiny, tmp_path, monkeypatch, capsys, flag):
    """An unwritable --json/--out/--write_preds was found only after the evaluation (results computed, then
    lost in a traceback)."""
    import training.evaluation
    evaluated = []
    monkeypatch.setattr(training.evaluation, "evaluate_checkpoint", lambda *a, **k: evaluated.append(1))
    (tmp_path / "taken").mkdir()
    assert validate.main(["--ckpt", tiny["ckpt"], flag, str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot write {tmp_path / 'taken'} ({flag}): it is a folder" in err
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if not os.access(readonly, os.W_OK):  # root writes into read-only folders: nothing to check then
            assert validate.main(["--ckpt", tiny["ckpt"], flag, str(readonly / "out.json")]) == 2
            assert "Permission denied" in capsys.readouterr().err
    finally:
        readonly.chmod(0o700)
    assert not evaluated


def test_validate_with_no_test_video_features_is_one_line(tiny, capsys):
    """With eval.missing_features=exclude and no usable test video, validate.py ended in an IndexError."""
    import h5py
    import shutil
    root = tiny["root"]
    features = root / "no_features"
    shutil.copytree(tiny["data"].data_dir, features)
    with h5py.File(features / tiny["data"].appearance_path.name, "r+") as f:
        f["valid"][...] = 0
    assert validate.main(["--ckpt", tiny["ckpt"], "--cfg", tiny["cfg"], f"dataset.data_dir={features}",
                          "eval.missing_features=exclude"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none of its" in err and "usable features" in err


@pytest.mark.parametrize("override, key", [("seed=-1", "seed"), ("seed=99999999999999999999", "seed"),
                                           ("train.batch_size=1", "train.batch_size")])
def test_seeds_and_batch_size_fail_before_the_run_folder_exists(tiny, tmp_path, capsys, override, key):
    """Negative or huge seeds failed after the run folder existed; train.batch_size=1 failed in BatchNorm during
    epoch 1."""
    with pytest.raises(ConfigError, match=key):
        load_config(tiny["cfg"], [override])
    assert train.main(["--cfg", tiny["cfg"], "--exp_name", "never", override,
                       f"dataset.save_dir={tmp_path / 'results'}"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not (tmp_path / "results").exists()
    assert train.main(["--cfg", tiny["cfg"], "--exp_name", "never", "--seed", "-5",
                       f"dataset.save_dir={tmp_path / 'results'}"]) == 2
    assert not (tmp_path / "results").exists()


def test_sweep_refuses_a_seed_out_of_range(capsys):
    import sweep
    with pytest.raises(SystemExit) as exit_:
        sweep.main(["--cfg", "configs/demo_student.yml", "--seeds", "0", "-3"])
    assert exit_.value.code == 2 and "outside [0, 2**31)" in capsys.readouterr().err


def test_json_results_are_written_whole(tiny, tmp_path):
    out = tmp_path / "r.json"
    validate.main(["--ckpt", tiny["ckpt"], "--json", str(out)])
    assert json.loads(out.read_text())["mode"] == "teacher"


def test_an_unclosed_quote_in_a_question_table_is_refused_naming_its_line(tmp_path):
    """An unclosed quote in a TGIF-QA TSV silently swallowed every following row (pandas, which HCRN reads these
    files with, refuses the file); quotes pandas accepts still read as before."""
    from preprocess.datasets.base import DatasetLayoutError
    from preprocess.datasets.qa_csv import read_table
    path = tmp_path / "Train_frameqa_question.tsv"
    path.write_text('gif_name\tquestion\tanswer\ntumblr_a\twhat is "red\tcar\ntumblr_b\twhat is it\tdog\n'
                    'tumblr_c\t"what\tcat\n')
    with pytest.raises(DatasetLayoutError, match=r"Train_frameqa_question.tsv:4: a quoted field starting on this line "
                                                 r"is never closed"):
        read_table(path, ("gif_name", "question", "answer"), "\t")
    path.write_text('gif_name\tquestion\tanswer\ntumblr_a\t"a ""quoted"" word"\tcar\ntumblr_b\t"two\nlines"\tdog\n')
    rows = read_table(path, ("gif_name", "question", "answer"), "\t")
    assert [r.fields["question"] for r in rows] == ['a "quoted" word', "two\nlines"] and [r.line for r in rows] == [2, 3]


def _copy_data(tiny, tmp_path):
    import shutil
    target = tmp_path / "data"
    shutil.copytree(tiny["data"].data_dir, target)
    return target, target / tiny["data"].appearance_path.name


def _rewrite(path, edit):
    """Rewrite an HDF5 feature file, ``edit(name, array)`` returning what to store under each name (None: drop)."""
    import h5py
    with h5py.File(path, "r") as f:
        content = {name: f[name][()] for name in f}
        attrs = dict(f.attrs)
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
        for name, array in content.items():
            edit(f, name, array)


@pytest.mark.parametrize("change, message", [
    ("valid_as_strings", "'valid' must hold 0/1"),
    ("valid_as_group", "'valid' is a group, expected a dataset"),
    ("features_as_group", "'resnet_features' is a group, expected a dataset"),
])
def test_malformed_feature_files_are_one_line(tiny, tmp_path, capsys, change, message):
    """A `valid` mask of strings counted every video valid; `resnet_features`/`valid` stored as a group ended in a
    traceback."""
    data_dir, appearance = _copy_data(tiny, tmp_path)

    def edit(f, name, array):
        if change == "valid_as_strings" and name == "valid":
            f.create_dataset(name, data=[b"no"] * len(array))
        elif (change == "valid_as_group" and name == "valid") or (change == "features_as_group" and
                                                                  name == "resnet_features"):
            f.create_group(name).create_dataset("x", data=array)
        else:
            f.create_dataset(name, data=array)
    _rewrite(appearance, edit)
    assert validate.main(["--ckpt", tiny["ckpt"], "--cfg", tiny["cfg"], f"dataset.data_dir={data_dir}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(appearance) in err


def test_a_damaged_compressed_chunk_is_one_line_naming_the_file(tiny, tmp_path, capsys):
    """Damaged gzip chunks in an HDF5 feature file ended in h5py's OSError traceback."""
    import h5py
    data_dir, appearance = _copy_data(tiny, tmp_path)

    def edit(f, name, array):
        if name == "resnet_features":
            f.create_dataset(name, data=array, chunks=(1,) + array.shape[1:], compression="gzip")
        else:
            f.create_dataset(name, data=array)
    _rewrite(appearance, edit)
    with h5py.File(appearance, "r") as f:
        chunks = [f["resnet_features"].id.get_chunk_info(i) for i in range(f["resnet_features"].id.get_num_chunks())]
    with open(appearance, "r+b") as f:
        for chunk in chunks:
            f.seek(chunk.byte_offset + 2)
            f.write(b"\xff" * max(1, chunk.size - 4))
    assert validate.main(["--ckpt", tiny["ckpt"], "--cfg", tiny["cfg"], f"dataset.data_dir={data_dir}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{appearance}: cannot read its features, the file is damaged" in err


def test_resume_notes_reach_train_log_and_max_epochs_cannot_go_below_the_epochs_done(tiny, capsys):
    """'resume: ... may change' lines were printed before train.log was open and never reached it; lowering
    train.max_epochs below the epochs done exited 0 with config.yaml and metrics.csv disagreeing."""
    import shutil
    from training.checkpoint import CheckpointError
    results = tiny["root"] / "results"
    shutil.copytree(results / "teacher", results / "more")
    (results / "more" / "run.lock").unlink(missing_ok=True)
    train.run(["--cfg", tiny["cfg"], "--exp_name", "more", "--resume", "train.max_epochs=2"])
    log = (results / "more" / "train.log").read_text()
    assert "resume: train.max_epochs: checkpoint 1 vs this run 2 (this key may change on resume)" in log
    config_before = (results / "more" / "config.yaml").read_text()
    with pytest.raises(CheckpointError, match=r"train.max_epochs=1 is below the 2 epochs the run has done"):
        train.run(["--cfg", tiny["cfg"], "--exp_name", "more", "--resume", "train.max_epochs=1"])
    assert (results / "more" / "config.yaml").read_text() == config_before
    assert train.main(["--cfg", tiny["cfg"], "--exp_name", "more", "--resume", "train.max_epochs=1"]) == 2


@pytest.mark.parametrize("video_id", ['"7"', "true", "1.5"])
def test_msvd_style_video_ids_must_be_json_integers(tmp_path, video_id):
    """Extraction accepted "7", true and 1.5 as MSVD-QA/MSRVTT-QA video ids (int() of each)."""
    from preprocess.datasets.base import DatasetLayoutError
    from preprocess.datasets.qa_json import read_qa_video_ids
    (tmp_path / "train_qa.json").write_text(
        f'[{{"answer": "a", "id": 0, "question": "what?", "video_id": 3}}, '
        f'{{"answer": "a", "id": 1, "question": "what?", "video_id": {video_id}}}]')
    with pytest.raises(DatasetLayoutError, match=r"train_qa.json: entry 1 has no integer 'video_id'"):
        read_qa_video_ids(tmp_path)


def test_a_deeply_nested_qa_json_is_one_line(tmp_path):
    """A 100,000-deep JSON list in a QA file ended in RecursionError."""
    from preprocess.datasets.base import DatasetLayoutError
    from preprocess.datasets.qa_json import read_qa_video_ids
    (tmp_path / "train_qa.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetLayoutError) as error:
        read_qa_video_ids(tmp_path)
    assert "nested too deeply" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_an_exp_name_that_is_no_folder_name_is_refused(tiny, tmp_path, name):
    """--exp_name "" wrote the run's files into the results root."""
    assert train.main(["--cfg", tiny["cfg"], "--exp_name", name, f"dataset.save_dir={tmp_path / 'results'}"]) == 2
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("when", ["start", "write"])
def test_a_full_disk_for_tensorboard_is_one_line(tiny, tmp_path, monkeypatch, capsys, when):
    """Disk full when TensorBoard's writer starts or writes ended in a traceback."""
    import torch.utils.tensorboard
    real = torch.utils.tensorboard.SummaryWriter

    class FullDiskWriter(real):
        def __init__(self, *args, **kwargs):
            if when == "start":
                raise OSError(errno.ENOSPC, "No space left on device")
            super().__init__(*args, **kwargs)

        def flush(self):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            pass

    monkeypatch.setattr(torch.utils.tensorboard, "SummaryWriter", FullDiskWriter)
    assert train.main(["--cfg", tiny["cfg"], "--exp_name", f"tb_{when}", f"dataset.save_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot write {tmp_path / f'tb_{when}' / 'tensorboard'}: No space" in err


@pytest.mark.parametrize("value", ["../../etc/passwd", "/abs/1", "1006/../x", "a//b", ""])
def test_a_nextqa_map_value_cannot_leave_the_video_folder(tmp_path, value):
    """A NExT-QA map value with '../' was used as a path."""
    from preprocess.datasets.base import DatasetLayoutError
    from preprocess.datasets.nextqa import read_video_map
    path = tmp_path / "map_vid_vidorID.json"
    path.write_text(json.dumps({"3": "1006/4010069381", "4": value}))
    with pytest.raises(DatasetLayoutError, match="entry '4'"):
        read_video_map(path)
    path.write_text(json.dumps({"3": "1006/4010069381"}))
    assert read_video_map(path) == {3: "1006/4010069381"}


def test_resume_with_the_teacher_at_another_path_is_refused_naming_the_key(tiny, tmp_path):
    """Decision (issue 23): a moved teacher file stays refused on --resume; the path is part of the run's config
    (a content fingerprint would let a moved file through, but also one replaced under the old name)."""
    import shutil
    from training.checkpoint import CheckpointError
    teacher = tmp_path / "teacher.pt"
    shutil.copy(tiny["ckpt"], teacher)
    common = ["--cfg", tiny["cfg"], "--exp_name", "kd", "--graph_layers", "1", f"dataset.save_dir={tmp_path}"]
    train.run(common + ["--teacher_ckpt", str(teacher)])
    moved = tmp_path / "moved" / "teacher.pt"
    moved.parent.mkdir()
    shutil.move(teacher, moved)
    with pytest.raises(CheckpointError, match=rf"distill.teacher_ckpt: checkpoint {teacher} vs this run {moved}"):
        train.run(common + ["--teacher_ckpt", str(moved), "--resume", "train.max_epochs=2"])


def test_the_run_lock_falls_back_to_the_pid_on_a_file_system_without_flock(tmp_path, monkeypatch, caplog):
    """A file system without flock (Lustre mounted without it) must not make training impossible."""
    import fcntl
    from training.run_dir import LOCK_NAME, RunFolderError, RunLock

    def no_flock(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(fcntl, "flock", no_flock)
    lock = RunLock(tmp_path / "run").acquire()
    assert (tmp_path / "run" / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    with pytest.raises(RunFolderError, match=f"in use by process {os.getpid()}"):
        RunLock(tmp_path / "run").acquire()
    lock.release()
    assert not (tmp_path / "run").exists()


def test_a_double_ctrl_c_in_a_sweep_reads_ctrl_c(monkeypatch, capsys, tmp_path):
    """A second Ctrl-C raises a bare KeyboardInterrupt: the sweep printed 'interrupted ()'."""
    import sweep
    from training import sweep_launch
    monkeypatch.setattr(sweep_launch, "launch_local", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert sweep.main(["--cfg", "configs/demo_student.yml", "--out", str(tmp_path), "--seeds", "0"]) == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C)" in err and "()" not in err


def test_validate_refuses_a_negative_max_examples(tiny, capsys):
    with pytest.raises(SystemExit) as exit_:
        validate.main(["--compare", tiny["ckpt"], tiny["ckpt"], "--names", "a", "b", "--max_examples", "-1"])
    assert exit_.value.code == 2 and "--max_examples must be >= 0, got -1" in capsys.readouterr().err
