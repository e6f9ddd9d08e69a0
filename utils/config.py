"""YAML configs with inheritance, dotted KEY=VALUE overrides and strict key/type checking.

Every config is merged over ``configs/base.yml``, which lists every key the project knows with its default.
A config may name ``_base_: other.yml`` (relative to itself) to inherit from another config first.
Unknown keys and values of the wrong type are rejected with the key's dotted name and the file it came from.

This module knows no model, loss or dataset. A :class:`Schema` adds what their owners define: open sections
whose keys the owner checks (:class:`Section`, e.g. the ``model`` section, model/registry.py), alias keys that
read and write another key (:data:`Schema.aliases`) and range rules. The training layer puts the run's schema
together (training/run_schema.py); ``load_config(path)`` without a schema checks base.yml's keys only.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml
from easydict import EasyDict

from utils.atomic import atomic_write
from utils.strict_yaml import StrictYAMLError, YAMLSyntaxError, load_yaml
from utils.text import short_repr

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_CONFIG = REPO_ROOT / "configs" / "base.yml"


@dataclass(frozen=True)
class Section:
    """A config section its owner checks instead of base.yml's keys.

    ``merge(defaults, update, origin, dotted) -> dict`` merges one layer into the section (ConfigError naming
    ``origin`` and the key on a bad one); ``check(cfg)`` (optional) checks the whole merged config after every load
    (ranges, rules between keys). With ``null_removes`` an entry set to null is removed, and a stored config keeps
    only the entries it lists (save_config writes the removed base.yml entries back as null).
    """
    merge: Callable[[dict, dict, str, str], dict]
    check: Callable[[dict], None] | None = None
    null_removes: bool = False


@dataclass(frozen=True)
class Schema:
    """What the owners of a config's sections add to base.yml's keys: ``sections`` (dotted name -> Section),
    ``aliases`` (older key -> the key it stands for; reading or writing either gives the same value), ``ranges``
    (as :data:`RANGES`), ``choices`` (dotted key -> the values it takes, of different types: checked by value, not
    by the default's type), ``optional_strings`` (keys whose default is null but take a string when set) and
    ``resolvers`` (each ``f(cfg: dict)`` runs last, e.g. to fill in a value that depends on other sections)."""
    sections: dict = dataclasses.field(default_factory=dict)
    aliases: dict = dataclasses.field(default_factory=dict)
    ranges: dict = dataclasses.field(default_factory=dict)
    choices: dict = dataclasses.field(default_factory=dict)
    optional_strings: frozenset = frozenset()
    resolvers: tuple = ()


def combine(*schemas: Schema) -> Schema:
    """One schema holding every part of ``schemas`` (their resolvers run in the order given)."""
    return Schema(sections={k: v for s in schemas for k, v in s.sections.items()},
                  aliases={k: v for s in schemas for k, v in s.aliases.items()},
                  ranges={k: v for s in schemas for k, v in s.ranges.items()},
                  choices={k: v for s in schemas for k, v in s.choices.items()},
                  optional_strings=frozenset().union(*(s.optional_strings for s in schemas)),
                  resolvers=tuple(r for s in schemas for r in s.resolvers))


PLAIN = Schema()  # base.yml's keys only


class ConfigError(ValueError):
    """A config file or override names an unknown key or gives a value of the wrong type."""


MAX_CONFIG_BYTES = 1 << 20  # a config file is a few KB; a bigger file is not one


def _read_yaml(path: Path) -> dict:
    """The mapping a config file holds; ConfigError (one line naming the file) when it is missing, not a regular
    file, larger than MAX_CONFIG_BYTES, not UTF-8, not strict YAML (utils/strict_yaml.py) or not a mapping."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or type(e).__name__})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
    try:
        data = load_yaml(raw)
    except StrictYAMLError as e:
        raise ConfigError(f"{path}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def coerce(value, default, key: str, origin: str):
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
    raise ConfigError(f"{origin}: key '{key}' expects {type(default).__name__}, got {short_repr(value)}")


def _choice(value, key: str, origin: str, choices: tuple):
    """``value`` if it is one of ``choices`` (True is not 1), else ConfigError listing them."""
    if any(value == c and type(value) is type(c) for c in choices):
        return value
    allowed = " | ".join(str(c).lower() for c in choices)
    raise ConfigError(f"{origin}: key '{key}' expects {allowed}, got {short_repr(value)}")


def _merge(defaults: dict, update: dict, origin: str, schema: Schema = PLAIN, prefix: str = "") -> dict:
    """Merge ``update`` into a copy of ``defaults``, checking every key and type against ``defaults`` (the
    schema's sections by their owners)."""
    merged = copy.deepcopy(defaults)
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if dotted in schema.sections:
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: key '{dotted}' is a section, got {short_repr(value)}")
            merged[key] = schema.sections[dotted].merge(defaults.get(key) or {}, value, origin, dotted)
            continue
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "(none)"
            raise ConfigError(f"{origin}: unknown config key '{clip_text(str(dotted))}' (known keys here: {known})")
        if isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: key '{dotted}' is a section, got {short_repr(value)}")
            merged[key] = _merge(defaults[key], value, origin, schema, dotted + ".")
        elif dotted in schema.choices:
            merged[key] = _choice(value, dotted, origin, schema.choices[dotted])
        elif dotted in schema.optional_strings:
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{origin}: key '{dotted}' expects a string or null, got {short_repr(value)}")
            merged[key] = value
        else:
            merged[key] = coerce(value, defaults[key], dotted, origin)
    return merged


def field_types(cls) -> dict:
    return typing.get_type_hints(cls)


def as_plain(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


_SAMPLES = {bool: False, int: 0, float: 0.0, str: "", list: [], dict: {}}


def coerce_typed(value, annotation, current, key: str, origin: str):
    """``value`` as a value of type ``annotation`` (bool, int, float, str, list, dict, a dataclass of those given as
    a mapping, or ``X | None``); ConfigError naming ``key`` otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None: None or an X
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(inner) == 1:
            return None if value is None else coerce_typed(value, inner[0], current, key, origin)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{origin}: key '{key}' is a section, got {short_repr(value)}")
        base = current if isinstance(current, dict) else {}
        return dataclasses.asdict(typed_from_dict(annotation, {**base, **value}, key, origin))
    if annotation not in _SAMPLES:
        raise TypeError(f"config field '{key}' has an unsupported type {annotation!r}")
    return coerce(value, _SAMPLES[annotation], key, origin)


def typed_from_dict(cls, values: dict, prefix: str, origin: str = "config"):
    """An instance of dataclass ``cls`` from a mapping: unknown keys, values of the wrong type and missing fields
    without a default raise ConfigError naming ``prefix.key``."""
    types = field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(f"{origin}: unknown config key '{prefix}.{unknown[0]}' (known keys here: "
                          f"{', '.join(sorted(types))})")
    kwargs = {}
    for field in dataclasses.fields(cls):
        key = f"{prefix}.{field.name}"
        if field.name not in values:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{origin}: config key '{key}' is missing")
            continue
        value = coerce_typed(values[field.name], types[field.name], None, key, origin)
        kwargs[field.name] = typed_from_dict(types[field.name], value, key, origin) \
            if dataclasses.is_dataclass(types[field.name]) else value
    return cls(**kwargs)


def _split(dotted: str) -> list[str]:
    return dotted.split(".")


def _pop_path(data: dict, path: list[str]):
    """Remove and return ``data[p0][p1]...``; (False, None) when absent."""
    node = data
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return False, None
    if path[-1] not in node:
        return False, None
    return True, node.pop(path[-1])


def _get_path(data: dict, path: list[str]):
    node = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _set_path(data: dict, path: list[str], value) -> None:
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def translate_aliases(update: dict, origin: str, aliases: dict) -> dict:
    """A copy of one config layer with every alias key (``aliases``: alias -> key) moved to the key it stands for."""
    update = copy.deepcopy(update)
    for alias, target in aliases.items():
        found, value = _pop_path(update, _split(alias))
        if not found or value is None:
            continue
        given = _get_path(update, _split(target))
        if given is not None and given != value:
            raise ConfigError(f"{origin}: '{alias}' ({short_repr(value)}) and '{target}' ({short_repr(given)}) name the same setting "
                              "with different values; keep one")
        _set_path(update, _split(target), value)
    return update


def _refresh_alias_views(cfg: dict, aliases: dict) -> dict:
    """Set every alias key to the value of the key it stands for (None when that key is not set)."""
    for alias, target in aliases.items():
        _set_path(cfg, _split(alias), _get_path(cfg, _split(target)))
    return cfg


MAX_BASE_CHAIN = 32  # configs a _base_ chain may hold (ours hold 2)


def _load_chain(path: Path, defaults: dict, schema: Schema) -> dict:
    """Load ``path`` over its ``_base_`` chain, itself over ``defaults`` (the chain read first, merged from its
    far end; ConfigError on a loop, a chain longer than MAX_BASE_CHAIN or a ``_base_`` that is no file name)."""
    chain: list[tuple[Path, dict]] = []
    while path is not None:
        path = path.resolve()
        if any(path == p for p, _ in chain):
            raise ConfigError(f"{path}: _base_ chain loops back to itself")
        if len(chain) == MAX_BASE_CHAIN:
            raise ConfigError(f"{chain[0][0]}: _base_ chain longer than {MAX_BASE_CHAIN} files")
        data = _read_yaml(path)
        base = data.pop("_base_", None)
        if base is not None and not (isinstance(base, str) and base.strip()):
            raise ConfigError(f"{path}: key '_base_' expects a config file name, got {short_repr(base)}")
        chain.append((path, data))
        path = path.parent / base if base is not None else None
    for path, data in reversed(chain):
        defaults = _merge(defaults, translate_aliases(data, str(path), schema.aliases), str(path), schema)
    return defaults


def positive(v) -> bool:
    return math.isfinite(v) and v > 0


def non_negative(v) -> bool:
    return math.isfinite(v) and v >= 0


def probability(v) -> bool:
    return 0 <= v < 1  # NaN compares False


# Allowed values of numeric keys: dotted key (a trailing ".*" covers every key of that section) -> (test, wording).
# check_ranges applies them after every merge; add a key here to have it checked with a one-line error.
RANGES = {
    "seed": (lambda v: 0 <= v < 2 ** 31, "an integer in [0, 2**31) (numpy and torch seeds)"),
    "train.batch_size": (lambda v: v >= 2, ">= 2 (BatchNorm needs two questions in a training batch)"),
    "train.max_epochs": (lambda v: v >= 1, ">= 1"),
    "train.lr": (positive, "a finite number > 0"),
    "train.lr_decay_every": (non_negative, ">= 0"),
    "train.lr_decay_factor": (positive, "a finite number > 0"),
    "train.grad_clip": (non_negative, "a finite number >= 0 (0 = off)"),
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


def check_value_ranges(cfg, ranges: dict) -> None:
    """Raise ConfigError naming the first key whose value is outside its range in ``ranges`` (as :data:`RANGES`)."""
    for dotted, (valid, wording) in ranges.items():
        for key, value in _lookup(cfg, dotted):
            if value is not None and not valid(value):
                raise ConfigError(f"config key '{key}' must be {wording}, got {short_repr(value)}")


def check_ranges(cfg, schema: Schema = PLAIN) -> None:
    """Raise ConfigError naming the first key whose value is outside its range in RANGES or the schema's ranges,
    that its section's owner refuses (:attr:`Section.check`), or an exp_name that is no single folder name."""
    check_value_ranges(cfg, {**RANGES, **schema.ranges})
    for section in schema.sections.values():
        if section.check is not None:
            section.check(cfg)
    name = cfg.get("exp_name")
    if isinstance(name, str) and (not name.strip() or name in (".", "..") or "/" in name or "\\" in name):
        raise ConfigError(f"config key 'exp_name' must name one folder inside dataset.save_dir (not empty, no '/', "
                          f"not '.' or '..'), got {short_repr(name)}")


def parse_override(text: str) -> tuple[list[str], object]:
    """Split ``a.b.c=VALUE`` into (['a', 'b', 'c'], parsed VALUE); VALUE is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{clip_text(text)}' is not of the form KEY=VALUE (e.g. model.mfb_factor=2)")
    key, raw = text.split("=", 1)
    try:
        value = load_yaml(raw) if raw != "" else ""
    except YAMLSyntaxError:
        value = raw
    except StrictYAMLError as e:
        raise ConfigError(f"override '{clip_text(text)}': {e}") from None
    return key.strip().split("."), value


def clip_text(text: str, limit: int = 80) -> str:
    """``text`` on one line, at most ``limit`` characters (an override echoed in an error message)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def apply_overrides(cfg: dict, overrides: list[str], schema: Schema = PLAIN) -> dict:
    """Apply ``KEY=VALUE`` overrides to a plain-dict config, checking keys and types against it."""
    for text in overrides:
        keys, value = parse_override(text)
        nested = value
        for k in reversed(keys):
            nested = {k: nested}
        origin = f"override '{clip_text(text)}'"
        cfg = _merge(cfg, translate_aliases(nested, origin, schema.aliases), origin, schema)
    return _refresh_alias_views(cfg, schema.aliases)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                data: dict | None = None, schema: Schema = PLAIN) -> EasyDict:
    """Load ``configs/base.yml``, then ``path`` (with its ``_base_`` chain) or ``data`` (a config as a dict, e.g.
    the one stored in a checkpoint), then ``overrides``; check ranges and run the schema's resolvers.

    Returns an EasyDict so values read as ``cfg.model.graph_layers``. A run's config loads through
    training/run_schema.py, which passes the schema of every section.
    """
    cfg = _read_yaml(BASE_CONFIG)
    if path is not None:
        cfg = _load_chain(Path(path), cfg, schema)
    if data is not None:
        merged = _merge(cfg, translate_aliases(data, "stored config", schema.aliases), "stored config", schema)
        cfg = _restrict_removable_sections(merged, data, schema)
    cfg = apply_overrides(cfg, overrides or [], schema)
    check_ranges(cfg, schema)
    for resolve in schema.resolvers:
        resolve(cfg)
    return EasyDict(cfg)


def _removable_sections(schema: Schema) -> list[str]:
    return [name for name, section in schema.sections.items() if section.null_removes]


def _restrict_removable_sections(cfg: dict, stored: dict, schema: Schema) -> dict:
    """A stored (fully resolved) config lists every entry it uses: drop the entries that only base.yml added."""
    for section in _removable_sections(schema):
        entries = _get_path(stored, _split(section))
        if isinstance(entries, dict):
            merged = _get_path(cfg, _split(section))
            _set_path(cfg, _split(section), {k: v for k, v in merged.items() if k in entries})
    return cfg


def _mark_removed_entries(cfg: dict, schema: Schema) -> dict:
    """``cfg`` with every base.yml entry of a removable section it does not use set to null (so that the file
    reloads as it is)."""
    base = _read_yaml(BASE_CONFIG)
    for section in _removable_sections(schema):
        entries = _get_path(cfg, _split(section)) or {}
        removed = {k: None for k in (_get_path(base, _split(section)) or {}) if k not in entries}
        _set_path(cfg, _split(section), {**entries, **removed})
    return cfg


def set_key(cfg, dotted: str, value, schema: Schema = PLAIN) -> EasyDict:
    """A copy of ``cfg`` with one key set, checked (name, type, aliases) as an override would be."""
    nested = value
    for key in reversed(_split(dotted)):
        nested = {key: nested}
    origin = f"setting '{dotted}'"
    merged = _merge(to_dict(cfg), translate_aliases(nested, origin, schema.aliases), origin, schema)
    return EasyDict(_refresh_alias_views(merged, schema.aliases))


def to_dict(cfg) -> dict:
    """A plain nested dict copy of a config (EasyDict or dict), safe to YAML-dump or store in a checkpoint."""
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def save_config(cfg, path: str | Path, schema: Schema = PLAIN) -> None:
    """Write the fully resolved config as YAML, atomically (the file reloads with ``load_config`` and the same
    schema)."""
    with atomic_write(path, "w") as f:
        yaml.safe_dump(_mark_removed_entries(to_dict(cfg), schema), f, sort_keys=False)


def add_config_arguments(parser, cfg_required: bool = True) -> None:
    """Add ``--cfg FILE`` and trailing ``KEY=VALUE`` overrides to an argparse parser."""
    parser.add_argument("--cfg", required=cfg_required, metavar="FILE",
                        help="YAML config (merged over configs/base.yml, which lists every key)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override any config key, dotted, e.g. model.mfb_factor=2 train.lr=3e-4")
