"""Question tables in CSV (NExT-QA, comma-separated) and TSV (TGIF-QA, tab-separated): rows as dicts with their line.

A missing file raises FileNotFoundError naming it; a header without a required column raises DatasetLayoutError
naming the file, line 1 and the missing columns; text that is not UTF-8 raises DatasetLayoutError naming the file;
a quoted field that is never closed (it would swallow every following row) raises DatasetLayoutError naming the
line where it starts, as pandas refuses such a file.
Rows with too few fields are kept (their absent fields are None) so that the dataset module reports them as
malformed entries by line.
"""
from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

from preprocess.datasets.base import DatasetLayoutError


_END_OF_FILE = "#kdvqa: end of file#"
_UNCLOSED = ("a quoted field starting on this line is never closed (its quote swallows every following row; pandas "
             "refuses the file too)")


@dataclass
class Row:
    """One data row: ``index`` (0-based among data rows), ``line`` (1-based line of the file where it starts) and
    ``fields`` (column name -> text, None when the row ends before that column)."""
    index: int
    line: int
    fields: dict


def find_file(dataset_dir: Path, name: str, subfolders: tuple = ()) -> Path:
    """``<dir>/<name>`` or ``<dir>/<sub>/<name>`` for the first subfolder that has it; the former when none does."""
    for folder in (dataset_dir, *(dataset_dir / sub for sub in subfolders)):
        if (folder / name).is_file():
            return folder / name
    return dataset_dir / name


def read_table(path: Path, required: tuple, delimiter: str) -> list[Row]:
    """The rows of a delimited text file whose first line names the columns; ``required`` columns must be there."""
    if not path.is_file():
        raise FileNotFoundError(f"question file not found: {path}")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # a leading byte-order mark is not a column name
            # A last line that only the end of the file can produce: if a quote is left open, it is swallowed
            # into that quoted field (csv's lenient reader otherwise ends the field silently at the end of file).
            reader = csv.reader(itertools.chain(f, [_END_OF_FILE + "\n"]), delimiter=delimiter)
            header = next(reader, None)
            if header is None or header == [_END_OF_FILE]:
                raise DatasetLayoutError(f"{path}:1: empty file, expected a header naming the columns")
            if header and _END_OF_FILE in header[-1]:
                raise DatasetLayoutError(f"{path}:1: {_UNCLOSED}")
            header = [name.strip() for name in header]
            missing = [name for name in required if name not in header]
            if missing:
                raise DatasetLayoutError(f"{path}:1: missing column {', '.join(repr(m) for m in missing)} (the "
                                         f"header has {', '.join(header)})")
            rows, line = [], reader.line_num + 1
            for values in reader:
                if values == [_END_OF_FILE]:
                    return rows
                if values and _END_OF_FILE in values[-1]:
                    break
                if values:  # blank lines are not rows
                    fields = {name: (values[i] if i < len(values) else None) for i, name in enumerate(header)}
                    rows.append(Row(len(rows), line, fields))
                line = reader.line_num + 1
            raise DatasetLayoutError(f"{path}:{line}: {_UNCLOSED}")
    except UnicodeDecodeError as e:
        raise DatasetLayoutError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except csv.Error as e:
        raise DatasetLayoutError(f"{path}:{reader.line_num}: not a valid table ({e})") from None


def parse_int(text: str | None) -> int | None:
    """A non-negative integer field ("3", " 3 ", "3.0" as pandas writes integers with gaps), else None."""
    if text is None:
        return None
    text = text.strip()
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
        if not number.is_integer():
            return None
        value = int(number)
    return value if 0 <= value < 2**63 else None
