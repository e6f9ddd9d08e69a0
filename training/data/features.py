"""Feature stores: which videos have usable features (VideoTable), and reading a batch's video features, either
from the HDF5 files (H5Features) or from tensors held in memory (InMemoryFeatures).

Batches reach the device through :func:`to_device_async` (a copy that never waits for the device).

Appearance features are (N, C, F, D) rows of the dataset ``resnet_features``, motion features (N, C, D) rows of
``resnext_features``; each file also holds ``ids`` and an optional ``valid`` mask. The stores reserve the video key
``M`` (the number of usable videos) for an all-zero video, the features of val/test questions whose video has none.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from training.data.paths import DataError, require_file
from training.log import get_logger
from utils.progress import progress

APPEARANCE_DATASET = "resnet_features"
MOTION_DATASET = "resnext_features"
FEATURE_LOAD_CHUNK = 64  # videos per HDF5 read when loading features into memory


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
            for name in (dataset_name, "ids", "valid"):
                if name in f and not isinstance(f[name], h5py.Dataset):
                    raise DataError(f"{path} (config key '{key}'): '{name}' is a {type(f[name]).__name__.lower()}, "
                                    "expected a dataset")
            if f["ids"].dtype.kind not in "iu":
                raise DataError(f"{path} (config key '{key}'): 'ids' must hold integer video ids, found "
                                f"{f['ids'].dtype}")
            ids = f["ids"][()].astype(np.int64).reshape(-1)
            valid = _valid_mask(f["valid"], path, key) if "valid" in f else np.ones(len(ids), dtype=bool)
            shape, dtype = f[dataset_name].shape, f[dataset_name].dtype
    except BlockingIOError:  # HDF5's file lock: a writer has it open
        raise DataError(unfinished) from None
    except OSError as e:
        raise DataError(f"{path} (config key '{key}'): not a readable HDF5 file: {e}") from None
    if shape[0] != len(ids) or len(valid) != len(ids):
        raise DataError(f"{path} (config key '{key}'): '{dataset_name}' has {shape[0]} rows but 'ids' has "
                        f"{len(ids)} and 'valid' {len(valid)}")
    return ids, valid, shape, dtype


def _valid_mask(dataset: h5py.Dataset, path: Path, key: str) -> np.ndarray:
    """The ``valid`` dataset as a bool (N,) mask: booleans or integers 0/1 only (a mask of strings would make every
    video count as valid)."""
    if dataset.dtype.kind not in "biu":
        raise DataError(f"{path} (config key '{key}'): 'valid' must hold 0/1 (or booleans), found {dataset.dtype}")
    values = dataset[()].reshape(-1)
    if values.size and not np.isin(values, (0, 1)).all():
        raise DataError(f"{path} (config key '{key}'): 'valid' must hold 0/1, found {sorted(set(values.tolist()))[:5]}")
    return values.astype(bool)


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


def _plain(value):
    """An HDF5 attribute value as a plain Python value (what ``torch.load(weights_only=True)`` reads back)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def read_extraction_settings(appearance_path: Path, motion_path: Path) -> dict:
    """How the features were made: ``{"appearance": {attribute: value}, "motion": {...}}``, every attribute of each
    feature file as plain values (the extractor writes its settings there: backbone, weights and their sha256,
    clips, frames, image size, normalisation, precision, ...; files from elsewhere may have none: ``{}``)."""
    settings = {}
    for kind, path in (("appearance", appearance_path), ("motion", motion_path)):
        with h5py.File(path, "r") as f:
            settings[kind] = {key: _plain(value) for key, value in f.attrs.items()}
    return settings


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


@contextmanager
def _damaged_file_is_data_error(path: Path):
    """An HDF5 read failing in the file (a damaged compressed chunk: "Can't read data (inflate() failed)") is a
    DataError naming the file."""
    try:
        yield
    except OSError as e:
        raise DataError(f"{path}: cannot read its features, the file is damaged ({' '.join(str(e).split())[:200]}); "
                        "extract them again") from None


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
        with _damaged_file_is_data_error(self.appearance_path):
            appearance = _read_or_zero(app_file[APPEARANCE_DATASET], self.table.appearance_rows[file_keys], is_zero)
        with _damaged_file_is_data_error(self.motion_path):
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
                    with _damaged_file_is_data_error(Path(dataset.file.filename)):
                        block = torch.from_numpy(dataset[rows[keys]]).to(dtype)
                    target[torch.from_numpy(keys).to(device)] = block.to(device)
        return cls(appearance, motion)

    def read(self, keys: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = to_device_async(torch.from_numpy(np.ascontiguousarray(keys)), self.appearance.device)
        return self.appearance[index].float(), self.motion[index].float()

    def close(self) -> None:
        pass
