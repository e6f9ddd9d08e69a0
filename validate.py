"""Evaluate checkpoints: accuracy (or MSE) per question type or category, per-question predictions, teacher/student comparisons.

    python validate.py --ckpt results/msvd_qa_teacher/best.pt                        # test split, its own config
    python validate.py --cfg configs/msvd_qa_teacher.yml --ckpt results/msvd_qa_teacher/best.pt --split val \\
        --write_preds preds.json
    python validate.py --compare results/msvd_qa_teacher/best.pt results/msvd_qa_student/best.pt \\
        results/msvd_qa_student_kd/best.pt --names Teacher Student Student-KD --out comparison.md \\
        --plot comparison.png --json comparison.json
"""
from __future__ import annotations

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import argparse
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from utils.config import add_config_arguments
    parser = argparse.ArgumentParser(
        prog="python validate.py",
        description="Evaluate a checkpoint (--ckpt) or compare several (--compare) on the val or test split. "
                    "Data paths come from --cfg, or else from the config stored in the (first) checkpoint; "
                    "KEY=VALUE overrides either.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, cfg_required=False)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--ckpt", metavar="PATH", help="checkpoint to evaluate (best.pt / last.pt)")
    target.add_argument("--compare", nargs="+", metavar="PATH",
                        help="checkpoints to compare on the same data (the paper's Table 3/4 and Figure 7)")
    parser.add_argument("--names", nargs="+", metavar="NAME",
                        help="one display name per --compare checkpoint, all different (default: their run folder "
                             "names, with as much of the path as tells them apart: my_teacher/best, my_teacher/last)")
    parser.add_argument("--split", choices=("val", "test"), default="test",
                        help="split to evaluate (default test). Every question is scored; one whose video has no "
                             "features is answered from all-zero features (eval.missing_features=exclude leaves "
                             "them out, and the output says so). --compare adds a 'test-selected (optimistic)' "
                             "column when the runs were trained with eval.test_every_epoch")
    parser.add_argument("--write_preds", metavar="FILE",
                        help="--ckpt only: write a JSON list with, per question, its text, answer, prediction, "
                             "type and whether it is correct")
    parser.add_argument("--out", metavar="FILE.md", help="--compare only: save the markdown tables to this file")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="--compare only: save a figure of test accuracy per type and validation curves")
    parser.add_argument("--max_examples", type=int, default=20,
                        help="--compare only: rows of the disagreement table (default 20)")
    parser.add_argument("--json", metavar="FILE", help="write the results (accuracies, counts, parameters, "
                                                       "disagreements) as JSON")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides the config's device)")
    return parser


def run(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, evaluate, print and write what was asked; returns the results dict."""
    from training.evaluation import compare_checkpoints, evaluate_checkpoint
    from training.log import setup_logging
    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    for option in ("compare", "names"):  # KEY=VALUE overrides written right after these lists belong to overrides
        values = getattr(args, option) or []
        stray = [a for a in values if "=" in a and not Path(a).exists()]
        args.overrides += stray
        setattr(args, option, [a for a in values if a not in stray] or None)
    if args.max_examples < 0:
        parser.error(f"--max_examples must be >= 0, got {args.max_examples}")
    from utils.atomic import check_writable, write_text_atomic
    for flag in ("json", "out", "write_preds", "plot"):  # before evaluating: results are never computed, then lost
        if getattr(args, flag):
            check_writable(getattr(args, flag), f"--{flag}")
    log = setup_logging()
    overrides = list(args.overrides) + ([f"device={args.device}"] if args.device else [])
    if args.ckpt:
        if args.out or args.plot or args.names:
            raise SystemExit("--out, --plot and --names go with --compare")
        result = evaluate_checkpoint(args.ckpt, args.cfg, overrides, args.split, with_predictions=bool(args.write_preds))
        log.info(f"{args.ckpt} ({result['mode']}, {result['parameters']:,} trainable parameters):\n{result['table']}\n"
                 f"Scoring: {result['scoring']['note']}")
        if args.write_preds:
            write_text_atomic(args.write_preds, json.dumps(result["predictions"], indent=1, ensure_ascii=False))
            log.info(f"predictions: {args.write_preds}")
            result = {k: v for k, v in result.items() if k != "predictions"}
    else:
        if args.write_preds:
            raise SystemExit("--write_preds goes with --ckpt")
        result = compare_checkpoints(args.compare, args.names, args.cfg, overrides, args.split, args.max_examples)
        markdown = (f"## {args.split} {result['unit']} {result['breakdown']}\n\n{result['markdown']['table']}\n\n"
                    f"{result['markdown']['notes']}\n\n"
                    f"## Questions where the models disagree ({result['num_disagreements']} of "
                    f"{result['num_questions']}; first {len(result['disagreements'])})\n\n"
                    f"{result['markdown']['disagreements']}\n")
        log.info(markdown)
        if args.out:
            write_text_atomic(args.out, markdown)
            log.info(f"tables: {args.out}")
        if args.plot:
            from training.plots import plot_comparison
            Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
            title = (f"{result['dataset']} {args.split} {result['metric']} {result['breakdown']}: "
                     f"{', '.join(result['histories'])}")
            plot_comparison(result["models"], result["histories"], Path(args.plot), title, result["baseline"])
            log.info(f"figure: {args.plot}")
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=1, ensure_ascii=False))
        log.info(f"results: {args.json}")
    return result


def main(argv: list[str] | None = None) -> int:
    from training.engine import NonFiniteLossError
    from utils.cli import exit_on_input_error
    try:
        run(argv)
    except Exception as e:  # input or environment: one line and exit code 2 (utils/cli.py); a bug: its traceback
        return exit_on_input_error(e, extra=(NonFiniteLossError,))
    return 0


if __name__ == "__main__":
    sys.exit(main())
