"""The command line of train.py: its flags, the config they resolve to, and the run (training.trainer).

train.py is a thin entry point over :func:`main`; ``sweep.py`` trains its runs in-process through :func:`run`.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

RESULTS_LAYOUT = """\
results (in <dataset.save_dir>/<exp_name>/):
  config.yaml              the fully resolved config (reloads with --cfg)
  best.pt, last.pt         checkpoints (best validation accuracy; latest epoch, or the interrupted step)
  metrics.csv, metrics.json  per epoch: train/val loss parts (total and one column per configured loss term:
                           config sections losses and distill.losses), train accuracy, val accuracy overall
                           and per question type, lr, time
  loss_ce.png, accuracy.png, loss_distillation.png (kd runs)   curves (loss_ce.png: count runs plot their MSE term)
  tensorboard/             TensorBoard events (tensorboard --logdir results)
  test_results.json, test_results.md   test accuracy per question type of the best checkpoint
  test_predictions.json    its per-question test predictions, float32 uncompiled runs (sweep.py reads them)
  train.log                the console log
  run.lock                 pid and host of the run writing the folder (removed when it ends)

Ctrl-C (or SIGTERM) finishes the current step, saves last.pt and prints the command that resumes the run.
"""


def build_parser() -> argparse.ArgumentParser:
    from utils.config import add_config_arguments
    parser = argparse.ArgumentParser(
        prog="python train.py",
        description="Train a teacher, student or distilled student VideoQA model (KEY=VALUE overrides any config "
                    "key; the flags below are shortcuts for the keys they name).",
        epilog=RESULTS_LAYOUT, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--alpha", type=float,
                        help="weight of the similarity loss (train.alpha, an alias of losses.similarity.weight)")
    parser.add_argument("--beta", type=float,
                        help="weight of the HSIC loss (train.beta, an alias of losses.hsic.weight)")
    parser.add_argument("--unit_layers", type=int, help="stacked DualVGR units u (model.unit_layers)")
    parser.add_argument("--graph_layers", type=int,
                        help="graph layers per unit g (model.graph_layers): teacher 4 / 6, student 1")
    parser.add_argument("--teacher_ckpt", metavar="PATH",
                        help="teacher checkpoint for distillation (distill.teacher_ckpt; relative to the current "
                             "folder); with train.mode teacher this trains a distilled student, train.mode=student "
                             "ignores it")
    parser.add_argument("--exp_name", help="run name: results go to <dataset.save_dir>/<exp_name>/ (exp_name)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in <dataset.save_dir>/<exp_name>/ from its last.pt (same epochs, "
                             "same result as an uninterrupted run); any config key that differs from the "
                             "checkpoint's is refused except those configs/base.yml's header lists (e.g. "
                             "train.max_epochs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in a run folder that already holds a run (last.pt / best.pt): its files "
                             "are removed first; without --resume or --overwrite such a folder is refused")
    parser.add_argument("--seed", type=int, help="seed of python, numpy and torch (seed)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (device); under torchrun each process uses "
                                         "cuda:LOCAL_RANK")
    return parser


FLAG_KEYS = {"alpha": "train.alpha", "beta": "train.beta", "unit_layers": "model.unit_layers",
             "graph_layers": "model.graph_layers", "exp_name": "exp_name", "seed": "seed", "device": "device"}


def config_from_args(args):
    """The resolved config: base.yml <- --cfg file <- KEY=VALUE overrides <- flags (checked as overrides are)."""
    from training.run_schema import load_config, set_key
    cfg = load_config(args.cfg, args.overrides)
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            cfg = set_key(cfg, key, value)
    if args.teacher_ckpt:
        cfg.distill.teacher_ckpt = str(Path(args.teacher_ckpt).expanduser().resolve())
    return cfg


def run(argv: list[str] | None = None) -> dict:
    """Parse ``argv`` and train; raises the trainer's errors (see training.trainer.run_training)."""
    from training.trainer import run_training
    args = build_parser().parse_intermixed_args(argv)
    return run_training(config_from_args(args), resume=args.resume, overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> int:
    from termcolor import colored

    from model.losses import compute_losses  # noqa: F401  (fail early and plainly if the model package is broken)
    from training.engine import NonFiniteLossError
    from training.trainer import TrainingInterrupted
    from utils.cli import exit_on_input_error

    argv = sys.argv[1:] if argv is None else argv
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun every rank hits the same error: say it once

    def report(message: str, colour: str) -> None:
        if main_process:
            print(colored(message, colour), file=sys.stderr)

    try:
        run(argv)
    except NonFiniteLossError as e:
        report(f"error: {e}", "red")
        return 1
    except TrainingInterrupted as e:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        launcher = ["torchrun", "--nproc_per_node", str(world_size)] if world_size > 1 else ["python"]
        command = launcher + ["train.py"] + [a for a in argv if a not in ("--resume", "--overwrite")] + ["--resume"]
        report(f"{e}; last.pt is saved. Resume with:\n  {shlex.join(command)}", "yellow")
        return 130
    except KeyboardInterrupt:
        report("aborted: last.pt holds the end of the last completed epoch (resume with --resume)", "yellow")
        return 130
    except Exception as e:  # input or environment: one line and exit code 2 (utils/cli.py); a bug: its traceback
        return exit_on_input_error(e, lambda line: report(line, "red"))
    return 0
