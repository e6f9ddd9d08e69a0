"""Accuracy of float32 against bf16 training: the same runs (config, seeds) under two ``train.amp`` settings, each
best checkpoint evaluated on the test split in float32, mean ± std over seeds and the paired permutation test
(training/significance.py) on the per-question correctness.

    python bench/amp_accuracy.py                       # the demo's plain student (after make demo), seeds 0 1 2
    python bench/amp_accuracy.py --cfg configs/demo_student.yml --seeds 0 1 2 3 4 --amp none bf16 train.max_epochs=5

Runs are trained one after the other by ``train.py`` (seed 0 float32, seed 0 bf16, seed 1 float32, ...: both
settings see the same machine load), into ``--out``/<amp>__seed<S>; a run whose folder already holds
test_results.json is reused, so rerunning the command completes an interrupted comparison. Prints one line per run
(test accuracy, mean epoch seconds), then the mean ± std per setting and the test, and writes ``--out``/
summary.json: {"settings": {AMP: {"accuracy": {"mean", "std", "values"}, "epoch_seconds": [...]}}, "test":
{"a", "b", "mean_difference", "p_value", "method", "differing_questions"}, "seed_test": {"a", "b",
"mean_difference", "p_value", "method"}, "seeds", "config", "overrides"}.

Two paired sign-flip tests (training/significance.py): over the test questions (per-question correctness averaged
over seeds, as sweep.py reports), which holds the trained models fixed and so does not see how much a seed alone
moves the accuracy; and over the seeds (per-seed accuracy, paired by seed), which does, but cannot go below
p = 2 / 2^S with S seeds (0.25 for 3, 0.0625 for 5).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import numpy as np

from training.run_settings import AMP_CHOICES
from training.significance import DEFAULT_ROUNDS, paired_permutation_test
from bench import BenchError
from training.run_schema import load_config
from utils.cli import exit_on_input_error
from utils.config import REPO_ROOT, add_config_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bench/amp_accuracy.py",
        description="Train the same runs under two train.amp settings and compare their test accuracy (mean ± std "
                    "over seeds, paired permutation test on the test questions).")
    add_config_arguments(parser, cfg_required=False)
    parser.set_defaults(cfg="configs/demo_student.yml")
    parser.add_argument("--mode", default="student", choices=("teacher", "student"),
                        help="train.mode of every run (default: %(default)s, the plain student)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: %(default)s)")
    parser.add_argument("--amp", nargs=2, choices=AMP_CHOICES, default=["none", "bf16"], metavar=("A", "B"),
                        help="the two train.amp settings compared (default: %(default)s)")
    parser.add_argument("--out", default="results/amp_accuracy", help="folder of the runs (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help="random sign flips of the paired test (default: %(default)s)")
    return parser


def train_run(args, amp: str, seed: int, out: Path) -> Path:
    """Train one run unless its folder already holds test_results.json; returns the run folder."""
    name = f"{amp}__seed{seed}"
    folder = out / name
    if not (folder / "test_results.json").is_file():
        command = [sys.executable, "train.py", "--cfg", args.cfg, *args.overrides, f"train.mode={args.mode}",
                   f"train.amp={amp}", f"dataset.save_dir={out}", "--exp_name", name, "--seed", str(seed),
                   "--overwrite"]
        print(f"[train] {' '.join(command[1:])}", flush=True)
        done = subprocess.run(command, cwd=REPO_ROOT)
        if done.returncode != 0:
            raise BenchError(f"train.py failed (exit {done.returncode}) for {name}")
    return folder


def epoch_seconds(folder: Path) -> list[float]:
    return [round(row["time_s"], 1) for row in json.loads((folder / "metrics.json").read_text())]


def run(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.cfg, args.overrides)
    out = (REPO_ROOT / args.out).resolve()
    a, b = args.amp
    if a == b:
        raise BenchError("--amp needs two different settings")
    folders = {amp: [] for amp in (a, b)}
    for seed in args.seeds:
        for amp in (a, b):
            folders[amp].append(train_run(args, amp, seed, out))

    from training.evaluation import SplitEvaluator
    cfg.train.mode = args.mode
    evaluator = SplitEvaluator(cfg, "test")  # float32 evaluation of every checkpoint
    correct, summary = {}, {"config": args.cfg, "overrides": args.overrides, "seeds": args.seeds, "settings": {}}
    try:
        for amp, runs in folders.items():
            rows = []
            for seed, folder in zip(args.seeds, runs):
                result = evaluator.evaluate(folder / "best.pt")
                rows.append(evaluator.correct(result.predictions))
                seconds = epoch_seconds(folder)
                print(f"{amp:>5} seed {seed}: test accuracy {100 * rows[-1].mean():.2f} % | epochs {seconds} s")
            correct[amp] = np.stack(rows)
            values = [float(r.mean()) for r in rows]
            summary["settings"][amp] = {
                "accuracy": {"mean": float(np.mean(values)),
                             "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, "values": values},
                "epoch_seconds": [epoch_seconds(f) for f in runs]}
    finally:
        evaluator.close()
    test = paired_permutation_test(correct[b], correct[a], rounds=args.rounds)
    summary["test"] = {"a": b, "b": a, "mean_difference": test.mean_difference, "p_value": test.p_value,
                       "method": test.method, "differing_questions": test.num_differing}
    # the same sign-flip test with the seeds as the units (paired by seed): it sees the seed-to-seed spread that the
    # question-level test, which holds the trained models fixed, does not
    per_seed = {amp: np.array([summary["settings"][amp]["accuracy"]["values"]]) for amp in (a, b)}
    seed_test = paired_permutation_test(per_seed[b], per_seed[a], rounds=args.rounds)
    summary["seed_test"] = {"a": b, "b": a, "mean_difference": seed_test.mean_difference,
                            "p_value": seed_test.p_value, "method": seed_test.method}
    for amp, entry in summary["settings"].items():
        acc = entry["accuracy"]
        print(f"{amp:>5}: {100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} % over seeds {args.seeds} "
              f"({', '.join(f'{100 * v:.2f}' for v in acc['values'])})")
    print(f"paired test {b} - {a}: {100 * test.mean_difference:+.2f} points, p = {test.p_value:.4f} "
          f"({test.method}; {test.num_differing} of {test.num_questions} questions differ in the seed-averaged outcome)")
    print(f"paired test over seeds {b} - {a}: {100 * seed_test.mean_difference:+.2f} points, "
          f"p = {seed_test.p_value:.4f} ({seed_test.method}; with S seeds p >= 2 / 2^S)")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {out / 'summary.json'}")
    return summary


def main(argv=None) -> int:
    try:
        run(argv)
    except Exception as e:  # bad input: one line and exit code 2 (utils/cli.py)
        return exit_on_input_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
