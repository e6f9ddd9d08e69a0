"""Checkpoints: atomic writes, safe loads, RNG seeding and state capture (with ``train.deterministic``'s algorithm
settings), and the checks that a checkpoint fits the data.

A checkpoint is a plain dict of tensors and Python scalars/strings/lists/dicts, so that
``torch.load(path, weights_only=True)`` reads it without running code:

    format_version      int
    model               state dict of the (unwrapped, uncompiled) model
    optimizer           Adam state dict
    scheduler           StepLR state dict
    scaler              GradScaler state dict (fp16 AMP) or {}
    epoch               completed epochs
    step_in_epoch       0, or the batches already done of epoch + 1 (a checkpoint written on interrupt)
    partial_epoch       {} or the running sums of that unfinished epoch (tensors)
    rng                 {"torch": ByteTensor, "cuda": [ByteTensor], "numpy": {...}, "python": {...}}
    mode                teacher | student | kd
    model_config        the model section of the config (plain dict) with the model's registered ``name``
                        (format 1 has no name: it is read as ``dualvgr``, see :func:`load_checkpoint`)
    config              the whole resolved config (plain dict)
    vocab_fingerprint   sha256 of the vocabulary's question and answer token lists
    num_question_tokens, num_answers, num_clips, frames_per_clip, appearance_dim, motion_dim
    answer_type, dataset  the head's answer type and the registered dataset (file prefix) the model was trained on
                        (absent before issue 12: open_ended, not checked)
    extraction          {"appearance": {...}, "motion": {...}}: every attribute of the two feature files the run read
                        (how the features were extracted: backbone, weights' sha256, clips, frames, size,
                        normalisation, precision; predict.py extracts a new video with them). Absent before issue 22
                        (predict.py then needs extraction flags or feature files)
    best_metric, best_epoch   best validation accuracy so far and its epoch
    history             list of per-epoch metric dicts (metrics.csv rows)
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model import build_model
from model.heads import DEFAULT_HEAD, get_head
from utils.atomic import atomic_write
from utils.memory import host_memory_available
from utils.safe_pickle import UnsafePickleError, check_torch_file_bounds

CHECKPOINT_VERSION = 2  # 2: model_config names its model (model/registry.py)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the data / model it is used with."""


