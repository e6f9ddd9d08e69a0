"""Mutation testing (mutmut 3) of the modules whose numbers the project reports, one module at a time.

For each module named (default: all of :data:`TARGETS`, in that order) this builds a work folder
``.mutmut/<module>/`` that links the repository's packages, writes a ``setup.cfg`` telling mutmut to mutate that
one file and to run only that module's fast test files, runs ``mutmut run`` there (at low CPU priority:
``nice -n 10``), and prints the module's mutants killed / survived / without tests and its score,
``killed / (mutants - skipped)``, the figure docs/mutation.md lists. mutmut keeps its results in the work folder
and a rerun without ``--fresh`` reuses them even where the tests changed, so ``make mutate`` passes ``--fresh``;
``--show`` prints the survivors of the last run.

Usage (``make mutate`` runs it with every module):
    python tests/mutation.py [MODULE ...] [--fresh] [--jobs N]
    python tests/mutation.py significance --show   # the surviving mutants' diffs (after a run)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK_ROOT = REPO_ROOT / ".mutmut"
LINKED = ("model", "training", "preprocess", "utils", "tests", "configs", "train.py", "validate.py", "sweep.py",
          "pyproject.toml")
SOURCES = ("model", "training", "preprocess", "utils", "train.py", "validate.py", "sweep.py")  # copied into mutants/


@dataclass(frozen=True)
class Target:
    """A module under mutation: its file and the test files (pytest arguments) that guard it."""
    path: str
    tests: tuple


# The answer heads (model/heads/) own predictions, outcomes and majority answers: guarded by their by-hand tests.
HEAD_TESTS = ("tests/test_answer_heads.py", "tests/test_head_methods.py", "tests/test_heads.py",
              "tests/test_heads_pipeline.py", "tests/test_metrics.py", "tests/test_baselines.py")
TARGETS = {
    "significance": Target("training/significance.py", ("tests/test_significance.py",)),
    "metrics": Target("training/metrics.py", ("tests/test_metrics.py", "tests/test_plots.py",
                                              "tests/test_heads_pipeline.py::test_count_predictions_round_halves_up_and_clamp_as_hcrn",
                                              "tests/test_heads_pipeline.py::test_count_mse_per_category_matches_numpy",
                                              "tests/test_heads_pipeline.py::test_grouped_accuracy_matches_numpy",
                                              "tests/test_heads_pipeline.py::test_the_unanswerable_answer_has_no_default",
                                              "tests/test_metric_registry.py")),
    "baselines": Target("training/baselines.py", ("tests/test_baselines.py",)),
    "losses": Target("model/losses.py", ("tests/test_losses.py", "tests/test_heads.py", "tests/test_objective.py")),
    "heads": Target("model/fusion.py", ("tests/test_heads.py", "tests/test_model.py")),
    "sweep_report": Target("training/sweep_report.py", (
        "tests/test_sweep_report.py",
        "tests/test_sweep.py::test_the_sweep_reads_the_trainers_test_predictions_and_reports_the_same",
        "tests/test_sweep.py::test_runs_trained_in_bf16_are_evaluated_again_in_float32")),
    "text": Target("preprocess/text.py", ("tests/test_tokenize.py",)),
    "head_base": Target("model/heads/base.py", HEAD_TESTS),
    "head_open_ended": Target("model/heads/open_ended.py", HEAD_TESTS),
    "head_multiple_choice": Target("model/heads/multiple_choice.py", HEAD_TESTS),
    "head_count": Target("model/heads/count.py", HEAD_TESTS),
}


def setup_cfg(target: Target) -> str:
    """mutmut's configuration for one target (INI lists: one value per line)."""
    def listing(values) -> str:
        return "".join(f"\n    {v}" for v in values)
    return (f"[mutmut]\nsource_paths ={listing(SOURCES)}\nonly_mutate ={listing([target.path])}\n"
            f"also_copy ={listing(['configs'])}\npytest_add_cli_args_test_selection ={listing(target.tests)}\n")


def prepare(name: str, fresh: bool) -> Path:
    """The work folder of ``name``: links to the repository and its setup.cfg (``fresh``: previous results gone)."""
    work = WORK_ROOT / name
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for entry in LINKED:
        link = work / entry
        if not link.is_symlink():
            link.symlink_to(REPO_ROOT / entry)
    (work / "setup.cfg").write_text(setup_cfg(TARGETS[name]))
    # mutmut copies the sources only when missing: drop the copies (not the mutated target and its results) so
    # that the run sees the repository as it is now
    keep = {work / "mutants" / TARGETS[name].path, work / "mutants" / (TARGETS[name].path + ".meta")}
    for entry in SOURCES:
        copied = work / "mutants" / entry
        files = [copied] if copied.is_file() else sorted(copied.rglob("*")) if copied.is_dir() else []
        for path in files:
            if path.is_file() and path not in keep:
                path.unlink()
    return work


def mutmut(work: Path, *args: str) -> subprocess.CompletedProcess:
    """``mutmut ARGS`` in ``work`` at low priority (one OpenMP thread per test process)."""
    executable = Path(sys.executable).with_name("mutmut")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run(["nice", "-n", "10", str(executable), *args], cwd=work, env=env, text=True,
                          capture_output=True)


def score(work: Path) -> dict:
    """The module's counts from mutmut's CI/CD statistics: killed, survived, no_tests, timeout, total, score (%)."""
    done = mutmut(work, "export-cicd-stats")
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text())
    tested = stats["total"] - stats.get("skipped", 0)
    stats["score"] = 100.0 * (stats["killed"] + stats.get("timeout", 0)) / tested if tested else float("nan")
    return stats


def surviving(work: Path) -> list[str]:
    """The names of the mutants that survived (or had no test)."""
    done = mutmut(work, "results")
    return [line.strip() for line in done.stdout.splitlines() if line.strip().endswith(("survived", "no tests"))]


def run(name: str, fresh: bool, jobs: int) -> dict:
    work = prepare(name, fresh)
    started = time.monotonic()
    done = mutmut(work, "run", "--max-children", str(jobs))
    if done.returncode != 0:
        raise RuntimeError(f"mutmut run for {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    stats = score(work)
    stats["seconds"] = round(time.monotonic() - started, 1)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/mutation.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", choices=[[], *TARGETS], metavar="MODULE",
                        help=f"modules to mutate (default: all): {', '.join(TARGETS)}")
    parser.add_argument("--fresh", action="store_true", help="forget previous results and test every mutant again")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--show", action="store_true",
                        help="print the surviving mutants of the last run with their diffs instead of running")
    args = parser.parse_args(argv)
    names = args.modules or list(TARGETS)
    if args.show:
        for name in names:
            work = WORK_ROOT / name
            for line in surviving(work):
                mutant = line.split(":")[0]
                print(mutmut(work, "show", mutant).stdout)
        return 0
    print("| module | file | mutants | killed | survived | no tests | timeout | score | time |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        s = run(name, args.fresh, args.jobs)
        print(f"| {name} | `{TARGETS[name].path}` | {s['total']} | {s['killed']} | {s['survived']} | "
              f"{s['no_tests']} | {s.get('timeout', 0)} | {s['score']:.1f} % | {s['seconds']:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
