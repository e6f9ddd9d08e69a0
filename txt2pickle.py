"""Convert GloVe text (glove.840B.300d.txt) into our compact GloVe pickle, streaming, at about the output's memory.

    python txt2pickle.py --input data/glove/glove.840B.300d.txt --output data/glove/glove.840.300d.pkl

Each line is a token and ``--dim`` numbers separated by single spaces; tokens may contain spaces themselves (the
840B file has some), so the vector is the last ``--dim`` fields and the token everything before them. A would-be
token whose last word is a number means the line has a field too many: that line is malformed, not a token with a
space. Numbers must be finite float32 values (no nan, inf, or values beyond float32's range). A UTF-8 byte-order
mark and trailing spaces are ignored; tab separators and CR-only (old Mac) line endings are reported with the
command that converts them. A first pass
counts the lines, the vectors go straight into one preallocated float32 (N, dim) array, and the output is
``preprocess.glove``'s format (one string of tokens + that array), so peak memory is about the vectors' size plus
the tokens: the 840B file (2.2 M x 300, 2.6 GB of vectors) fits a 24 GiB machine with room to spare.
Malformed lines are reported with their line number and skipped (``--strict``: stop at the first); a token seen
twice keeps its first vector.
"""
from __future__ import annotations

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import argparse
import errno
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from termcolor import colored
from utils.progress import progress

from preprocess.glove import save_glove
from utils.cli import exit_on_input_error
from utils.config import REPO_ROOT

_CHUNK_BYTES = 1 << 24
_PROGRESS_EVERY = 4096  # lines between progress-bar updates
_SHOWN = 10


class MalformedLine(ValueError):
    """A line that is not a token followed by ``dim`` numbers."""


class DimensionMismatch(ValueError):
    """The file's first line does not hold ``dim`` numbers: ``--dim`` is wrong for this file."""


@dataclass
class ConversionStats:
    """What a conversion kept and skipped; lists hold (line number, detail) of the first few cases."""

    tokens: int = 0
    dim: int = 0
    malformed: int = 0
    duplicates: int = 0
    blank: int = 0
    tokens_with_spaces: int = 0
    malformed_examples: list = field(default_factory=list)
    duplicate_examples: list = field(default_factory=list)
    spaced_examples: list = field(default_factory=list)


def count_lines(path: Path) -> int:
    """Number of lines in a file (a last line without a newline counts), read in 16 MiB chunks."""
    lines, last = 0, b"\n"
    with open(path, "rb") as f, progress(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc="counting lines", leave=False) as bar:
        while chunk := f.read(_CHUNK_BYTES):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
            bar.update(len(chunk))
    return lines + (last != b"\n")


