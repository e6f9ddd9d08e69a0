"""sweep.py on the tiny dataset: the runs it plans, the summary it writes, reuse and resume on a second invocation,
seeds that reproduce, the one-subprocess-per-GPU launcher and the Slurm path through submitit's local executor; and
sweeps on the multiple-choice (file categories, groups) and count (MSE) fixtures."""
import hashlib
import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch

import sweep
from training import train_command as train
import training.evaluation
import training.trainer
from train_fixtures import write_config, write_tiny_dataset
from training import sweep_launch, sweep_report
from training.sweep_plan import SweepError, parse_grid, plan_sweep

pytestmark = pytest.mark.usefixtures("single_thread")
SEEDS = ["0", "1"]


def _configs(root, answer_type="open_ended"):
    data = write_tiny_dataset(root / "data", answer_type=answer_type, file_categories=answer_type == "multiple_choice")
    write_config(root / "tiny.yml", data, root / "results", answer_type=answer_type, train={"max_epochs": 1})
    student = root / "tiny_student.yml"
    student.write_text("_base_: tiny.yml\nmodel:\n  graph_layers: 1\n")
    return student


@pytest.fixture(scope="module")
def swept(tmp_path_factory, single_thread):
    """A finished two-seed sweep (shared teacher, no grid), trained in this process without per-epoch plots."""
    root = tmp_path_factory.mktemp("sweep")
    student = _configs(root)
    argv = ["--cfg", str(student), "--out", str(root / "sweep"), "--seeds", *SEEDS]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.trainer, "plot_run", lambda *a, **k: None)
        summary = sweep.run(argv)
    return {"root": root, "out": root / "sweep", "argv": argv, "summary": summary, "student": student}


def _predictions(run_dir):
    return json.loads((run_dir / "test_predictions.json").read_text())


def _assert_tests_match_a_separate_permutation_test(out, summary):
    """Every test of summary.json against a separate call of the paired test on the per-question outcomes read back
    from the runs' test_predictions.json files (correct, or squared_error for MSE)."""
    from training.significance import paired_permutation_test
    outcome = "squared_error" if summary["metric"] == "MSE" else "correct"

    def runs(model):
        return np.array([_predictions(out / run)["questions"][outcome] for run in summary["models"][model]["runs"]],
                        dtype=float)
    assert summary["tests"]
    for test in summary["tests"]:
        expected = paired_permutation_test(runs(test["a"]), runs(test["b"]))
        assert test["p_value"] == expected.p_value and test["method"] == expected.method
        assert test["differing_questions"] == expected.num_differing
        assert test["mean_difference"] == pytest.approx(expected.mean_difference)


