"""Data pipeline: vocabulary, HCRN/DualVGR question files, HDF5 video features, and whole-batch loading.

Files (docs/data_formats.md): ``dataset.*`` config keys name them; relative names resolve inside
``dataset.data_dir`` (itself relative to the repository root unless absolute).

A batch is built in one call from an array of question indices (the samplers yield those), with vectorised
numpy gathers and one sorted HDF5 read per feature file, never a per-sample loop or file open:

    appearance      (N, C, F, D) float32   the batch's unique videos
    motion          (N, C, D)    float32
    question        (B, L)       int64     trimmed to the longest question of the batch
    question_len    (B,)         int64
    answer          (B,)         int64
    video_index     (B,)         int64     row of ``appearance``/``motion`` for each question
    question_index  (B,)         int64     position of each question in its split

Val/test questions whose video has no usable features (missing from the feature files, or ``valid = 0``) are
scored like every other question, answered from all-zero features as HCRN/DualVGR's loaders do: the feature stores
reserve the video key ``M`` (the number of usable videos) for an all-zero video. ``eval.missing_features=exclude``
leaves them out of the accuracy denominator instead; :meth:`QuestionSplit.scoring_note` says which was done.
Training questions without features are skipped.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from training.checkpoint import DataSignature, vocab_fingerprint
from training.log import get_logger
from training.metrics import question_types
from utils.config import ConfigError, REPO_ROOT
from utils.progress import progress

APPEARANCE_DATASET = "resnet_features"
MOTION_DATASET = "resnext_features"
SPLITS = ("train", "val", "test")
SPLIT_KEYS = {"train": "train_question_pt", "val": "val_question_pt", "test": "test_question_pt"}
FEATURE_LOAD_CHUNK = 64  # videos per HDF5 read when loading features into memory
MISSING_FEATURE_POLICIES = ("zeros", "exclude")  # config key eval.missing_features (val/test splits)


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file and the config key."""


# ---------------------------------------------------------------------------------------------- paths
def resolve_path(value: str | Path, base: Path) -> Path:
    path = Path(os.path.expanduser(str(value)))
    return path if path.is_absolute() else base / path


def data_dir(cfg) -> Path:
    return resolve_path(cfg.dataset.data_dir, REPO_ROOT)


def dataset_path(cfg, key: str) -> Path:
    """The file named by config key ``dataset.<key>``, resolved inside ``dataset.data_dir``."""
    return resolve_path(cfg.dataset[key], data_dir(cfg))


def require_file(path: Path, key: str) -> Path:
    if not path.is_file():
        hint = "" if path.parent.is_dir() else f" (folder {path.parent} does not exist either)"
        raise DataError(f"file not found: {path}{hint}; set by config key '{key}'")
    return path


# ---------------------------------------------------------------------------------------------- vocabulary
def load_vocab(path: Path, key: str = "dataset.vocab_json") -> dict:
    from preprocess.question_file import QuestionFileError, load_vocab as read_vocab
    require_file(path, key)
    try:
        vocab = read_vocab(path)
    except QuestionFileError as e:
        raise DataError(f"{e} (config key '{key}')") from None
    for field_name in ("question_token_to_idx", "answer_token_to_idx"):
        if not vocab[field_name]:
            raise DataError(f"{path} (config key '{key}'): '{field_name}' is empty")
    return vocab


def inverse_vocab(mapping: dict) -> list[str]:
    """Token list in index order from a token -> index mapping."""
    tokens = [""] * len(mapping)
    for token, index in mapping.items():
        tokens[index] = token
    return tokens


