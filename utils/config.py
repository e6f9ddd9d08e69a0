"""YAML configs with inheritance, dotted KEY=VALUE overrides and strict key/type checking.

Every config is merged over ``configs/base.yml``, which lists every key the project knows with its default.
A config may name ``_base_: other.yml`` (relative to itself) to inherit from another config first.
Unknown keys and values of the wrong type are rejected with the key's dotted name and the file it came from.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml
from easydict import EasyDict

from utils.atomic import atomic_write

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_CONFIG = REPO_ROOT / "configs" / "base.yml"


class ConfigError(ValueError):
    """A config file or override names an unknown key or gives a value of the wrong type."""


def _read_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _coerce(value, default, key: str, origin: str):
    """Return ``value`` converted to the type of ``default``; raise ConfigError if it cannot be."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, list):
        if isinstance(value, list):
            return value
    raise ConfigError(f"{origin}: key '{key}' expects {type(default).__name__}, got {value!r}")


def _merge(defaults: dict, update: dict, origin: str, prefix: str = "") -> dict:
    """Merge ``update`` into a copy of ``defaults``, checking every key and type against ``defaults``."""
    merged = copy.deepcopy(defaults)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "(none)"
            raise ConfigError(f"{origin}: unknown config key '{dotted}' (known keys here: {known})")
        if isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: key '{dotted}' is a section, got {value!r}")
            merged[key] = _merge(defaults[key], value, origin, dotted + ".")
        else:
            merged[key] = _coerce(value, defaults[key], dotted, origin)
    return merged


def _load_chain(path: Path, defaults: dict, seen: tuple = ()) -> dict:
    """Load ``path`` over its ``_base_`` chain, itself over ``defaults``."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: _base_ chain loops back to itself")
    data = _read_yaml(path)
    base = data.pop("_base_", None)
    if base is not None:
        defaults = _load_chain((path.parent / base), defaults, seen + (path,))
    return _merge(defaults, data, str(path))


def _positive(v) -> bool:
    return math.isfinite(v) and v > 0


def _non_negative(v) -> bool:
    return math.isfinite(v) and v >= 0


def _probability(v) -> bool:
    return 0 <= v < 1  # NaN compares False


# Allowed values of numeric keys: dotted key (a trailing ".*" covers every key of that section) -> (test, wording).
# check_ranges applies them after every merge; add a key here to have it checked with a one-line error.
RANGES = {
    "train.batch_size": (_positive, "> 0"),
    "train.max_epochs": (lambda v: v >= 1, ">= 1"),
    "train.lr": (_positive, "a finite number > 0"),
    "train.lr_decay_every": (_non_negative, ">= 0"),
    "train.lr_decay_factor": (_positive, "a finite number > 0"),
    "train.grad_clip": (_non_negative, "a finite number >= 0 (0 = off)"),
    "train.alpha": (_non_negative, "a finite number >= 0"),
    "train.beta": (_non_negative, "a finite number >= 0"),
    "model.module_dim": (lambda v: v > 0 and v % 2 == 0, "an even number > 0"),
    "model.word_dim": (_positive, "> 0"),
    "model.vision_dim": (_positive, "> 0"),
    "model.num_heads": (_positive, "> 0"),
    "model.graph_layers": (_positive, "> 0"),
    "model.unit_layers": (_positive, "> 0"),
    "model.mfb_factor": (_positive, "> 0"),
    "model.mfb_dim": (_positive, "> 0"),
    "model.dropout.*": (_probability, "in [0, 1)"),
    "dataset.num_workers": (_non_negative, ">= 0"),
    "dataset.questions_per_video": (_non_negative, ">= 0"),
    "distill.temperature_appearance": (_positive, "a finite number > 0"),
    "distill.temperature_motion": (_positive, "a finite number > 0"),
    "distill.lambda_appearance": (_non_negative, "a finite number >= 0"),
    "distill.lambda_motion": (_non_negative, "a finite number >= 0"),
}


def _lookup(cfg: dict, dotted: str):
    """The values of ``dotted`` in ``cfg`` as (key, value) pairs: one, none if absent, or a section's keys (".*")."""
    *sections, last = dotted.split(".")
    for name in sections:
        cfg = cfg.get(name) if isinstance(cfg, dict) else None
    if not isinstance(cfg, dict):
        return []
    prefix = dotted[:-len(last)]
    if last == "*":
        return [(prefix + k, v) for k, v in cfg.items()]
    return [(dotted, cfg[last])] if last in cfg else []


def check_ranges(cfg) -> None:
    """Raise ConfigError naming the first key whose value is outside its range in RANGES (or that breaks a rule
    between keys: model.num_heads must divide model.module_dim)."""
    for dotted, (valid, wording) in RANGES.items():
        for key, value in _lookup(cfg, dotted):
            if value is not None and not valid(value):
                raise ConfigError(f"config key '{key}' must be {wording}, got {value!r}")
    model = cfg.get("model", {})
    if "num_heads" in model and "module_dim" in model and model["module_dim"] % model["num_heads"]:
        raise ConfigError(f"config key 'model.num_heads' must divide model.module_dim ({model['module_dim']}), "
                          f"got {model['num_heads']!r}")


def parse_override(text: str) -> tuple[list[str], object]:
    """Split ``a.b.c=VALUE`` into (['a', 'b', 'c'], parsed VALUE); VALUE is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form KEY=VALUE (e.g. model.mfb_factor=2)")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Apply ``KEY=VALUE`` overrides to a plain-dict config, checking keys and types against it."""
    for text in overrides:
        keys, value = parse_override(text)
        nested = value
        for k in reversed(keys):
            nested = {k: nested}
        cfg = _merge(cfg, nested, f"override '{text}'")
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> EasyDict:
    """Load ``configs/base.yml``, then ``path`` (with its ``_base_`` chain), then ``overrides``.

    Returns an EasyDict so values read as ``cfg.model.graph_layers``.
    """
    cfg = _read_yaml(BASE_CONFIG)
    if path is not None:
        cfg = _load_chain(Path(path), cfg)
    cfg = apply_overrides(cfg, overrides or [])
    check_ranges(cfg)
    return EasyDict(cfg)


def to_dict(cfg) -> dict:
    """A plain nested dict copy of a config (EasyDict or dict), safe to YAML-dump or store in a checkpoint."""
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def save_config(cfg, path: str | Path) -> None:
    """Write the fully resolved config as YAML, atomically (the file reloads with ``load_config``)."""
    with atomic_write(path, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


def add_config_arguments(parser, cfg_required: bool = True) -> None:
    """Add ``--cfg FILE`` and trailing ``KEY=VALUE`` overrides to an argparse parser."""
    parser.add_argument("--cfg", required=cfg_required, metavar="FILE",
                        help="YAML config (merged over configs/base.yml, which lists every key)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override any config key, dotted, e.g. model.mfb_factor=2 train.lr=3e-4")
