"""Measure txt2pickle.py's wall time and peak memory on a generated GloVe text file, and project them to 840B.

    python bench/txt2pickle_memory.py --words 400000 --dim 300

Writes a GloVe-format text file (840B-like numbers, one token with spaces every ``--space_every`` lines), converts
it with txt2pickle.py in a subprocess, and reports the child's peak RSS (``ru_maxrss``) against the output size.
A tiny conversion first gives the fixed cost (interpreter + imports); the projection for glove.840B.300d.txt
(2,196,017 tokens x 300, 5.65 GB of text) scales the measured per-token memory and per-byte time.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import BenchError
from utils.cli import exit_on_input_error

REPO_ROOT = Path(__file__).resolve().parent.parent
GLOVE_840B_TOKENS = 2_196_017
GLOVE_840B_DIM = 300
GLOVE_840B_TEXT_BYTES = 5_646_236_541
_ROW_POOL = 4096  # distinct number rows, reused cyclically: parsing cost is that of real data, generation is fast


def write_glove_text(path: Path, words: int, dim: int, space_every: int, seed: int = 0) -> None:
    """GloVe text: ``words`` lines 'token n1 ... n_dim', numbers formatted like 840B's (5 significant digits)."""
    rng = np.random.default_rng(seed)
    pool = [" ".join(f"{x:.5g}" for x in row) for row in rng.standard_normal((min(words, _ROW_POOL), dim)) * 0.4]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(words):
            token = f"tok {i} . ." if space_every and i % space_every == space_every - 1 else f"tok{i}"
            f.write(f"{token} {pool[i % len(pool)]}\n")


# A child's ru_maxrss includes its parent's memory at fork time (Linux carries the high-water mark across exec),
# so the conversion is started from this lean launcher (no numpy, about 10 MiB), which reports its children's peak.
_LAUNCHER = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def run_conversion(text: Path, output: Path, dim: int) -> tuple[float, int]:
    """Run txt2pickle.py in a subprocess: (wall seconds, its peak RSS in bytes)."""
    command = [sys.executable, str(REPO_ROOT / "txt2pickle.py"), "--input", str(text), "--output", str(output),
               "--dim", str(dim)]
    start = time.perf_counter()
    launched = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], capture_output=True, text=True)
    if launched.returncode != 0:
        last = (launched.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"txt2pickle.py failed (exit {launched.returncode}) on {text}: {last}")
    seconds = time.perf_counter() - start
    return seconds, int(launched.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python bench/txt2pickle_memory.py",
                                     description="Wall time and peak RSS of txt2pickle.py, projected to GloVe 840B.")
    parser.add_argument("--words", type=int, default=400_000,
                        help="tokens in the generated file (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=300, help="numbers per token (default: %(default)s)")
    parser.add_argument("--space_every", type=int, default=1000,
                        help="one token containing spaces every this many lines, 0 for none (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the text and pickle files go (default: a temporary folder, removed afterwards)")
    args = parser.parse_args(argv)
    try:
        measure(args)
    except Exception as e:  # bad input, a failed conversion: one line and exit code 2 (utils/cli.py)
        raise SystemExit(exit_on_input_error(e)) from None


def measure(args: argparse.Namespace) -> None:
    """Generate the GloVe text of ``args``, convert it with txt2pickle.py, print time, peak RSS and projections."""
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="txt2pickle_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        tiny_text, text = workdir / "tiny.txt", workdir / f"glove_{args.words}x{args.dim}.txt"
        write_glove_text(tiny_text, 1000, args.dim, args.space_every)
        start = time.perf_counter()
        write_glove_text(text, args.words, args.dim, args.space_every)
        print(f"generated {text} ({text.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s")

        _, base_rss = run_conversion(tiny_text, workdir / "tiny.pkl", args.dim)
        seconds, peak_rss = run_conversion(text, workdir / "glove.pkl", args.dim)
        vector_bytes = args.words * args.dim * 4
        output_bytes = (workdir / "glove.pkl").stat().st_size
        per_token = (peak_rss - base_rss) / args.words - args.dim * 4  # memory per token beyond its vector
        mib = 2**20
        print(f"words {args.words:,} x dim {args.dim}: text {text.stat().st_size / mib:,.0f} MiB, "
              f"output {output_bytes / mib:,.0f} MiB (vectors {vector_bytes / mib:,.0f} MiB)")
        print(f"wall {seconds:.1f} s ({text.stat().st_size / mib / seconds:.1f} MiB/s, "
              f"{args.words / seconds:,.0f} lines/s); peak RSS {peak_rss / mib:,.0f} MiB "
              f"= {peak_rss / output_bytes:.2f} x output (fixed cost {base_rss / mib:.0f} MiB, "
              f"{per_token:.0f} B per token beyond its vector)")
        projected_rss = base_rss + GLOVE_840B_TOKENS * (GLOVE_840B_DIM * 4 + per_token)
        projected_s = seconds / text.stat().st_size * GLOVE_840B_TEXT_BYTES
        print(f"projection for 840B ({GLOVE_840B_TOKENS:,} x {GLOVE_840B_DIM}, "
              f"{GLOVE_840B_TEXT_BYTES / 1e9:.2f} GB text): peak RSS {projected_rss / 2**30:.2f} GiB "
              f"(vectors {GLOVE_840B_TOKENS * GLOVE_840B_DIM * 4 / 2**30:.2f} GiB), "
              f"about {projected_s / 60:.0f} min on this machine")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