def decode_line(raw: bytes, first: bool = False) -> str:
    """A raw line as text without its line ending and trailing spaces (and, on the ``first`` line, without a UTF-8
    byte-order mark); raises MalformedLine if it is not UTF-8 or holds a carriage return inside it."""
    try:
        line = raw.decode("utf-8").rstrip("\r\n").rstrip(" ")
    except UnicodeDecodeError as e:
        raise MalformedLine(f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    if "\r" in line:
        raise MalformedLine("a carriage return inside the line: the file has CR-only (old Mac) line endings; "
                            "convert them with `tr '\\r' '\\n' < in.txt > out.txt`")
    return line.removeprefix("\ufeff") if first else line


def split_line(line: str, dim: int) -> tuple[str, list[str]]:
    """(token, the ``dim`` number fields) of one GloVe line; raises MalformedLine."""
    fields = line.split(" ")
    if len(fields) < dim + 1:
        raise MalformedLine(f"expected a token and {dim} numbers, found {len(fields)} space-separated fields"
                            + _TAB_ADVICE * ("\t" in line))
    token = " ".join(fields[:-dim])
    if not token.strip(" "):
        raise MalformedLine("empty token")
    if token.endswith(" "):
        raise MalformedLine(f"two spaces before the numbers (the token would be {token!r})")
    if len(fields) > dim + 1 and _is_numeral(fields[-dim - 1]):
        raise MalformedLine(f"{len(fields) - 1} numbers after the token {fields[0]!r}, expected {dim} (a token "
                            f"cannot end in a number: {token!r})")
    return token, fields[-dim:]


def store_vector(row: np.ndarray, numbers: list[str], token: str) -> None:
    """Parse ``numbers`` into ``row`` (dim,) float32; raises MalformedLine naming the token and the field that is
    not a number, or not a finite float32 (nan, inf, beyond float32's range)."""
    try:
        row[:] = numbers  # a value beyond float32's range becomes inf, refused below
    except ValueError:
        bad = next(text for text in numbers if not _is_float(text))
        raise MalformedLine(f"{token!r}: not a number: {bad!r}") from None
    if not np.isfinite(row).all():
        bad = numbers[int(np.flatnonzero(~np.isfinite(row))[0])]
        raise MalformedLine(f"{token!r}: {bad!r} is not a finite float32 number")


_TAB_ADVICE = " (tabs are not separators: convert them with `tr '\\t' ' ' < in.txt > out.txt`)"


def numeric_tail(fields: list[str]) -> int:
    """How many of the last fields parse as numbers, leaving at least one field for the token."""
    count = 0
    while count < len(fields) - 1 and _is_float(fields[-1 - count]):
        count += 1
    return count


def _is_numeral(text: str) -> bool:
    """A number written with digits ('0.1', '-3e-1'; not the words 'nan' or 'inf', which are also tokens)."""
    return any(c.isdigit() for c in text) and _is_float(text)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_dimension(line: str, dim: int, where: str) -> None:
    """Raise DimensionMismatch (with the right advice) unless ``line`` ends in exactly ``dim`` numbers."""
    if "\t" in line and " " not in line:
        raise DimensionMismatch(f"{where}: fields are separated by tabs, GloVe text by single spaces: convert them "
                                "with `tr '\\t' ' ' < in.txt > out.txt`")
    found = numeric_tail(line.split(" "))
    if found != dim:
        raise DimensionMismatch(f"{where} ends in {found} numbers, not {dim}: is --dim right (--dim {found})?")


def convert(input_path: Path, output_path: Path, dim: int, strict: bool = False) -> ConversionStats:
    """Convert GloVe text to our pickle and return what was kept and skipped.

    Raises DimensionMismatch when the first line does not hold ``dim`` numbers, and MalformedLine (naming the file
    and line number) at the first malformed line in strict mode or when no line is valid.
    """
    capacity = count_lines(input_path)
    vectors = np.empty((capacity, dim), dtype=np.float32)  # pages are only committed as rows are written
    row_of: dict[str, int] = {}  # token -> row, in file order
    stats = ConversionStats(dim=dim)
    first_line, pending_bytes = True, 0
    with open(input_path, "rb") as f, np.errstate(over="ignore"), progress(  # overflow: reported per line instead
            total=input_path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
            desc=f"converting {input_path.name}") as bar:
        for line_number, raw in enumerate(f, start=1):
            pending_bytes += len(raw)
            if line_number % _PROGRESS_EVERY == 0:
                bar.update(pending_bytes)
                pending_bytes = 0
            try:
                line = decode_line(raw, first=line_number == 1)
                if not line.strip(" "):
                    stats.blank += 1
                    continue
                if first_line:
                    check_dimension(line, dim, f"{input_path}: line {line_number}")
                first_line = False
                token, numbers = split_line(line, dim)
                store_vector(vectors[len(row_of)], numbers, token)
            except MalformedLine as e:
                if strict:
                    raise MalformedLine(f"{input_path}: line {line_number}: {e}") from None
                stats.malformed += 1
                if len(stats.malformed_examples) < _SHOWN:
                    stats.malformed_examples.append((line_number, str(e)))
                continue
            if token in row_of:
                stats.duplicates += 1
                if len(stats.duplicate_examples) < _SHOWN:
                    stats.duplicate_examples.append((line_number, token))
                continue
            row_of[token] = len(row_of)
            if " " in token:
                stats.tokens_with_spaces += 1
                if len(stats.spaced_examples) < _SHOWN:
                    stats.spaced_examples.append((line_number, token))
        bar.update(pending_bytes)
    stats.tokens = len(row_of)
    if not row_of:
        first_problem = "".join(f" (line {n}: {why})" for n, why in stats.malformed_examples[:1])
        raise MalformedLine(f"{input_path}: no valid lines{first_problem}")
    save_glove(list(row_of), vectors[: stats.tokens], output_path)
    return stats


def _report(stats: ConversionStats, input_path: Path, output_path: Path, seconds: float) -> None:
    print(colored(f"wrote {output_path}: {stats.tokens:,} tokens x {stats.dim} dims, "
                  f"{output_path.stat().st_size / 2**20:,.1f} MiB, in {seconds:.1f} s", "green"))
    if stats.tokens_with_spaces:
        shown = ", ".join(f"{token!r} (line {n})" for n, token in stats.spaced_examples)
        print(f"{stats.tokens_with_spaces:,} tokens contain spaces (kept whole): {shown}"
              + (" ..." if stats.tokens_with_spaces > len(stats.spaced_examples) else ""))
    if stats.malformed:
        shown = "; ".join(f"line {n}: {why}" for n, why in stats.malformed_examples)
        print(colored(f"{input_path}: skipped {stats.malformed:,} malformed lines: {shown}"
                      + (" ..." if stats.malformed > len(stats.malformed_examples) else ""), "yellow"))
    if stats.duplicates:
        shown = ", ".join(f"{token!r} (line {n})" for n, token in stats.duplicate_examples)
        print(colored(f"{input_path}: {stats.duplicates:,} repeated tokens kept their first vector: {shown}"
                      + (" ..." if stats.duplicates > len(stats.duplicate_examples) else ""), "yellow"))
    if stats.blank:
        print(f"{stats.blank:,} blank lines ignored")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python txt2pickle.py",
        description="Convert GloVe text into the compact GloVe pickle read by preprocess.preprocess_questions "
                    "(streaming; peak memory about the size of the vectors).")
    parser.add_argument("--input", type=Path, default=REPO_ROOT / "data" / "glove" / "glove.840B.300d.txt",
                        help="GloVe text file (default: data/glove/glove.840B.300d.txt in the repository)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "data" / "glove" / "glove.840.300d.pkl",
                        help="output pickle (default: data/glove/glove.840.300d.pkl in the repository)")
    parser.add_argument("--dim", type=int, default=300, help="numbers per line (default: %(default)s)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first malformed line instead of reporting and skipping it")
    args = parser.parse_args(argv)
    if args.dim < 1:
        parser.error("--dim must be at least 1")
    start = time.perf_counter()
    try:
        if not args.input.is_file():
            raise FileNotFoundError(errno.ENOENT, "GloVe text file not found", str(args.input))
        stats = convert(args.input, args.output, args.dim, args.strict)
    except Exception as e:  # a malformed file, reading or writing (disk full, permissions): one line, exit code 2
        raise SystemExit(exit_on_input_error(e, extra=(MalformedLine, DimensionMismatch))) from None
    _report(stats, args.input, args.output, time.perf_counter() - start)


if __name__ == "__main__":
    main()
