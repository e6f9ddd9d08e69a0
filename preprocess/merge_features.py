"""Join the shard files of a sharded extraction into the file an unsharded run writes (same datasets, rows, attrs).

    python -m preprocess.merge_features --inputs 'data/msvd-qa/msvd-qa_appearance_feat.shard*of4.h5'
    python -m preprocess.merge_features --inputs a.shard0of2.h5 a.shard1of2.h5 --out a.h5

Shard I of N holds rows I, I+N, I+2N, ... of the full file. Every shard must be present and complete, with the same
settings; otherwise the merge stops with a message naming the missing or unfinished shard.
"""
from __future__ import annotations

import argparse
import glob
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.openmp_policy import default_openmp_wait_policy
default_openmp_wait_policy()  # before torch loads; see utils/openmp_policy.py

import h5py
import numpy as np

from preprocess.feature_extraction import (ROW_DATASETS, SHARD_ATTRS, attr_value, create_feature_file,
                                            failure_report_path, finalize_feature_file, log, shard_path)
from utils.cli import exit_on_input_error
from utils.progress import progress

SHARD_NAME = re.compile(r"^(?P<stem>.*)\.shard(?P<index>\d+)of(?P<count>\d+)(?P<suffix>\.[^.]*)$")
ROWS_PER_COPY = 64


class MergeError(RuntimeError):
    """The shards cannot be merged; the message names the file and what is wrong."""


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Paths and glob patterns -> the distinct files they name, in order."""
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise MergeError(f"no file matches {pattern!r}")
        paths.extend(Path(match) for match in matches)
    return list(dict.fromkeys(paths))


def _read_shard(path: Path) -> dict:
    """A shard's attributes (plain values), checked for being a finished shard file."""
    if not path.is_file():
        raise MergeError(f"shard file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            attrs = {key: attr_value(value) for key, value in f.attrs.items()}
            done = f["done"][:] if "done" in f else None
    except OSError as e:
        raise MergeError(f"{path}: cannot be read as HDF5 ({e})") from None
    missing = [key for key in (*SHARD_ATTRS, "feature_key") if key not in attrs]
    if missing or done is None:
        raise MergeError(f"{path}: not a shard written by preprocess_features (no {missing or ['done']})")
    if not done.all():
        raise MergeError(f"{path}: shard {attrs['shard_index']} of {attrs['num_shards']} is incomplete "
                         f"({int(done.sum())} of {len(done)} videos done); rerun its extraction command to finish it")
    return attrs


def _settings(attrs: dict) -> dict:
    """The attributes that describe the extraction (shard bookkeeping and completion state left out)."""
    return {key: value for key, value in attrs.items()
            if key not in (*SHARD_ATTRS, "num_videos", "num_failed", "num_partial", "complete")}


def _default_out(path: Path) -> Path:
    match = SHARD_NAME.match(path.name)
    if match is None:
        raise MergeError(f"{path}: not named like a shard (<name>.shard<I>of<N>.h5); pass --out")
    return path.with_name(match["stem"] + match["suffix"])


def merge(inputs: list[Path], out: Path | None = None) -> Path:
    """Merge shard files into ``out`` (default: the shard name without ``.shard<I>of<N>``). Returns ``out``."""
    if not inputs:
        raise MergeError("no input files")
    shards = {}
    for path in inputs:
        attrs = _read_shard(path)
        if attrs["shard_index"] in shards:
            raise MergeError(f"{path} and {shards[attrs['shard_index']][0]} are both shard {attrs['shard_index']}")
        shards[attrs["shard_index"]] = (path, attrs)
    first_path, first = shards[min(shards)]
    num_shards, total = first["num_shards"], first["dataset_num_videos"]
    out = Path(out) if out is not None else _default_out(first_path)
    for index, (path, attrs) in shards.items():
        if attrs["num_shards"] != num_shards or attrs["dataset_num_videos"] != total:
            raise MergeError(f"{path} belongs to a split into {attrs['num_shards']} shards of "
                             f"{attrs['dataset_num_videos']} videos, {first_path} to {num_shards} of {total}")
        if _settings(attrs) != _settings(first):
            differing = sorted(k for k in set(_settings(attrs)) | set(_settings(first))
                               if _settings(attrs).get(k) != _settings(first).get(k))
            raise MergeError(f"{path} was extracted with other settings than {first_path}: {differing}")
    missing = sorted(set(range(num_shards)) - set(shards))
    if missing:
        base = _default_out(first_path) if SHARD_NAME.match(first_path.name) else out
        names = ", ".join(str(shard_path(base, i, num_shards)) for i in missing)
        raise MergeError(f"missing shard(s) {missing} of {num_shards}: expected {names}")

    ids = np.zeros(total, dtype=np.int64)
    for index, (path, _) in shards.items():
        with h5py.File(path, "r") as f:
            ids[index::num_shards] = f["ids"][:]
    feature_key = first["feature_key"]
    create_feature_file(out, ids, _settings(first))
    paths = [""] * total
    with h5py.File(out, "r+") as merged:
        for index, (path, _) in progress(sorted(shards.items()), desc="merging shards", unit="shard"):
            _copy_rows(path, merged, feature_key, index, num_shards, paths)
        merged["done"][:] = 1
        failed = finalize_feature_file(merged, paths, out)
    report = f", {failed} failed (see {failure_report_path(out)})" if failed else ""
    log(f"merged {num_shards} shards into {out}: {total} videos{report}", "yellow" if failed else "green")
    return out


def _copy_rows(path: Path, merged: h5py.File, feature_key: str, index: int, num_shards: int, paths: list[str]):
    """Copy shard ``index``'s rows into rows index, index + num_shards, ... of ``merged`` (in blocks)."""
    with h5py.File(path, "r") as shard:
        n = len(shard["ids"])
        for name in ROW_DATASETS:
            merged[name][index::num_shards] = shard[name][:]
        for start in range(0, n, ROWS_PER_COPY):
            stop = min(start + ROWS_PER_COPY, n)
            merged[feature_key][index + start * num_shards:index + stop * num_shards:num_shards] = \
                shard[feature_key][start:stop]
    report = failure_report_path(path)
    if report.exists():  # the shard's report holds the video paths of its failed rows
        with open(report) as tsv:
            next(tsv)
            shard_ids = merged["ids"][index::num_shards]
            row_of = {int(video_id): index + position * num_shards for position, video_id in enumerate(shard_ids)}
            for line in tsv:
                video_id, video_path, _ = line.rstrip("\n").split("\t", 2)
                paths[row_of[int(video_id)]] = video_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m preprocess.merge_features", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", nargs="+", required=True,
                        help="the shard files (paths or quoted glob patterns such as 'x.shard*of4.h5')")
    parser.add_argument("--out", default=None, help="merged file (default: the shard name without .shard<I>of<N>)")
    args = parser.parse_args(argv)
    try:
        merge(expand_inputs(args.inputs), args.out)
    except Exception as e:  # input or environment: one line and exit code 2 (utils/cli.py); a bug: its traceback
        return exit_on_input_error(e, lambda line: log(line, "red"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
