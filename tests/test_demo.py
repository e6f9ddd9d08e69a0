"""demo.py's bookkeeping (no pipeline run): stage reuse and rebuilds from the recorded flags, kept stage timings,
and printed commands that can be pasted."""
import argparse
import sys
from pathlib import Path

import pytest

import demo


def _args(**changes):
    values = {"num_videos": 200, "seed": 0, "seeds": [0, 1, 2], "device": "auto", "jobs": 2, **changes}
    return argparse.Namespace(**values)


@pytest.fixture
def fake_pipeline(tmp_path, monkeypatch):
    """demo rooted in tmp_path, with commands that only create their stage's outputs and take 'seconds' from a
    counter; returns the list of (stage, outputs that existed when it started) it ran."""
    monkeypatch.setattr(demo, "ROOT", tmp_path)
    ran = []

    def fake_run(stage, python):
        ran.append((stage.name, (tmp_path / stage.outputs[0]).exists()))
        for output in stage.outputs:
            path = tmp_path / output
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(stage.name)
            else:
                path.mkdir(parents=True, exist_ok=True)
        return float(len(ran))
    monkeypatch.setattr(demo, "run_command", fake_run)
    return ran


def _run(args):
    stages = demo.build_stages(args)
    stamps = demo.load_stamps()
    return demo.run_stages(stages, stamps), stamps


def test_second_run_reuses_every_stage_and_keeps_its_timings(fake_pipeline, capsys):
    _, first = _run(_args())
    names = [name for name, _ in fake_pipeline]
    assert names == ["dataset", "glove", "questions", "appearance_features", "motion_features", "sweep"]
    fake_pipeline.clear()
    reused, second = _run(_args())
    assert fake_pipeline == [] and reused == names
    assert second == first and second["dataset"]["seconds"] == 1.0
    assert "[dataset] reused data/demo/raw/test_qa.json (took 1.0 s)" in capsys.readouterr().out


def test_changed_dataset_flags_rebuild_it_and_what_reads_it(fake_pipeline, tmp_path, capsys):
    _run(_args())
    marker = tmp_path / demo.SWEEP / "teacher__seed0"
    marker.mkdir()
    fake_pipeline.clear()
    _run(_args(num_videos=60))
    assert [name for name, _ in fake_pipeline] == ["dataset", "questions", "appearance_features", "motion_features",
                                                    "sweep"]
    assert not any(existed for _, existed in fake_pipeline)  # old outputs were removed first
    assert not marker.exists()
    assert "rebuilding (flags changed: --num_videos 200 -> 60)" in capsys.readouterr().out
    assert demo.load_stamps()["dataset"]["flags"] == {"num_videos": 60, "seed": 0}


def test_new_seeds_rerun_only_the_sweep_keeping_its_finished_runs(fake_pipeline, tmp_path):
    _run(_args())
    marker = tmp_path / demo.SWEEP / "student__seed0"
    marker.mkdir()
    fake_pipeline.clear()
    _run(_args(seeds=[0, 1, 2, 3]))
    assert fake_pipeline == [("sweep", True)] and marker.exists()
    assert demo.load_stamps()["sweep"]["flags"] == {"seeds": [0, 1, 2, 3]}


def test_a_stage_without_a_record_runs_again(fake_pipeline, tmp_path):
    """An interrupted stage left outputs but no record: it runs again (and resumes), as do the stages after it."""
    _run(_args())
    stamps = demo.load_stamps()
    del stamps["motion_features"]
    demo.save_stamps(stamps)
    fake_pipeline.clear()
    _run(_args())
    assert [name for name, _ in fake_pipeline] == ["motion_features", "sweep"]


@pytest.mark.parametrize("where, expected", [("inside", ".venv/bin/python"), ("on_path", "python"),
                                             ("elsewhere", "/opt/py/bin/python3")])
def test_printed_interpreter_works_from_the_repository_root(monkeypatch, where, expected):
    inside = demo.ROOT / ".venv/bin/python"
    executable = {"inside": inside, "on_path": Path("/usr/local/bin/python"),
                  "elsewhere": Path("/opt/py/bin/python3")}[where]
    monkeypatch.setattr(sys, "executable", str(executable))
    monkeypatch.setattr(demo.shutil, "which", lambda name: "/usr/local/bin/python")
    assert demo.interpreter() == expected


def test_baseline_rows_fill_the_table_columns():
    baselines = {"majority": {"answer": "red", "accuracy": 0.25, "per_type": {"what": 0.5}},
                 "per_type_majority": {"answers": {"what": "red"}, "accuracy": 0.4, "per_type": {"what": 0.5}}}
    rows = demo.baseline_rows(baselines)
    assert rows[0] == ("majority answer ('red')", "", {"all": "25.00", "what": "50.00"})
    assert rows[1][2]["all"] == "40.00"
    baselines["chance_given_template"] = {"accuracy": 0.3, "per_type": {"what": 0.2}}
    rows = demo.baseline_rows(baselines)
    assert rows[2] == ("chance given the question template (uniform guess)", "", {"all": "30.00", "what": "20.00"})