# ---------------------------------------------------------------------------------------------- features
def to_device_async(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device`` without a host sync: a copy from pageable host memory to a GPU would synchronise the
    stream, so CPU tensors are staged in pinned memory first (PyTorch's caching host allocator)."""
    if device.type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


@dataclass
class VideoTable:
    """The videos usable for training: valid and present in both feature files.

    ``video_ids`` (M,) sorted ascending; ``appearance_rows`` / ``motion_rows`` (M,) their HDF5 rows. A video's
    position in ``video_ids`` is its *video key* (the row of the in-memory feature tensors). Key M
    (:attr:`zero_key`) is the all-zero video that val/test questions without features are answered from.
    """
    video_ids: np.ndarray
    appearance_rows: np.ndarray
    motion_rows: np.ndarray
    invalid_ids: np.ndarray  # ids present in a file but marked valid == 0
    appearance_shape: tuple
    motion_shape: tuple
    appearance_dtype: np.dtype
    motion_dtype: np.dtype

    @property
    def zero_key(self) -> int:
        """The reserved key of the all-zero video (one past the usable videos)."""
        return len(self.video_ids)

    def keys_for(self, video_ids: np.ndarray) -> np.ndarray:
        """(N,) video key of each id, -1 where the id has no usable features."""
        video_ids = np.asarray(video_ids, dtype=np.int64)
        if len(self.video_ids) == 0:
            return np.full(len(video_ids), -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(self.video_ids, video_ids), 0, len(self.video_ids) - 1)
        return np.where(self.video_ids[pos] == video_ids, pos, -1)


def _read_feature_index(path: Path, dataset_name: str, key: str) -> tuple[np.ndarray, np.ndarray, tuple, np.dtype]:
    """(ids (N,), valid (N,) bool, feature shape, dtype) of one HDF5 feature file."""
    require_file(path, key)
    unfinished = (f"{path} (config key '{key}'): being written by a running extraction (or left unfinished: rerun "
                  "the extraction to finish it)")
    try:
        with h5py.File(path, "r") as f:
            if dataset_name not in f or "ids" not in f:
                raise DataError(f"{path} (config key '{key}'): expected datasets '{dataset_name}' and 'ids', found "
                                f"{sorted(f.keys())}")
            if not f.attrs.get("complete", True):  # our extractor's mark until its last video is written
                raise DataError(unfinished)
            if f["ids"].dtype.kind not in "iu":
                raise DataError(f"{path} (config key '{key}'): 'ids' must hold integer video ids, found "
                                f"{f['ids'].dtype}")
            ids = f["ids"][()].astype(np.int64).reshape(-1)
            valid = f["valid"][()].astype(bool).reshape(-1) if "valid" in f else np.ones(len(ids), dtype=bool)
            shape, dtype = f[dataset_name].shape, f[dataset_name].dtype
    except BlockingIOError:  # HDF5's file lock: a writer has it open
        raise DataError(unfinished) from None
    except OSError as e:
        raise DataError(f"{path} (config key '{key}'): not a readable HDF5 file: {e}") from None
    if shape[0] != len(ids) or len(valid) != len(ids):
        raise DataError(f"{path} (config key '{key}'): '{dataset_name}' has {shape[0]} rows but 'ids' has "
                        f"{len(ids)} and 'valid' {len(valid)}")
    return ids, valid, shape, dtype


def _first_rows(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique ids (sorted) and the first row holding each."""
    unique, first = np.unique(ids, return_index=True)
    return unique, first


def build_video_table(appearance_path: Path, motion_path: Path) -> VideoTable:
    app_ids, app_valid, app_shape, app_dtype = _read_feature_index(
        appearance_path, APPEARANCE_DATASET, "dataset.appearance_feat")
    mot_ids, mot_valid, mot_shape, mot_dtype = _read_feature_index(
        motion_path, MOTION_DATASET, "dataset.motion_feat")
    if len(app_shape) != 4 or len(mot_shape) != 3:
        raise DataError(f"feature shapes {app_shape} ({appearance_path}) and {mot_shape} ({motion_path}): expected "
                        "appearance (N, C, F, D) and motion (N, C, D)")
    if app_shape[1] != mot_shape[1]:
        raise DataError(f"clip counts differ: {appearance_path} has C={app_shape[1]}, {motion_path} has "
                        f"C={mot_shape[1]} (config keys 'dataset.appearance_feat', 'dataset.motion_feat')")
    for name, ids in (("appearance", app_ids), ("motion", mot_ids)):
        if len(np.unique(ids)) != len(ids):
            get_logger().warning(f"{name} feature file lists some video ids twice; the first row of each is used")
    app_unique, app_rows = _first_rows(app_ids)
    mot_unique, mot_rows = _first_rows(mot_ids)
    common, app_pos, mot_pos = np.intersect1d(app_unique, mot_unique, assume_unique=True, return_indices=True)
    usable = app_valid[app_rows[app_pos]] & mot_valid[mot_rows[mot_pos]]
    invalid = np.union1d(app_ids[~app_valid], mot_ids[~mot_valid])
    return VideoTable(video_ids=common[usable], appearance_rows=app_rows[app_pos][usable],
                      motion_rows=mot_rows[mot_pos][usable], invalid_ids=invalid,
                      appearance_shape=tuple(app_shape), motion_shape=tuple(mot_shape),
                      appearance_dtype=np.dtype(app_dtype), motion_dtype=np.dtype(mot_dtype))


def _sorted_read(dataset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """``dataset[rows]`` for any (unique) row order: h5py needs increasing indices, so read sorted and unsort."""
    order = np.argsort(rows)
    sorted_data = dataset[rows[order]]
    out = np.empty_like(sorted_data)
    out[order] = sorted_data
    return out


def _read_or_zero(dataset: h5py.Dataset, rows: np.ndarray, is_zero: np.ndarray) -> np.ndarray:
    """(U, ...) float32: ``dataset[rows[u]]`` where ``is_zero[u]`` is False, all zeros where it is True (the file
    is not touched for those). ``rows`` (U,) unique HDF5 rows (any value where ``is_zero``)."""
    out = np.zeros((len(rows),) + dataset.shape[1:], dtype=np.float32)
    if not is_zero.all():
        out[~is_zero] = _sorted_read(dataset, rows[~is_zero])
    return out


class H5Features:
    """Reads the features of a batch's videos from the HDF5 files.

    Each process (every DataLoader worker) opens its own handles lazily on first use and keeps them.
    """

    def __init__(self, appearance_path: Path, motion_path: Path, table: VideoTable):
        self.appearance_path = appearance_path
        self.motion_path = motion_path
        self.table = table
        self._handles = None
        self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"], state["_pid"] = None, None
        return state

    def _open(self):
        if self._handles is None or self._pid != os.getpid():
            self._handles = (h5py.File(self.appearance_path, "r"), h5py.File(self.motion_path, "r"))
            self._pid = os.getpid()
        return self._handles

    def read(self, keys: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """keys (U,) unique video keys -> appearance (U, C, F, D), motion (U, C, D), float32 CPU tensors.
        The key ``table.zero_key`` gives all-zero features."""
        app_file, mot_file = self._open()
        is_zero = keys == self.table.zero_key
        file_keys = np.where(is_zero, 0, keys)
        appearance = _read_or_zero(app_file[APPEARANCE_DATASET], self.table.appearance_rows[file_keys], is_zero)
        motion = _read_or_zero(mot_file[MOTION_DATASET], self.table.motion_rows[file_keys], is_zero)
        return torch.from_numpy(appearance), torch.from_numpy(motion)

    def close(self) -> None:
        if self._handles is not None and self._pid == os.getpid():
            for handle in self._handles:
                handle.close()
        self._handles = None


class InMemoryFeatures:
    """All usable videos' features held as tensors (``dtype``, on ``device``), rows indexed by video key; the
    last row (key M, ``table.zero_key``) is the all-zero video."""

    def __init__(self, appearance: torch.Tensor, motion: torch.Tensor):
        self.appearance = appearance  # (M + 1, C, F, D)
        self.motion = motion          # (M + 1, C, D)

    @classmethod
    def load(cls, appearance_path: Path, motion_path: Path, table: VideoTable, dtype: torch.dtype,
             device: torch.device, show_progress: bool = True) -> "InMemoryFeatures":
        num = len(table.video_ids)
        appearance = torch.empty((num + 1,) + table.appearance_shape[1:], dtype=dtype, device=device)
        motion = torch.empty((num + 1,) + table.motion_shape[1:], dtype=dtype, device=device)
        appearance[num], motion[num] = 0, 0  # the all-zero video
        with h5py.File(appearance_path, "r") as app_file, h5py.File(motion_path, "r") as mot_file:
            for target, rows, dataset in ((appearance, table.appearance_rows, app_file[APPEARANCE_DATASET]),
                                          (motion, table.motion_rows, mot_file[MOTION_DATASET])):
                by_row = np.argsort(rows)  # read in file order, chunk by chunk (peak memory: one chunk)
                chunks = range(0, num, FEATURE_LOAD_CHUNK)
                for start in progress(chunks, desc=f"loading {dataset.name.strip('/')}", unit="chunk",
                                      disable=not show_progress, leave=False):
                    keys = by_row[start:start + FEATURE_LOAD_CHUNK]
                    block = torch.from_numpy(dataset[rows[keys]]).to(dtype)
                    target[torch.from_numpy(keys).to(device)] = block.to(device)
        return cls(appearance, motion)

    def read(self, keys: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = to_device_async(torch.from_numpy(np.ascontiguousarray(keys)), self.appearance.device)
        return self.appearance[index].float(), self.motion[index].float()

    def close(self) -> None:
        pass


def features_bytes(table: VideoTable, dtype: torch.dtype) -> int:
    item = torch.tensor([], dtype=dtype).element_size()
    return item * len(table.video_ids) * (math.prod(table.appearance_shape[1:]) + math.prod(table.motion_shape[1:]))


# ---------------------------------------------------------------------------------------------- questions
@dataclass
class QuestionSplit:
    """One split's scored questions. Arrays are (N, ...) numpy.

    ``video_key`` indexes the VideoTable (``zero_key`` for the ``zero_feature_questions`` answered from all-zero
    features); ``types`` the question type (metrics.TYPE_NAMES order). ``skipped_*`` count the questions left out
    (video missing from the feature files / marked valid = 0); ``missing_features`` is the policy applied:
    skip (training), zeros or exclude (MISSING_FEATURE_POLICIES).
    """
    name: str
    path: Path
    questions: np.ndarray      # (N, L) int64
    lengths: np.ndarray        # (N,) int64
    answers: np.ndarray        # (N,) int64
    video_ids: np.ndarray      # (N,) int64
    question_ids: np.ndarray   # (N,) int64
    video_key: np.ndarray      # (N,) int64
    types: np.ndarray          # (N,) int64
    glove: np.ndarray | None
    skipped_missing: int = 0
    skipped_invalid: int = 0
    zero_feature_questions: int = 0
    missing_features: str = "skip"

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def excluded(self) -> int:
        return self.skipped_missing + self.skipped_invalid

    def scoring(self) -> dict:
        """How the split was scored: policy, questions in the file, scored, answered from zeros, excluded."""
        return {"missing_features": self.missing_features, "questions_in_file": len(self) + self.excluded,
                "questions_scored": len(self), "zero_feature_questions": self.zero_feature_questions,
                "excluded_questions": self.excluded, "note": self.scoring_note()}

    def scoring_note(self) -> str:
        """One line saying whether every question of the file is scored, and how those without features were."""
        total = len(self) + self.excluded
        if self.excluded:
            return (f"EXCLUDES {self.excluded} of {total} questions whose video has no features "
                    f"(eval.missing_features=exclude; the paper scores every question)")
        if self.zero_feature_questions:
            return (f"every question scored ({total}); {self.zero_feature_questions} answered from all-zero "
                    "features (video missing from the feature files or valid = 0)")
        return f"every question scored ({total}); all have video features"


def _load_question_file(path: Path, key: str) -> dict:
    """The question file's arrays (checked shapes; read without running code), errors naming ``key``."""
    from preprocess.question_file import QuestionFileError, load_question_file
    require_file(path, key)
    try:
        return load_question_file(path)
    except QuestionFileError as e:
        raise DataError(f"{e} (config key '{key}')") from None


def _capped_questions(questions: np.ndarray, lengths: np.ndarray, max_length: int,
                      where: str) -> tuple[np.ndarray, np.ndarray]:
    """questions (N, L) cut to (N, min(L, max_length, longest question)) int64 and lengths (N,) capped at
    ``max_length``; logs how many questions were cut (the loader's guard against a runaway question)."""
    too_long = int((lengths > max_length).sum())
    if too_long:
        get_logger().warning(f"{where}: {too_long} questions longer than {max_length} tokens keep their first "
                             f"{max_length} (dataset.max_question_length)")
    lengths = np.minimum(lengths, max_length)
    width = int(lengths.max()) if len(lengths) else 0
    return questions[:, :width].astype(np.int64), lengths


def load_split(name: str, path: Path, key: str, vocab: dict, table: VideoTable, max_question_length: int,
               missing_features: str = "skip") -> QuestionSplit:
    """Read a question file and check it against the vocabulary. Questions longer than ``max_question_length``
    are cut; questions without usable video features are dropped (``missing_features`` skip or exclude) or given
    the all-zero video (zeros)."""
    data = _load_question_file(path, key)
    where = f"{path} (config key '{key}')"
    questions, lengths = _capped_questions(data["questions"], data["questions_len"], max_question_length, where)
    answers, video_ids, question_ids = (data[k] for k in ("answers", "video_ids", "question_id"))
    if len(answers) == 0:
        raise DataError(f"{where}: holds no questions")
    num_tokens, num_answers = len(vocab["question_token_to_idx"]), len(vocab["answer_token_to_idx"])
    if questions.min() < 0 or questions.max() >= num_tokens:
        raise DataError(f"{where}: question token ids span [{questions.min()}, {questions.max()}] but the "
                        f"vocabulary has {num_tokens} tokens (is dataset.vocab_json the matching vocabulary?)")
    if answers.min() < 0 or answers.max() >= num_answers:
        raise DataError(f"{where}: answer ids span [{answers.min()}, {answers.max()}] but the vocabulary has "
                        f"{num_answers} answers (is dataset.vocab_json the matching vocabulary?)")
    keys = table.keys_for(video_ids)
    without = keys < 0
    zero_features = missing_features == "zeros"
    keep = np.ones_like(without) if zero_features else ~without
    keys = np.where(without, table.zero_key, keys)
    invalid = 0 if zero_features else int(np.isin(video_ids[without], table.invalid_ids).sum())
    return QuestionSplit(
        name=name, path=path, questions=questions[keep], lengths=lengths[keep], answers=answers[keep],
        video_ids=video_ids[keep], question_ids=question_ids[keep], video_key=keys[keep],
        types=question_types(questions[keep], vocab["question_token_to_idx"]), glove=data["glove"],
        skipped_missing=0 if zero_features else int(without.sum()) - invalid, skipped_invalid=invalid,
        zero_feature_questions=int(without.sum()) if zero_features else 0, missing_features=missing_features)


# ---------------------------------------------------------------------------------------------- batches
class BatchDataset:
    """Index with an array of question indices of ``split``; returns the batch dict (module docstring)."""

    def __init__(self, split: QuestionSplit, features: H5Features | InMemoryFeatures):
        self.split = split
        self.features = features

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, indices) -> dict:
        indices = np.asarray(indices, dtype=np.int64)
        keys, video_index = np.unique(self.split.video_key[indices], return_inverse=True)
        appearance, motion = self.features.read(keys)
        lengths = self.split.lengths[indices]
        return {
            "appearance": appearance,
            "motion": motion,
            "question": torch.from_numpy(np.ascontiguousarray(self.split.questions[indices, :int(lengths.max())])),
            "question_len": torch.from_numpy(lengths),
            "answer": torch.from_numpy(self.split.answers[indices]),
            "video_index": torch.from_numpy(video_index.reshape(-1).astype(np.int64)),
            "question_index": torch.from_numpy(indices),
        }


def batch_to_device(batch: dict, device: torch.device) -> dict:
    return {k: to_device_async(v, device) for k, v in batch.items()}


def _worker_init(_worker_id: int) -> None:
    """DataLoader workers ignore Ctrl-C: the main process finishes its step, saves, then stops them."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _InProcessLoader:
    """Batches built in the main process (in-memory features: a gather, no workers needed)."""

    def __init__(self, dataset: BatchDataset, sampler):
        self.dataset = dataset
        self.sampler = sampler

    def __iter__(self):
        for indices in self.sampler:
            yield self.dataset[indices]

    def __len__(self) -> int:
        return len(self.sampler)


def build_loader(dataset: BatchDataset, sampler, num_workers: int, device: torch.device, seed: int = 0):
    """An iterable of batch dicts over ``sampler``'s batches (length = batches this epoch)."""
    if isinstance(dataset.features, InMemoryFeatures) or num_workers == 0:
        return _InProcessLoader(dataset, sampler)
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=sampler, num_workers=num_workers,
        pin_memory=device.type == "cuda", persistent_workers=True, worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- bundle
@dataclass
class DataBundle:
    """Everything a run reads from disk: vocabulary, splits, features and the data's signature."""
    vocab: dict
    signature: DataSignature
    splits: dict
    features: object
    glove: np.ndarray | None
    glove_source: Path | None

    def dataset(self, split: str) -> BatchDataset:
        return BatchDataset(self.splits[split], self.features)

    def close(self) -> None:
        self.features.close()


FEATURE_MEMORY_SHARE = 0.5  # auto: in-memory features may take at most this share of the free memory


def host_memory_available() -> int | None:
    """Bytes of host RAM available to new allocations (Linux MemAvailable; else free pages), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def choose_feature_placement(mode, needed: int, run_device: torch.device, gpu_free: int | None,
                             host_available: int | None, processes_per_host: int = 1) -> torch.device | None:
    """Where the features go: a device to hold them in memory, or None to stream them from the HDF5 files.

    ``mode`` is ``dataset.features_in_memory``: ``"auto"`` holds them on the run's GPU if they take at most half its
    free memory, else in host RAM if they take at most half of what is available there (shared by the
    ``processes_per_host`` ranks of this machine, each holding its own copy), else streams them; ``True`` holds them
    in memory (GPU first, then host RAM if they fit in it at all) or raises DataError with the sizes; ``False``
    streams them. ``needed``, ``gpu_free`` and ``host_available`` are bytes (None: unknown).
    """
    if mode is False:
        return None
    if run_device.type == "cuda" and gpu_free is not None and needed <= FEATURE_MEMORY_SHARE * gpu_free:
        return run_device
    host_share = None if host_available is None else host_available / max(processes_per_host, 1)
    if mode == "auto":
        fits = host_share is not None and needed <= FEATURE_MEMORY_SHARE * host_share
        return torch.device("cpu") if fits else None
    if host_share is None or needed <= host_share:
        return torch.device("cpu")
    raise DataError(f"config key 'dataset.features_in_memory' is true, but the features need {_size_text(needed)} and "
                    f"this process has {_size_text(host_share)} of host RAM available"
                    + (f" ({_size_text(gpu_free)} free on {run_device}, of which it may take half)" if gpu_free else "")
                    + ": set it to auto or false to read them from the HDF5 files")


def _size_text(size: float) -> str:
    """``size`` bytes in the largest binary unit that keeps it >= 1: '20.0 GiB', '22.5 KiB'."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def _feature_dtype(cfg) -> torch.dtype:
    if cfg.dataset.feature_dtype not in ("float32", "float16"):
        raise DataError(f"config key 'dataset.feature_dtype' must be float32 or float16, got "
                        f"'{cfg.dataset.feature_dtype}'")
    return getattr(torch, cfg.dataset.feature_dtype)


def _feature_placement(cfg, table: VideoTable, device: torch.device) -> tuple[torch.dtype, torch.device | None]:
    """(storage dtype, device holding the features in memory or None for HDF5 streaming), decided and logged."""
    dtype = _feature_dtype(cfg)
    mode = cfg.dataset.features_in_memory
    needed = features_bytes(table, dtype)
    gpu_free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" and mode is not False else None
    host = host_memory_available()
    placement = choose_feature_placement(mode, needed, device, gpu_free, host,
                                         int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    where = "HDF5 files (streamed)" if placement is None else f"{placement.type} memory"
    free = ", ".join(f"{name} {_size_text(size)}" for name, size in (("GPU free", gpu_free), ("host available", host))
                     if size is not None)
    get_logger().info(f"features: {where} (dataset.features_in_memory={str(mode).lower()}; "
                      f"{len(table.video_ids)} videos, {_size_text(needed)} as {cfg.dataset.feature_dtype}; {free})")
    return dtype, placement


def missing_feature_policy(cfg) -> str:
    """``eval.missing_features`` (zeros when the config predates the key)."""
    policy = cfg.get("eval", {}).get("missing_features", "zeros")
    if policy not in MISSING_FEATURE_POLICIES:
        raise ConfigError(f"config key 'eval.missing_features' must be one of {', '.join(MISSING_FEATURE_POLICIES)}, "
                          f"got '{policy}'")
    return policy


def _log_split_coverage(part: QuestionSplit) -> None:
    """Warn about the questions of a split whose video has no usable features, and say what was done."""
    log = get_logger()
    if part.missing_features == "skip" and part.excluded:
        log.warning(f"{part.name}: skipped {part.excluded} of {len(part) + part.excluded} questions whose video "
                    f"has no features ({part.skipped_invalid} invalid (valid=0), {part.skipped_missing} missing "
                    "from the HDF5 files)")
    elif part.excluded or part.zero_feature_questions:
        log.warning(f"{part.name}: {part.scoring_note()}")


def load_data(cfg, splits=SPLITS, device: torch.device = torch.device("cpu"),
              show_progress: bool = True) -> DataBundle:
    """Read the vocabulary, the question files of ``splits`` and the feature index (features: lazily or in RAM)."""
    log = get_logger()
    eval_policy = missing_feature_policy(cfg)
    cap = cfg.dataset.max_question_length
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise DataError(f"config key 'dataset.max_question_length' must be a positive integer, got "
                        f"{cfg.dataset.max_question_length!r}")
    vocab = load_vocab(dataset_path(cfg, "vocab_json"))
    appearance_path = dataset_path(cfg, "appearance_feat")
    motion_path = dataset_path(cfg, "motion_feat")
    table = build_video_table(appearance_path, motion_path)
    loaded = {}
    for split in splits:
        key = SPLIT_KEYS[split]
        policy = "skip" if split == "train" else eval_policy
        loaded[split] = load_split(split, dataset_path(cfg, key), f"dataset.{key}", vocab, table,
                                   cfg.dataset.max_question_length, policy)
        part = loaded[split]
        _log_split_coverage(part)
        if len(part) == 0:
            raise DataError(f"{part.path} (config key 'dataset.{key}'): no question has usable video features")
    dtype, placement = _feature_placement(cfg, table, device)
    if placement is not None:
        features = InMemoryFeatures.load(appearance_path, motion_path, table, dtype, placement, show_progress)
    else:
        features = H5Features(appearance_path, motion_path, table)
    signature = DataSignature(
        vocab_fingerprint=vocab_fingerprint(vocab),
        num_question_tokens=len(vocab["question_token_to_idx"]),
        num_answers=len(vocab["answer_token_to_idx"]),
        num_clips=int(table.appearance_shape[1]), frames_per_clip=int(table.appearance_shape[2]),
        appearance_dim=int(table.appearance_shape[3]), motion_dim=int(table.motion_shape[2]))
    train = loaded.get("train")
    return DataBundle(vocab=vocab, signature=signature, splits=loaded, features=features,
                      glove=None if train is None else train.glove,
                      glove_source=None if train is None else train.path)
