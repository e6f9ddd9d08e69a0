"""Experiments over seeds and settings: teacher, plain student and distilled student per seed and grid point, then
mean ± std over seeds and paired significance tests on the test questions.

    python sweep.py --cfg configs/msvd_qa_student.yml --seeds 0 1 2
    python sweep.py --cfg configs/msvd_qa_student.yml train.max_epochs=10 --seeds 0 1 2 \\
        --grid distill.temperature_motion=0.5,0.7,1 distill.lambda_motion=1,10,100
    python sweep.py --cfg configs/msvd_qa_student.yml --seeds 0 1 2 --launcher slurm --slurm_partition gpu

Rerunning the same command completes a sweep: finished runs are reused, interrupted ones resumed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from utils.config import REPO_ROOT  # noqa: E402

OUTPUTS = """\
outputs (in --out):
  <run folder>/            one train.py run each (teacher__seed0, student__seed0, student_kd__seed0, ...;
                           grid points in the name: student_kd__distill.lambda_motion=10__seed0), with its
                           test_predictions.json (per-question test outcome of best.pt, cached; recomputed
                           when best.pt, the test question file or the resolved config changes)
  summary.json             {"metric": "accuracy" | "MSE", "lower_is_better", "columns": ["all", CATEGORY...,
                           GROUP...], "categories", "groups", "models": {NAME: {"seeds", "runs", "accuracy"
                           (count: "mse"): {"mean", "std", "values"}, "per_type": {CATEGORY: {"mean", "std"}},
                           ["per_group": {GROUP: {"mean", "std"}},] "parameters", "settings"}}, "tests": [{"a",
                           "b", "mean_difference", "p_value", "method", "differing_questions"}], "method"}
                           (accuracies are fractions; std is the sample std over seeds, 0 for one seed; the
                           categories and groups are the dataset's: MSVD-QA's what/who/how/when/where, NExT-QA's
                           CW..DO with causal/temporal/descriptive, none for TGIF-QA action/transition/count)
  summary.md               the paper's Table 3 layout (mean ± std: accuracy in %, or MSE), the seeds, the tests
  summary.png              the score per model: each seed's point and mean ± std
  logs/, slurm/            per-run logs of subprocess (several GPUs) and Slurm launches