def vocab_fingerprint(vocab: dict, answer_type: str = "open_ended") -> str:
    """sha256 over the question and answer token lists (in index order) of a vocabulary JSON dict; for multiple
    choice also over question_answer_token_to_idx (the embedding vocabulary there)."""
    lists = {}
    keys = ("question_token_to_idx", "answer_token_to_idx")
    if get_head(answer_type).uses_candidates:
        keys += ("question_answer_token_to_idx",)
    for key in keys:
        mapping = vocab[key]
        lists[key] = sorted(mapping, key=mapping.__getitem__)
    return hashlib.sha256(json.dumps(lists, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DataSignature:
    """What a model is tied to in the data: vocabulary, answer type and feature shapes.

    ``num_question_tokens``: rows of the word embedding (question_answer_token_to_idx for multiple choice, else
    question_token_to_idx); ``num_answers``: outputs of the head (A answers open-ended, K candidates multiple
    choice, 1 count); ``answer_type``: the head (open_ended | multiple_choice | count); ``dataset``: the dataset's
    file prefix (msvd-qa, tgif-qa_action, ...).
    """
    vocab_fingerprint: str
    num_question_tokens: int
    num_answers: int
    num_clips: int
    frames_per_clip: int
    appearance_dim: int
    motion_dim: int
    answer_type: str = "open_ended"
    dataset: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def configure_determinism(enabled: bool) -> None:
    """``train.deterministic``: deterministic algorithms (warning on ops that have none) and cuDNN settings."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    if enabled != torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(enabled, warn_only=True)


def capture_rng_state() -> dict:
    """RNG states of torch (CPU and CUDA), numpy's global generator and Python's ``random``, as plain types."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized()
        else [],
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss_next": py_state[2]},
    }
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`; CUDA states are restored when the device count matches."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(py_state["state"]), py_state["gauss_next"]))


class _RecordingWriter:
    """A file's ``write`` and ``flush`` that remember the OSError they raised: torch's zip writer replaces it by
    ``RuntimeError: [enforce fail ...] unexpected pos``, which says nothing of a full disk."""

    def __init__(self, file):
        self._file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._file.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            self._file.flush()
        except OSError as e:
            self.error = self.error or e
            raise


def save_checkpoint(payload: dict, path: str | Path) -> None:
    """Write ``payload`` to ``path`` atomically: a temporary file in the same folder, fsync, then os.replace. A
    failed write (full disk, I/O error) is OutputWriteError naming ``path``; the previous file stays intact."""
    with atomic_write(path) as f:
        writer = _RecordingWriter(f)
        try:
            torch.save(payload, writer)
        except RuntimeError as e:
            if writer.error is not None:
                raise writer.error from None  # atomic_write names the path
            if "enforce fail" in str(e) or "PytorchStreamWriter" in str(e):
                raise OSError(errno.EIO, f"torch's writer failed ({' '.join(str(e).split())[:200]})") from None
            raise


REQUIRED_KEYS = ("model", "model_config", "vocab_fingerprint", "num_question_tokens", "num_answers")


def load_checkpoint(path: str | Path, source: str = "--ckpt") -> dict:
    """Load a checkpoint with ``weights_only=True`` on the CPU, after its pickle passed the nesting and size bounds
    of utils/safe_pickle.py (check_torch_file_bounds); ``source`` names the flag/key that pointed here."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (from {source})")
    try:
        check_torch_file_bounds(path)
    except UnsafePickleError as e:
        reason = str(e).removeprefix(str(path)).lstrip(": ")
        raise CheckpointError(f"{path} (from {source}) is not a checkpoint written by this project, or it is "
                              f"damaged: {reason}") from None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path} (from {source}) is not a checkpoint written by this project, or it is "
                              f"damaged: torch.load failed ({type(e).__name__}: {reason})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} (from {source}) is not a checkpoint written by this project: it holds a "
                              f"{type(ckpt).__name__}, not a dict")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} (from {source}) is not a checkpoint written by this project: missing "
                              f"key(s) {', '.join(missing)}")
    if ckpt.get("format_version", 1) < 2:
        from model.registry import DEFAULT_MODEL
        ckpt["model_config"] = {"name": DEFAULT_MODEL, **ckpt["model_config"]}
    model_cfg = ckpt["model_config"]
    if isinstance(model_cfg, dict) and model_cfg.get("name") == "dualvgr" and "vision_dim" in model_cfg:
        # written before the two streams had their own widths: both were vision_dim
        for key in ("appearance_dim", "motion_dim"):
            if model_cfg.get(key) is None:
                model_cfg[key] = model_cfg["vision_dim"]
    return ckpt


def check_against_data(ckpt: dict, data: DataSignature, path: str | Path, source: str,
                       model_dims: dict | None = None) -> None:
    """Raise CheckpointError listing every way ``ckpt`` does not fit ``data`` (and ``model_dims`` if given).

    ``model_dims``: model-config values that must be equal, e.g. {"word_dim": 8, "module_dim": 32}.
    """
    problems = []
    theirs = checkpoint_head(ckpt)
    if theirs != data.answer_type:
        raise CheckpointError(f"checkpoint {path} (from {source}) has a {theirs} answer head "
                              f"({ckpt.get('dataset') or 'dataset not recorded'}), but the data ({data.dataset}) is "
                              f"{data.answer_type}: a checkpoint only fits data of its own answer type")
    if ckpt.get("dataset") and data.dataset and ckpt["dataset"] != data.dataset:
        problems.append(f"dataset: checkpoint {ckpt['dataset']} vs data {data.dataset}")
    if ckpt["vocab_fingerprint"] != data.vocab_fingerprint:
        problems.append(f"vocabulary fingerprint: checkpoint {ckpt['vocab_fingerprint']} vs data "
                        f"{data.vocab_fingerprint}")
    for key in ("num_question_tokens", "num_answers", "num_clips", "frames_per_clip", "appearance_dim",
                "motion_dim"):
        if key in ckpt and ckpt[key] != getattr(data, key):
            problems.append(f"{key}: checkpoint {ckpt[key]} vs data {getattr(data, key)}")
    for key, value in (model_dims or {}).items():
        theirs = ckpt["model_config"].get(key)
        if theirs != value:
            problems.append(f"model.{key}: checkpoint {theirs} vs this run {value}")
    if problems:
        fingerprints = (f"checkpoint vocabulary fingerprint {ckpt['vocab_fingerprint']}, "
                        f"data vocabulary fingerprint {data.vocab_fingerprint}")
        raise CheckpointError(f"checkpoint {path} (from {source}) does not match the data/model:\n  - "
                              + "\n  - ".join(problems) + f"\n  ({fingerprints})")


def checkpoint_head(ckpt: dict) -> str:
    """The answer head of a checkpoint: its model config's ``head`` (open_ended when absent: older checkpoints)."""
    return ckpt["model_config"].get("head") or ckpt.get("answer_type") or DEFAULT_HEAD


class _SkipInPlaceOnMeta(torch.overrides.TorchFunctionMode):
    """In-place tensor methods (``normal_``, ``uniform_``, ``zero_``, ...) on meta tensors return their tensor
    unchanged: meta tensors hold no values, and torch's meta ``normal_`` imports torch._dynamo (about 3 s in a fresh
    process, predict.py's budget)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")  # torch.nn.init functions take ``tensor=``
        if (name.endswith("_") and not name.startswith("__") and name != "requires_grad_"
                and isinstance(target, torch.Tensor) and target.is_meta):
            return target
        return func(*args, **kwargs)


def model_bytes(model_cfg, num_question_tokens: int, num_answers: int) -> int:
    """Bytes of the parameters and buffers of the model these sizes describe, counted without allocating them
    (the model is built on the meta device, its initialisation skipped). Raises ValueError for an invalid model
    config."""
    with torch.device("meta"), _SkipInPlaceOnMeta():
        model = build_model(model_cfg, num_question_tokens, num_answers)
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def check_model_fits_memory(model_cfg, num_question_tokens: int, num_answers: int, where: str,
                            error: type[Exception] = CheckpointError) -> None:
    """Raise ``error`` (naming ``where``) when the model's sizes are invalid or its tensors alone would not fit
    into the available memory, before anything is allocated."""
    try:
        needed = model_bytes(model_cfg, num_question_tokens, num_answers)
    except (ValueError, TypeError) as e:
        raise error(f"{where}: {e}") from None
    available = host_memory_available()
    if available is not None and needed > available:
        raise error(f"{where}: the model it declares (num_question_tokens {num_question_tokens}, num_answers "
                    f"{num_answers}, module_dim {model_cfg.get('module_dim')}) needs {needed / 2 ** 30:.1f} GiB for its "
                    f"weights alone, more than the {available / 2 ** 30:.1f} GiB available")


# Tensor-name segments followed by a layer index -> the model-config key that counts those layers; model-config
# keys that size tensors. Used to name the key behind a tensor that does not fit.
LAYER_COUNT_KEYS = {"graph_layers": "graph_layers", "units": "unit_layers"}
SIZE_KEYS = ("module_dim", "word_dim", "vision_dim", "num_heads", "mfb_factor", "mfb_dim")


def _config_key_of(tensor_name: str, model_cfg) -> str:
    """The model-config key(s) that decide whether a tensor of this name exists (layer counts)."""
    segments = tensor_name.split(".")
    for name, index in reversed(list(zip(segments, segments[1:]))):
        if index.isdigit() and name in LAYER_COUNT_KEYS:
            key = LAYER_COUNT_KEYS[name]
            return f"model_config {key}={model_cfg.get(key)}"
    return "model_config"


def _keys_in_shape(shape: tuple, model_cfg) -> str:
    """The model-config sizes that appear in ``shape`` (the sizes that decide it), e.g. 'module_dim=32'."""
    keys = [f"{k}={v}" for k, v in model_cfg.items()
            if isinstance(v, int) and not isinstance(v, bool) and k in SIZE_KEYS and v in shape]
    return "model_config " + (", ".join(keys) if keys else "sizes")


def load_model_state(model: torch.nn.Module, ckpt: dict, path: str | Path, source: str, assign: bool = False) -> None:
    """Load ``ckpt["model"]`` into ``model`` (built from ``ckpt["model_config"]``); CheckpointError naming the first
    tensor that does not fit and the model-config key it depends on. ``assign``: the checkpoint's tensors become the
    model's (for a model built on the meta device)."""
    model_cfg = ckpt["model_config"]
    expected = model.state_dict()
    stored = ckpt["model"]
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path} (from {source}): 'model' is a {type(stored).__name__}, not a state dict")
    problem = None
    for name, tensor in expected.items():
        if name not in stored:
            problem = f"tensor '{name}' that its {_config_key_of(name, model_cfg)} implies is missing"
        elif not isinstance(stored[name], torch.Tensor) or stored[name].shape != tensor.shape:
            shape = tuple(stored[name].shape) if isinstance(stored[name], torch.Tensor) else type(stored[name])
            problem = (f"tensor '{name}' has shape {shape} but {_keys_in_shape(tuple(tensor.shape), model_cfg)} "
                       f"make it {tuple(tensor.shape)}")
        if problem:
            break
    if problem is None:
        extra = [name for name in stored if name not in expected]
        if extra:
            problem = f"tensor '{extra[0]}' is not part of the model its {_config_key_of(extra[0], model_cfg)} builds"
    if problem:
        raise CheckpointError(f"{path} (from {source}): its model config does not match its tensors: {problem}")
    model.load_state_dict(stored, assign=assign)


def build_checkpoint_model(ckpt: dict, path: str | Path, source: str) -> torch.nn.Module:
    """The checkpoint's model on the CPU (its own model config and vocabulary sizes), after checking that the sizes
    fit into memory and that the tensors fit the config (CheckpointError otherwise)."""
    where = f"{path} (from {source})"
    check_model_fits_memory(ckpt["model_config"], ckpt["num_question_tokens"], ckpt["num_answers"], where)
    with torch.device("meta"), _SkipInPlaceOnMeta():  # no initialisation: every tensor comes from the checkpoint
        model = build_model(ckpt["model_config"], ckpt["num_question_tokens"], ckpt["num_answers"])
    load_model_state(model, ckpt, path, source, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # buffers outside the state dict
        model = build_model(ckpt["model_config"], ckpt["num_question_tokens"], ckpt["num_answers"])
        load_model_state(model, ckpt, path, source)
    return model
