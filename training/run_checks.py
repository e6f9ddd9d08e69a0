"""Checks a training run makes before it touches its run folder: may ``--resume`` continue with this config, and
is a distilled student smaller than its teacher.

Resuming continues the run with the settings it started with. Only the keys in RESUME_MAY_CHANGE may differ from
the checkpoint's config (they change where files are, how fast data loads, or how long the run goes on); any
other difference is refused with the key named, so that a resumed run is never a hybrid of two configs.
"""
from __future__ import annotations

from pathlib import Path

from model.params import count_parameters
from model.registry import architecture
from training.checkpoint import CheckpointError
from utils.config import ConfigError, to_dict
from training.run_schema import load_config

RESUME_MAY_CHANGE = (
    "exp_name", "device", "dataset.save_dir", "dataset.data_dir", "dataset.num_workers",
    "dataset.features_in_memory", "train.max_epochs", "distill.allow_larger_student",
)


def flatten(cfg: dict, prefix: str = "") -> dict:
    """{'a.b': value} for every leaf of a nested config dict."""
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_differences(saved: dict, current) -> tuple[list[str], list[str]]:
    """Compare the config stored in a checkpoint with this run's (both resolved: train.mode and
    distill.teacher_ckpt as the run uses them). Returns (refused, allowed) lines 'key: checkpoint X vs this run Y'.

    A key the checkpoint does not hold (added to the project later) counts as its base.yml default there.
    """
    defaults = flatten(to_dict(load_config(None)))
    saved_flat, current_flat = flatten(saved), flatten(to_dict(current))
    refused, allowed = [], []
    for key in current_flat:
        theirs = saved_flat.get(key, defaults.get(key))
        if theirs != current_flat[key]:
            line = f"{key}: checkpoint {theirs} vs this run {current_flat[key]}"
            (allowed if key in RESUME_MAY_CHANGE else refused).append(line)
    return refused, allowed


def check_student_smaller(student, teacher, cfg, teacher_path) -> None:
    """ConfigError unless the student has fewer parameters than its teacher or distill.allow_larger_student."""
    student_size, teacher_size = (count_parameters(m, trainable_only=False) for m in (student, teacher))
    if student_size >= teacher_size and not cfg.distill.allow_larger_student:
        raise ConfigError(
            f"the student to distil ({student_size:,} parameters, model.graph_layers={cfg.model.graph_layers}) is "
            f"not smaller than its teacher {teacher_path} ({teacher_size:,} parameters): pass --graph_layers 1 for "
            "the paper's student, or set config key 'distill.allow_larger_student=true' to distil into it anyway")


def check_resume_config(ckpt: dict, cfg, mode: str, path: Path) -> list[str]:
    """CheckpointError naming every config key that differs from the checkpoint's config, except the keys that
    may change on resume (RESUME_MAY_CHANGE), returned as lines for the run's log (train.log is not open yet), and
    a train.max_epochs below the epochs the run has done. ``cfg`` is resolved (mode, teacher)."""
    problems = []
    if ckpt.get("mode") != mode:
        problems.append(f"train.mode: checkpoint {ckpt.get('mode')} vs this run {mode}")
    current, saved = architecture(cfg.model), architecture(ckpt["model_config"])
    for key in sorted(set(current) | set(saved)):
        if current.get(key) != saved.get(key):
            problems.append(f"model.{key}: checkpoint {saved.get(key)} vs this run {current.get(key)}")
    allowed = []
    if isinstance(ckpt.get("config"), dict):
        refused, allowed = resume_differences(ckpt["config"], cfg)
        problems += [line for line in refused if not line.startswith(("model.", "train.mode:"))]
    if problems:
        raise CheckpointError(f"cannot resume from {path}: the run's config changed (start a new --exp_name, or "
                              "--overwrite to start this one over):\n  - " + "\n  - ".join(problems))
    done = ckpt.get("epoch", 0)
    if isinstance(done, int) and cfg.train.max_epochs < done:
        raise CheckpointError(f"cannot resume from {path}: train.max_epochs={cfg.train.max_epochs} is below the {done} "
                              f"epochs the run has done (its checkpoints and metrics.csv hold {done}); give "
                              f"train.max_epochs={done} or more")
    return [f"resume: {line} (this key may change on resume)" for line in allowed]
