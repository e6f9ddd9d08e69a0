"""YAML configs with inheritance, dotted KEY=VALUE overrides and strict key/type checking.

Every config is merged over ``configs/base.yml``, which lists every key the project knows with its default.
A config may name ``_base_: other.yml`` (relative to itself) to inherit from another config first.
Unknown keys and values of the wrong type are rejected with the key's dotted name and the file it came from.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml
from easydict import EasyDict

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


# Keys that take one of a few values of different types (checked by value instead of by the default's type).
CHOICES = {"dataset.features_in_memory": ("auto", True, False)}


def _choice(value, key: str, origin: str):
    """``value`` if it is one of ``CHOICES[key]`` (True is not 1), else ConfigError listing them."""
    if any(value == c and type(value) is type(c) for c in CHOICES[key]):
        return value
    allowed = " | ".join(str(c).lower() for c in CHOICES[key])
    raise ConfigError(f"{origin}: key '{key}' expects {allowed}, got {value!r}")


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
        elif dotted in CHOICES:
            merged[key] = _choice(value, dotted, origin)
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
    return EasyDict(cfg)


def to_dict(cfg) -> dict:
    """A plain nested dict copy of a config (EasyDict or dict), safe to YAML-dump or store in a checkpoint."""
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def save_config(cfg, path: str | Path) -> None:
    """Write the fully resolved config as YAML (the file reloads with ``load_config``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


def add_config_arguments(parser, cfg_required: bool = True) -> None:
    """Add ``--cfg FILE`` and trailing ``KEY=VALUE`` overrides to an argparse parser."""
    parser.add_argument("--cfg", required=cfg_required, metavar="FILE",
                        help="YAML config (merged over configs/base.yml, which lists every key)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override any config key, dotted, e.g. model.mfb_factor=2 train.lr=3e-4")