KEY=VALUE overrides go before --seeds/--grid (those flags take every value that follows them).
The paired test: a sign-flip permutation test over test questions on the seed-averaged per-question difference in
correctness (accuracy), or in squared error (count: MSE, lower is better); see training/significance.py for its
assumptions.
"""


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a seed: {text[:40]!r} (put KEY=VALUE overrides before --seeds and "
                                         "--grid)") from None
    if not 0 <= seed < 2 ** 31:
        raise argparse.ArgumentTypeError(f"seed {text[:40]} is outside [0, 2**31)")
    return seed


def build_parser() -> argparse.ArgumentParser:
    from utils.config import add_config_arguments
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=OUTPUTS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--seeds", nargs="+", type=_seed, default=[0, 1, 2], metavar="SEED",
                        help="seeds: each student is trained once per seed, a shared teacher with the first "
                             "(default: 0 1 2)")
    parser.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2",
                        help="values to sweep per config key; every combination is a grid point with its own "
                             "students (teachers do not vary). distill.* keys only change distilled students")
    parser.add_argument("--out", metavar="DIR", help="sweep folder (default: results/sweeps/<--cfg stem>)")
    parser.add_argument("--teacher", choices=("shared", "per_seed"), default="shared",
                        help="one teacher trained with the first seed and shared by all seeds (the paper's "
                             "set-up), or one teacher per seed (default: shared)")
    parser.add_argument("--teacher_cfg", metavar="FILE",
                        help="config of the teacher to train (default: the _base_ file --cfg names)")
    parser.add_argument("--teacher_ckpt", metavar="PATH", help="distil from this teacher instead of training one")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="local: here, one run per visible GPU at once (in this process on CPU or one GPU); "
                             "slurm: one Slurm job per run through submitit (default: local)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="local launcher on a machine without GPUs: runs trained at once, each in its own "
                             "process with cores / JOBS threads (small models: 2 one-thread runs finish about twice "
                             "as fast as 2 two-thread runs in a row; default: 1, in this process)")
    parser.add_argument("--rounds", type=int, default=10_000,
                        help="random sign flips of the paired permutation test (default: 10000)")
    slurm = parser.add_argument_group("Slurm (--launcher slurm)")
    slurm.add_argument("--slurm_partition", help="partition to submit to (default: the cluster's)")
    slurm.add_argument("--slurm_account", help="account to charge (default: yours)")
    slurm.add_argument("--slurm_gpus_per_node", type=int, default=1, help="GPUs per run (default: 1)")
    slurm.add_argument("--slurm_cpus_per_task", type=int, default=8, help="CPUs per run (default: 8)")
    slurm.add_argument("--slurm_mem_gb", type=int, default=32, help="memory per run in GB (default: 32)")
    slurm.add_argument("--slurm_time", type=int, default=240, metavar="MINUTES",
                       help="time limit per run in minutes (default: 240)")
    slurm.add_argument("--slurm_cluster", choices=("slurm", "local"), default="slurm",
                       help="local: run the jobs as local processes through submitit (to try the Slurm path "
                            "without Slurm; default: slurm)")
    return parser


def _settings(plan, cfg: str, teacher_cfg: str | None) -> dict[str, dict]:
    """Model name -> the settings that define it: its config, train.mode and grid values."""
    import yaml
    settings = {}
    for run in plan.runs:
        config = teacher_cfg if run.kind == "teacher" else cfg
        settings[run.model] = {"config": config, "train.mode": run.kind,
                               **{k: yaml.safe_load(v) for k, v in run.settings.items()}}
    if plan.teacher_ckpt is not None:
        settings["Teacher"] = {"checkpoint": str(plan.teacher_ckpt)}
    return settings


def run(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, complete the sweep's runs, evaluate them and write the reports; returns summary.json's
    content. Raises SweepError / ConfigError / DataError / CheckpointError on bad input or failed runs."""
    from training import sweep_launch, sweep_report
    from training.sweep_plan import SweepError, parse_grid, plan_sweep, teacher_config

    args = build_parser().parse_intermixed_args(argv)
    if args.rounds < 1:
        raise SweepError(f"--rounds must be at least 1, got {args.rounds}")
    if args.jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {args.jobs}")
    cfg = Path(args.cfg)
    out = Path(args.out).resolve() if args.out else REPO_ROOT / "results" / "sweeps" / cfg.stem
    teacher_cfg = Path(args.teacher_cfg) if args.teacher_cfg else None
    teacher_ckpt = Path(args.teacher_ckpt).resolve() if args.teacher_ckpt else None
    plan = plan_sweep(cfg, args.seeds, parse_grid(args.grid), out, args.overrides, args.teacher, teacher_cfg,
                      teacher_ckpt)
    print(f"[sweep] {len(plan.runs)} runs in {out}", flush=True)
    if args.launcher == "slurm":
        sweep_launch.launch_slurm(plan, sweep_launch.SlurmOptions(
            args.slurm_partition, args.slurm_account, args.slurm_gpus_per_node, args.slurm_cpus_per_task,
            args.slurm_mem_gb, args.slurm_time, args.slurm_cluster))
    else:
        sweep_launch.launch_local(plan, cpu_jobs=args.jobs)

    evaluators = []

    def get_evaluator():
        if not evaluators:
            from training.evaluation import SplitEvaluator
            from training.run_schema import load_config
            evaluators.append(SplitEvaluator(load_config(cfg, args.overrides), "test"))
        return evaluators[0]

    from training.run_schema import load_config
    try:
        by_model = sweep_report.collect_scores(plan, get_evaluator,
                                               sweep_report.evaluation_key(load_config(cfg, args.overrides)))
    finally:
        for evaluator in evaluators:
            evaluator.close()
    shown_teacher_cfg = None if teacher_ckpt else str(teacher_cfg or teacher_config(cfg))
    summary = sweep_report.summarize(plan, by_model, _settings(plan, str(cfg), shown_teacher_cfg), args.rounds)
    sweep_report.write_reports(summary, out, f"Sweep: {cfg}, seeds {', '.join(map(str, args.seeds))}")
    print(sweep_report.markdown(summary, f"{cfg}, seeds {', '.join(map(str, args.seeds))}"))
    print(f"[sweep] reports: {out / 'summary.md'}, {out / 'summary.json'}, {out / 'summary.png'}")
    return summary


def main(argv: list[str] | None = None) -> int:
    from termcolor import colored

    from training.engine import NonFiniteLossError
    from training.trainer import TrainingInterrupted
    from utils.cli import exit_on_input_error

    try:
        run(argv)
    except NonFiniteLossError as e:
        print(colored(f"error: {e}", "red"), file=sys.stderr)
        return 1
    except (TrainingInterrupted, KeyboardInterrupt) as e:
        print(colored(f"interrupted ({str(e).strip('() ') or 'Ctrl-C'}); rerun the same command to resume the "
                      "sweep", "yellow"), file=sys.stderr)
        return 130
    except Exception as e:  # input or environment: one line and exit code 2 (utils/cli.py); a bug: its traceback
        return exit_on_input_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
