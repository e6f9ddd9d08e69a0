"""``python -m preprocess.synthetic``: write a synthetic dataset in its official layout (preprocess/synthetic)."""
from __future__ import annotations

import argparse
from pathlib import Path

from preprocess.synthetic import DEFAULT_FRAMES, DEFAULT_NUM_VIDEOS, DEFAULT_SIZE, LAYOUTS, write_synthetic
from utils.cli import exit_on_input_error


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m preprocess.synthetic",
                                     description="Write a tiny synthetic dataset in the official layout of "
                                                 f"{', '.join(LAYOUTS)} (seeded, CPU, seconds).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", required=True,
                        help=f"{', '.join(LAYOUTS)} (or an alias: msvd, msrvtt, tgif, next-qa)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--question_type", default=None, help="TGIF-QA: one task's files only (default: all four)")
    parser.add_argument("--num_videos", type=int, default=DEFAULT_NUM_VIDEOS, help="videos")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per video")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="frame side in pixels (even, >= 32)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same questions and scenes")
    args = parser.parse_args(argv)
    try:
        counts = write_synthetic(args.dataset, args.out, args.question_type, args.num_videos, args.seed,
                                 args.frames, args.size)
    except Exception as e:  # a bad setting or output folder: one line and exit code 2 (utils/cli.py)
        raise SystemExit(exit_on_input_error(e, extra=(ValueError,))) from None
    print(f"wrote {args.out}: " + ", ".join(f"{name} {count}" for name, count in counts.items()) + " questions")
    return counts


if __name__ == "__main__":
    main()
