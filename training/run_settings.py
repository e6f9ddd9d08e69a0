"""The run's settings read from its config, each checked: run folder, mode, autocast dtype, per-process batch."""
from __future__ import annotations

from pathlib import Path

import torch

from training.data import resolve_path
from training.log import get_logger
from utils.config import ConfigError, REPO_ROOT
from utils.cpu_features import bf16_matrix_units

MODES = ("teacher", "student", "kd")
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AMP_CHOICES = (*AMP_DTYPES, "auto")


def run_dir_for(cfg) -> Path:
    return resolve_path(cfg.dataset.save_dir, REPO_ROOT) / cfg.exp_name


def resolve_mode(cfg) -> str:
    """The run's mode; a teacher checkpoint with mode teacher means a distilled student (base.yml)."""
    mode = cfg.train.mode
    if mode not in MODES:
        raise ConfigError(f"config key 'train.mode' must be one of {', '.join(MODES)}, got '{mode}'")
    ckpt = cfg.distill.teacher_ckpt
    if mode == "teacher" and ckpt:
        get_logger().info(f"teacher checkpoint given ({ckpt}): training a distilled student (train.mode=kd)")
        mode = "kd"
    elif mode == "student" and ckpt:
        get_logger().info("train.mode=student: distill.teacher_ckpt is ignored (no distillation)")
    if mode == "kd" and not ckpt:
        raise ConfigError("train.mode=kd needs a teacher checkpoint: set config key 'distill.teacher_ckpt' or pass "
                          "--teacher_ckpt PATH (e.g. results/<teacher exp_name>/best.pt)")
    cfg.train.mode = mode
    return mode


def resolve_amp(cfg, device: torch.device) -> tuple:
    """``train.amp`` for ``device`` -> (autocast dtype or None for float32, one line saying what was chosen and why).

    bf16 runs on CUDA and on CPUs (CPU autocast); fp16 on CUDA only. ``auto`` picks bf16 on a CPU with bf16 matrix
    instructions (:func:`utils.cpu_features.bf16_matrix_units`) and float32 elsewhere, CUDA included (at this
    model's sizes a GPU step is bound by kernel launches and bf16 does not help: README "Performance").
    """
    amp = cfg.train.amp
    if amp not in AMP_CHOICES:
        raise ConfigError(f"config key 'train.amp' must be one of {', '.join(AMP_CHOICES)}, got '{amp}'")
    if amp == "auto":
        units = bf16_matrix_units() if device.type == "cpu" else ()
        if units:
            return torch.bfloat16, (f"autocast bf16 (train.amp=auto: this CPU has bf16 matrix instructions, "
                                    f"{' '.join(units)}; float32 master weights and losses)")
        why = "no bf16 matrix instructions on this CPU" if device.type == "cpu" else f"float32 is faster on {device}"
        return None, f"float32 (train.amp=auto: {why})"
    amp_dtype = AMP_DTYPES[amp]
    if amp_dtype == torch.float16 and device.type != "cuda":
        get_logger().warning(f"train.amp=fp16 needs a CUDA device; running in float32 on {device}")
        return None, "float32 (train.amp=fp16 needs CUDA)"
    if amp_dtype is None:
        return None, "float32 (train.amp=none)"
    if device.type == "cpu" and not bf16_matrix_units():
        get_logger().warning("train.amp=bf16: this CPU has no bf16 matrix instructions, so bf16 products are "
                             "emulated and slower than float32 (train.amp=auto would pick float32)")
    return amp_dtype, f"autocast {amp} (train.amp={amp}; float32 master weights and losses)"


def per_process_batch_size(cfg, world_size: int) -> int:
    """``train.batch_size`` is the global batch: each of ``world_size`` processes takes an equal share."""
    batch_size = cfg.train.batch_size
    if batch_size < 1 or batch_size % world_size:
        raise ConfigError(f"config key 'train.batch_size' ({batch_size}) is the global batch and must be a positive "
                          f"multiple of the number of processes ({world_size})")
    return batch_size // world_size


def resolve_head(cfg, check: bool = True) -> str | None:
    """``model.head`` resolved against the dataset (``auto`` = the head its answer type names; any other value must
    be a registered head (model/heads/) that reads that answer type) and written back into the config's model
    section (so checkpoints store it); the configured loss terms must fit it (ConfigError naming the key otherwise).
    A model whose config has no ``head`` key answers open-ended questions only. ``check=False`` (while a config
    loads, training/run_schema.py): only ``auto`` is replaced, and a config that sets no ``auto`` head is not
    checked yet (that happens when a run starts)."""
    from model.heads import DEFAULT_HEAD, get_head, head_names
    from model.losses import check_heads
    from preprocess.datasets.files import dataset_spec
    model = cfg["model"]
    if not check and model.get("head") != "auto":
        return model.get("head")
    spec = dataset_spec(cfg)
    wanted = spec.answer_type
    if "head" not in model:
        if wanted != DEFAULT_HEAD:
            raise ConfigError(f"config key 'model.name': model '{model['name']}' has no answer head setting "
                              f"(model.head) and answers open-ended questions only, but {spec.file_prefix} is {wanted}")
        head = DEFAULT_HEAD
    else:
        head = model["head"]
        if head == "auto":
            head = wanted
        elif head not in head_names() or get_head(head).answer_format != wanted:
            raise ConfigError(f"config key 'model.head' is {head}, but dataset {spec.file_prefix} (dataset.name / "
                              f"dataset.question_type) is {wanted}: set model.head to auto or {wanted}")
        model["head"] = head
    if check:
        check_heads(cfg, head)
    return head


# model key -> (dataset key naming the feature file, the HDF5 dataset holding the features)
FEATURE_WIDTH_KEYS = {"appearance_dim": ("appearance_feat", "resnet_features"),
                      "motion_dim": ("motion_feat", "resnext_features")}


def resolve_feature_dims(cfg) -> None:
    """``model.appearance_dim`` / ``model.motion_dim`` left null: the width (last axis) of the features in the
    files ``dataset.appearance_feat`` / ``dataset.motion_feat``, written back into ``cfg.model`` so checkpoints
    store it. A model without these keys, a number already set (checked against the data when the model is built)
    and a file that cannot be read (reported when the data loads) are left alone."""
    import h5py
    from preprocess.datasets.files import dataset_path
    for key, (file_key, dataset_name) in FEATURE_WIDTH_KEYS.items():
        if key not in cfg.model or cfg.model[key] is not None:
            continue
        try:
            with h5py.File(dataset_path(cfg, file_key), "r") as f:
                cfg.model[key] = int(f[dataset_name].shape[-1])
        except (OSError, KeyError):
            continue