def test_summary_has_every_model_with_seed_statistics(swept):
    out, summary = swept["out"], swept["summary"]
    assert json.loads((out / "summary.json").read_text()) == summary
    models = summary["models"]
    assert list(models) == ["Teacher", "Student", "Student-KD"]
    assert summary["metric"] == "accuracy" and summary["lower_is_better"] is False
    assert summary["columns"] == ["all", "what", "who", "how", "when", "where"] and summary["groups"] == []
    assert models["Teacher"]["seeds"] == [0] and models["Student-KD"]["seeds"] == [0, 1]
    for name, entry in models.items():
        truth = [json.loads((out / run / "test_results.json").read_text())["all"] for run in entry["runs"]]
        assert entry["accuracy"]["values"] == pytest.approx(truth)
        assert entry["accuracy"]["mean"] == pytest.approx(np.mean(truth))
        assert entry["accuracy"]["std"] == pytest.approx(np.std(truth, ddof=1) if len(truth) > 1 else 0.0)
        assert set(entry["per_type"]) <= {"what", "who", "how", "when", "where", "other"} and entry["per_type"]
        assert entry["parameters"] > 0
        for run in entry["runs"]:
            predictions = _predictions(out / run)
            assert sum(predictions["questions"]["correct"]) == predictions["accuracy"]["correct"]
    assert models["Student"]["settings"]["train.mode"] == "student"
    assert {(t["a"], t["b"]) for t in summary["tests"]} == {("Student-KD", "Student"), ("Student-KD", "Teacher")}
    _assert_tests_match_a_separate_permutation_test(out, summary)
    for test in summary["tests"]:
        kd = models[test["a"]]["accuracy"]["mean"]
        assert test["mean_difference"] == pytest.approx(kd - models[test["b"]]["accuracy"]["mean"])
    text = (out / "summary.md").read_text()
    assert "| model | parameters | All | What | Who | How | When | Where |" in text and "Method:" in text
    assert "| Student-KD | Teacher |" in text and "Seeds: Teacher 0; Student 0, 1" in text
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_second_invocation_reuses_runs_and_predictions(swept, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("the second invocation must not train or evaluate")
    monkeypatch.setattr(train, "run", refuse)
    monkeypatch.setattr(training.evaluation, "SplitEvaluator", refuse)
    mtimes = {p: p.stat().st_mtime_ns for p in swept["out"].glob("*/best.pt")}
    assert sweep.run(swept["argv"]) == swept["summary"]
    assert mtimes == {p: p.stat().st_mtime_ns for p in swept["out"].glob("*/best.pt")}


def test_the_sweep_reads_the_trainers_test_predictions_and_reports_the_same(tmp_path, monkeypatch):
    """The trainer writes best.pt's test predictions (its last pass), so a sweep never evaluates best.pt again; the
    report equals the one made by evaluating every run's best.pt (their files removed, as for older runs)."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the sweep must read the trainer's test predictions, not evaluate again")
    argv = ["--cfg", str(_configs(tmp_path)), "--out", str(tmp_path / "sweep"), "--seeds", "0"]
    monkeypatch.setattr(training.trainer, "plot_run", lambda *a, **k: None)
    with monkeypatch.context() as mp:
        mp.setattr(training.evaluation, "SplitEvaluator", refuse)
        read = sweep.run(argv)
    written = {p: _predictions(p.parent) for p in (tmp_path / "sweep").glob("*/test_predictions.json")}
    assert len(written) == 3  # teacher, student, distilled student
    from training.run_schema import load_config
    for path, trainers in written.items():  # keyed on the run's own config.yaml, hashed here independently
        config = json.dumps(load_config(path.parent / "config.yaml"), sort_keys=True, default=str).encode("utf-8")
        assert trainers["config_sha256"] == hashlib.sha256(config).hexdigest()
    for path in written:
        path.unlink()
    assert sweep.run(argv) == read
    for path, trainers in written.items():
        evaluated = _predictions(path.parent)
        assert evaluated["questions"] == trainers["questions"] and evaluated["accuracy"] == trainers["accuracy"]


def test_runs_trained_in_bf16_are_evaluated_again_in_float32(tmp_path, monkeypatch):
    """The trainer's test pass of a bf16 run can differ from validate.py's float32 one by rounding: the sweep
    evaluates those runs itself, so its report is the float32 one whatever the training precision."""
    calls = []
    real = training.evaluation.SplitEvaluator

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(training.trainer, "plot_run", lambda *a, **k: None)
    monkeypatch.setattr(training.evaluation, "SplitEvaluator", counting)
    argv = ["--cfg", str(_configs(tmp_path)), "train.amp=bf16", "--out", str(tmp_path / "sweep"), "--seeds", "0"]
    sweep.run(argv)
    assert len(calls) == 1  # one evaluator (made once), for the runs the trainer left to the sweep
    assert all(_predictions(p.parent)["questions"] for p in (tmp_path / "sweep").glob("*/test_predictions.json"))


def test_an_interrupted_run_is_resumed(swept, monkeypatch):
    run_dir = swept["out"] / "student__seed1"
    (run_dir / "test_results.json").unlink()
    calls = []
    real_run = train.run

    def record(argv):
        calls.append(argv)
        return real_run(argv)
    monkeypatch.setattr(train, "run", record)
    monkeypatch.setattr(training.trainer, "plot_run", lambda *a, **k: None)
    sweep.run(swept["argv"])
    assert len(calls) == 1 and "--resume" in calls[0] and calls[0][calls[0].index("--exp_name") + 1] == run_dir.name
    assert (run_dir / "test_results.json").is_file()


@pytest.mark.parametrize("change", [["train.max_epochs=2"], "seeds 1 0"])
def test_finished_runs_of_other_settings_are_refused_not_reported(swept, monkeypatch, change):
    """A rerun with other settings reused the finished runs without a word (module_dim 64, max_epochs 5 reported
    the 32-dim 2-epoch runs); --seeds 1 0 labelled a new teacher__seed1 the Teacher of students distilled from
    teacher__seed0."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("nothing may be trained")
    monkeypatch.setattr(train, "run", refuse)
    argv = list(swept["argv"])
    if change == "seeds 1 0":
        argv[argv.index("--seeds") + 1:] = ["1", "0"]
        key = "distill.teacher_ckpt"
    else:
        argv[argv.index("--seeds"):argv.index("--seeds")] = change
        key = "train.max_epochs"
    with pytest.raises(SweepError, match=f"holds a finished run trained with other settings .*{key}"):
        sweep.run(argv)
    assert sweep.main(argv) == 2


def test_a_folder_without_last_pt_is_never_deleted(tmp_path):
    """prepare() removed a run folder with no last.pt, including another process's live run.lock (two sweeps on
    one --out trained in one folder)."""
    from training.sweep_plan import prepare
    plan = plan_sweep(_configs(tmp_path), [0], [], tmp_path / "out", [])
    run = plan.teachers[0]
    run_dir = tmp_path / "out" / run.folder
    run_dir.mkdir(parents=True)
    (run_dir / "run.lock").write_text(f"{os.getpid()} host\n")
    (run_dir / "train.log").write_text("epoch 1 of another sweep's run\n")
    assert prepare(run, tmp_path / "out") == list(run.train_args)
    assert (run_dir / "run.lock").is_file() and (run_dir / "train.log").is_file()


def test_seeds_give_different_models(swept):
    weights = [torch.load(swept["out"] / f"student__seed{s}" / "best.pt", weights_only=True)["model"] for s in SEEDS]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_grid_plan_shares_plain_students_across_distill_values(tmp_path):
    student = _configs(tmp_path)
    grid = parse_grid(["distill.lambda_motion=1,10", "train.lr=0.001,0.01"])
    plan = plan_sweep(student, [0, 1], grid, tmp_path / "out", ["train.max_epochs=2"])
    assert [r.folder for r in plan.teachers] == ["teacher__seed0"]
    plain = sorted(r.folder for r in plan.students if r.kind == "student")
    assert plain == ["student__train.lr=0.001__seed0", "student__train.lr=0.001__seed1",
                     "student__train.lr=0.01__seed0", "student__train.lr=0.01__seed1"]
    kd = [r for r in plan.students if r.kind == "kd"]
    assert len(kd) == 8 and kd[0].model == "Student-KD[distill.lambda_motion=1,train.lr=0.001]"
    assert kd[0].folder == "student_kd__distill.lambda_motion=1,train.lr=0.001__seed0"
    assert "train.max_epochs=2" in kd[0].train_args and "distill.lambda_motion=1" in kd[0].train_args
    assert str(tmp_path / "out" / "teacher__seed0" / "best.pt") in kd[1].train_args  # the shared teacher, seed 1
    assert ("Student-KD[distill.lambda_motion=10,train.lr=0.01]", "Student[train.lr=0.01]") in plan.pairs


def test_per_seed_teachers(tmp_path):
    plan = plan_sweep(_configs(tmp_path), [3, 4], [], tmp_path / "out", [], teacher_mode="per_seed")
    assert [r.folder for r in plan.teachers] == ["teacher__seed3", "teacher__seed4"]
    kd4 = next(r for r in plan.students if r.kind == "kd" and r.seed == 4)
    assert str(tmp_path / "out" / "teacher__seed4" / "best.pt") in kd4.train_args


def test_bad_arguments_fail_early_naming_the_flag(tmp_path, capsys):
    student = _configs(tmp_path)
    lone = tmp_path / "lone.yml"
    lone.write_text("model:\n  graph_layers: 1\n")
    with pytest.raises(SweepError, match="--teacher_cfg"):
        plan_sweep(lone, [0], [], tmp_path / "out", [])
    with pytest.raises(SweepError, match="--grid distill.lambda_motoin"):
        plan_sweep(student, [0], parse_grid(["distill.lambda_motoin=1,2"]), tmp_path / "out", [])
    with pytest.raises(SweepError, match="use --seeds"):
        plan_sweep(student, [0], [], tmp_path / "out", ["seed=3"])
    with pytest.raises(SweepError, match="KEY=V1,V2"):
        parse_grid(["distill.lambda_motion"])
    assert sweep.main(["--cfg", str(student), "--teacher_ckpt", str(tmp_path / "missing.pt")]) == 2
    assert "--teacher_ckpt" in capsys.readouterr().err
    assert sweep.main(["--cfg", str(student), "--rounds", "0"]) == 2
    assert "--rounds" in capsys.readouterr().err
    assert sweep.main(["--cfg", str(student), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_several_gpus_run_one_subprocess_each(tmp_path):
    script = "import os, sys, time; time.sleep(0.3); open(sys.argv[1], 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])"
    jobs = [sweep_launch.Job(f"job{i}", [sys.executable, "-c", script, str(tmp_path / f"gpu{i}")],
                             tmp_path / "logs" / f"job{i}.log") for i in range(3)]
    jobs.append(sweep_launch.Job("fails", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "logs/f.log"))
    failed = sweep_launch.run_parallel(jobs, sweep_launch.gpu_slots(["5", "7"]), poll_seconds=0.05)
    assert [job.label for job in failed] == ["fails"]
    used = [(tmp_path / f"gpu{i}").read_text() for i in range(3)]
    assert set(used) == {"5", "7"}


def test_sigterm_to_the_sweep_stops_its_runs(tmp_path):
    """SIGTERM to sweep.py --jobs 2 ended it at once and left two orphaned training processes."""
    import signal
    import subprocess
    import time
    child = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
    parent = f"""
import sys
from pathlib import Path
from training import sweep_launch
jobs = [sweep_launch.Job(f"job{{i}}", [sys.executable, "-c", {child!r}, str(Path({str(tmp_path)!r}) / f"pid{{i}}")],
                         Path({str(tmp_path)!r}) / f"job{{i}}.log") for i in range(2)]
try:
    sweep_launch.run_parallel(jobs, sweep_launch.cpu_slots(2), poll_seconds=0.05)
except KeyboardInterrupt as e:
    print("interrupted", e)
"""
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=sweep_launch.REPO_ROOT, stdout=subprocess.PIPE,
                            text=True)
    pid_files = [tmp_path / f"pid{i}" for i in range(2)]
    deadline = time.monotonic() + 60
    while not all(p.is_file() and p.read_text() for p in pid_files):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    pids = [int(p.read_text()) for p in pid_files]
    proc.send_signal(signal.SIGTERM)
    assert "interrupted SIGTERM" in proc.communicate(timeout=60)[0]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_local_launcher_uses_subprocesses_with_two_gpus(tmp_path, monkeypatch):
    plan = plan_sweep(_configs(tmp_path), [0], [], tmp_path / "out", [])
    batches = []
    monkeypatch.setattr(sweep_launch, "run_parallel", lambda jobs, slots: batches.append((jobs, slots)) or [])
    sweep_launch.launch_local(plan, gpu_ids=["0", "1"])
    # the teacher with the plain student (it needs no teacher), then the distilled student
    assert [sorted("train.mode=kd" in job.command for job in jobs) for jobs, _ in batches] == [[False, False], [True]]
    command = batches[1][0][0].command
    assert command[:2] == [sys.executable, str(sweep_launch.TRAIN_SCRIPT)]
    assert [env for _, env in batches[0][1]] == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]


def test_local_launcher_shares_the_cpu_cores_between_jobs(tmp_path, monkeypatch):
    plan = plan_sweep(_configs(tmp_path), [0], [], tmp_path / "out", [])
    batches = []
    monkeypatch.setattr(sweep_launch, "run_parallel", lambda jobs, slots: batches.append((jobs, slots)) or [])
    monkeypatch.setattr(sweep_launch.os, "cpu_count", lambda: 4)
    sweep_launch.launch_local(plan, gpu_ids=[], cpu_jobs=2)
    assert [env for _, env in batches[0][1]] == [{"OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": ""}] * 2
    assert [len(jobs) for jobs, _ in batches] == [2, 1]
    assert sweep_launch.cpu_slots(3, cores=2)[0][1]["OMP_NUM_THREADS"] == "1"  # never zero threads


def test_one_thread_per_job_reaches_the_run(tmp_path):
    script = "import sys, torch; open(sys.argv[1], 'w').write(str(torch.get_num_threads()))"
    jobs = [sweep_launch.Job(f"job{i}", [sys.executable, "-c", script, str(tmp_path / f"threads{i}")],
                             tmp_path / "logs" / f"job{i}.log") for i in range(2)]
    assert sweep_launch.run_parallel(jobs, sweep_launch.cpu_slots(2, cores=2), poll_seconds=0.05) == []
    assert [(tmp_path / f"threads{i}").read_text() for i in range(2)] == ["1", "1"]


def test_slurm_launcher_without_submitit_says_how_to_install(tmp_path, monkeypatch):
    plan = plan_sweep(_configs(tmp_path), [0], [], tmp_path / "out", [])
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(SweepError, match="pip install submitit"):
        sweep_launch.launch_slurm(plan, sweep_launch.SlurmOptions(cluster="local"))


def test_slurm_launcher_without_slurm_is_one_line(tmp_path, monkeypatch, capsys):
    """--launcher slurm on a machine without Slurm ended in submitit's traceback."""
    monkeypatch.setattr(sweep_launch.shutil, "which", lambda name: None)
    student = _configs(tmp_path)
    assert sweep.main(["--cfg", str(student), "--out", str(tmp_path / "out"), "--launcher", "slurm"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Slurm here" in err


def test_errors_of_input_or_environment_are_one_line_bugs_keep_their_traceback(tmp_path, monkeypatch, capsys):
    """A live lock, a read-only --out: one line and exit code 2 (they were tracebacks); an internal ValueError or
    IndexError is a bug and propagates (validate.py used to turn every ValueError into one line)."""
    import validate
    from training.run_dir import RunFolderError
    student = _configs(tmp_path)
    argv = ["--cfg", str(student), "--out", str(tmp_path / "out"), "--seeds", "0"]
    for error in (RunFolderError("x is in use by process 1"), PermissionError(13, "Permission denied", "/ro/out")):
        monkeypatch.setattr(sweep_launch, "launch_local", lambda *a, error=error, **k: (_ for _ in ()).throw(error))
        assert sweep.main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("in use by process 1" in err or "/ro/out: Permission denied" in err)
    for bug in (ValueError("internal"), IndexError("internal")):
        monkeypatch.setattr(sweep_launch, "launch_local", lambda *a, bug=bug, **k: (_ for _ in ()).throw(bug))
        with pytest.raises(type(bug)):
            sweep.main(argv)
        monkeypatch.setattr(validate, "run", lambda *a, bug=bug, **k: (_ for _ in ()).throw(bug))
        with pytest.raises(type(bug)):
            validate.main(["--ckpt", "x.pt"])


class _RecordingExecutor:
    """Stands in for submitit.AutoExecutor: records submissions and waits instead of running jobs."""
    events: list = []

    def __init__(self, folder, cluster):
        self.events.clear()

    def update_parameters(self, **params):
        self.events.append(("parameters", params))

    def submit(self, function):
        events, name = self.events, function.command[function.command.index("--exp_name") + 1]
        events.append(("submit", name))

        class Job:
            job_id = name

            def result(self):
                events.append(("wait", name))
        return Job()


def test_slurm_launcher_waits_for_the_teacher_before_submitting_students(tmp_path, monkeypatch):
    import submitit
    plan = plan_sweep(_configs(tmp_path), [0], [], tmp_path / "out", [])
    monkeypatch.setattr(submitit, "AutoExecutor", _RecordingExecutor)
    monkeypatch.setattr(sweep_launch.shutil, "which", lambda name: f"/usr/bin/{name}")
    sweep_launch.launch_slurm(plan, sweep_launch.SlurmOptions(partition="gpu", gpus_per_node=2, time_min=30))
    events = _RecordingExecutor.events
    assert events[0][1]["slurm_partition"] == "gpu" and events[0][1]["gpus_per_node"] == 2
    assert events[0][1]["timeout_min"] == 30
    assert events[1:] == [("submit", "teacher__seed0"), ("wait", "teacher__seed0"), ("submit", "student__seed0"),
                          ("submit", "student_kd__seed0"), ("wait", "student__seed0"), ("wait", "student_kd__seed0")]


def test_slurm_path_through_the_local_executor_reproduces_the_seed(swept):
    """The Slurm launcher through submitit's local executor (a process per job) on seed 0, with the finished
    teacher and plain student copied in (one job only: each costs a fresh torch import): the distilled student's
    job gives exactly the in-process sweep's seed-0 predictions. Same seed, same numbers, in another process."""
    out = swept["root"] / "slurm_sweep"
    for run in ("teacher__seed0", "student__seed0"):
        shutil.copytree(swept["out"] / run, out / run)
    summary = sweep.run(["--cfg", str(swept["student"]), "--out", str(out), "--seeds", "0", "--launcher", "slurm",
                         "--slurm_cluster", "local", "--slurm_gpus_per_node", "0"])
    assert len(list((out / "slurm").glob("*/*_result.pkl"))) == 1
    here, there = _predictions(swept["out"] / "student_kd__seed0"), _predictions(out / "student_kd__seed0")
    assert here["questions"] == there["questions"] and here["accuracy"] == there["accuracy"]
    assert summary["models"]["Student-KD"]["accuracy"]["values"] == \
        swept["summary"]["models"]["Student-KD"]["accuracy"]["values"][:1]


@pytest.fixture(scope="module", params=["multiple_choice", "count"])
def other_head_sweep(request, tmp_path_factory, single_thread):
    """A finished two-seed, one-epoch sweep on the tiny-mc (5 candidates, file categories in two groups) or the
    tiny-count (no categories, MSE) fixture."""
    root = tmp_path_factory.mktemp(request.param)
    student = _configs(root, request.param)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.trainer, "plot_run", lambda *a, **k: None)
        summary = sweep.run(["--cfg", str(student), "--out", str(root / "sweep"), "--seeds", *SEEDS])
    return request.param, root / "sweep", summary


def test_other_heads_summary_columns_metric_and_report(other_head_sweep):
    from train_fixtures import FILE_CATEGORIES, FILE_GROUPS
    head, out, summary = other_head_sweep
    assert json.loads((out / "summary.json").read_text()) == summary
    count = head == "count"
    key = "mse" if count else "accuracy"
    assert summary["metric"] == ("MSE" if count else "accuracy") and summary["lower_is_better"] is count
    if count:
        assert summary["columns"] == ["all"] and summary["categories"] == summary["groups"] == []
    else:
        assert summary["columns"] == ["all", *FILE_CATEGORIES, *FILE_GROUPS]
    models = summary["models"]
    for name, entry in models.items():
        assert "accuracy" not in entry if count else "mse" not in entry
        truth = [json.loads((out / run / "test_results.json").read_text())["all"] for run in entry["runs"]]
        assert entry[key]["values"] == pytest.approx(truth)
        assert entry[key]["mean"] == pytest.approx(np.mean(truth))
        assert entry[key]["std"] == pytest.approx(np.std(truth, ddof=1) if len(truth) > 1 else 0.0)
        assert set(entry["per_type"]) == (set() if count else set(FILE_CATEGORIES))
        assert ("per_group" in entry) is not count
        for run in entry["runs"]:
            cached = _predictions(out / run)
            questions = cached["questions"]
            assert cached["metric"] == summary["metric"] and cached["head"] == head
            if count:
                errors = [(int(p) - int(a)) ** 2 for p, a in zip(questions["prediction"], questions["answer"])]
                assert questions["squared_error"] == errors and "correct" not in questions
                assert np.mean(errors) == pytest.approx(cached["accuracy"]["all"])
                assert set(questions["type"]) == {None}
            else:
                right = [int(p == a) for p, a in zip(questions["prediction_index"], questions["answer_index"])]
                assert questions["correct"] == right and sum(right) == cached["accuracy"]["correct"]
                assert set(questions["type"]) <= set(FILE_CATEGORIES)
    _assert_tests_match_a_separate_permutation_test(out, summary)
    for test in summary["tests"]:
        assert test["mean_difference"] == pytest.approx(models[test["a"]][key]["mean"] - models[test["b"]][key]["mean"])
    text = (out / "summary.md").read_text()
    if count:
        assert "| model | parameters | All |\n" in text and "Test MSE of the rounded count (lower is better)" in text
        assert "mean difference (MSE)" in text and "squared error averaged over seeds" in summary["method"]
        assert f"{models['Student']['mse']['mean']:.3f} ± {models['Student']['mse']['std']:.3f}" in text
    else:
        assert "| model | parameters | All | CW | CH | TN | TC | DL | Causal | Temporal |" in text
        assert "mean difference (points)" in text and "correctness averaged over seeds" in summary["method"]
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"


VALID_CACHE = {"format": sweep_report.CACHE_FORMAT, "metric": "accuracy", "head": "open_ended", "parameters": 1,
               "accuracy": {"all": 0.5}, "questions": {"question_id": [1, 2], "correct": [1, 0]}}


def test_a_cache_is_keyed_on_checkpoint_bytes_test_file_and_config(tmp_path):
    """The cache used to be keyed on best.pt's mtime and size: a changed test file or settings reported the old
    numbers (37.50 % where validate.py gives 75.00 %)."""
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"weights")
    key = {"test_file_sha256": "t" * 64, "config_sha256": "c" * 64}
    stamp = sweep_report._checkpoint_stamp(ckpt, key)
    cache = tmp_path / "test_predictions.json"
    cache.write_text(json.dumps({**stamp, **VALID_CACHE}))
    assert sweep_report._read_cache(cache, stamp) is not None
    moved = {**stamp, "checkpoint": "/elsewhere/best.pt"}  # a moved sweep folder keeps its caches
    assert sweep_report._read_cache(cache, moved) is not None
    for changed in ({"test_file_sha256": "u" * 64}, {"config_sha256": "d" * 64}):
        assert sweep_report._read_cache(cache, {**stamp, **changed}) is None
    os.utime(ckpt, ns=(1, 1))  # same bytes, other mtime: still the same checkpoint
    assert sweep_report._read_cache(cache, sweep_report._checkpoint_stamp(ckpt, key)) is not None
    ckpt.write_bytes(b"weightz")  # same size, other bytes
    assert sweep_report._read_cache(cache, sweep_report._checkpoint_stamp(ckpt, key)) is None
    cache.write_text(json.dumps({**stamp, **VALID_CACHE, "format": 2}))
    assert sweep_report._read_cache(cache, stamp) is None


@pytest.mark.parametrize("content", [b"null", b"[]", b"\xff\xfe{", b"[" * 100_000 + b"]" * 100_000, b"{",
                                     "ragged", "bool_outcome"])
def test_a_damaged_cache_is_recomputed_not_a_traceback(tmp_path, content):
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"weights")
    stamp = sweep_report._checkpoint_stamp(ckpt, {})
    cache = tmp_path / "test_predictions.json"
    if content == "ragged":
        content = json.dumps({**stamp, **VALID_CACHE, "questions": {"question_id": [1, 2], "correct": [1]}}).encode()
    elif content == "bool_outcome":
        content = json.dumps({**stamp, **VALID_CACHE, "questions": {"question_id": [1], "correct": [True]}}).encode()
    cache.write_bytes(content)
    assert sweep_report._read_cache(cache, stamp) is None


def test_table3_columns_given_or_inferred():
    """Explicit columns (summary.md) show a category without test questions as "-"; without them (demo.py's call)
    the columns are All, then the categories and groups the entries have; MSE cells keep 3 decimals."""
    stats = lambda mean: {"mean": mean, "std": 0.01}  # noqa: E731
    models = {"S": {"accuracy": stats(0.5), "per_type": {"CW": stats(0.25)}, "per_group": {"causal": stats(0.25)},
                    "parameters": 1000}}
    given = sweep_report.table3(models, [("majority", "", {"all": "20.00"})], columns=["all", "CW", "TN", "causal"])
    assert given.splitlines()[0] == "| model | parameters | All | CW | TN | Causal |"
    assert given.splitlines()[2] == "| majority |  | 20.00 | - | - | - |"
    assert given.splitlines()[3] == "| S | 1,000 | 50.00 ± 1.00 | 25.00 ± 1.00 | - | 25.00 ± 1.00 |"
    assert sweep_report.table3(models).splitlines()[0] == "| model | parameters | All | CW | Causal |"
    counted = {"S": {"mse": stats(2.5), "per_type": {}, "parameters": 10}}
    assert sweep_report.table3(counted).splitlines()[2] == "| S | 10 | 2.500 ± 0.010 |"
