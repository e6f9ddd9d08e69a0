"""Models by name: ``model.name`` in the config selects a registered builder (after timm's ``register_model``).

Each model owns a typed config, a dataclass whose fields are its constructor arguments (after nanoGPT's
``GPTConfig``); :data:`MODEL_SECTION` checks the config's ``model`` section against it (training/run_schema.py
hands it to the config loader), so a misspelt or mistyped key stops with its name. Register a model with::

    @dataclass
    class MyConfig:
        module_dim: int
        dropout: float = 0.1

    @register_model("mine", config=MyConfig, outputs=MyOutput)
    def build_mine(config: MyConfig, num_question_tokens: int, num_answers: int) -> nn.Module: ...

``outputs`` is the NamedTuple the model's forward returns: loss terms read its fields by name
(model/losses.py). A model is found once the module that registers it is imported: the built-in ones are
the modules in :data:`MODEL_MODULES`, imported on the first look-up (so registering loads no torch early); add your
module's name there, or import it yourself before the config loads (e.g. in a test file). Checkpoints store the model section with its ``name`` (format 2), so any registered
architecture can be rebuilt from a checkpoint, e.g. a teacher beside a student of another architecture.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
from dataclasses import dataclass
from typing import Callable

from utils.config import (ConfigError, Section, as_plain, check_value_ranges, clip_text, coerce_typed, field_types,
                          positive, probability, typed_from_dict)
from utils.text import short_repr

DEFAULT_MODEL = "dualvgr"  # what a model section without a name (a format-1 checkpoint) means
MODEL_MODULES = ("model.network",)  # modules that register the built-in models, imported on the first look-up


def _check_name(value, key: str, origin: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: key '{key}' expects a model name, got {short_repr(value)}")
    return value


def _check_bool(value, key: str, origin: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{origin}: key '{key}' expects bool, got {short_repr(value)}")
    return value


def _check_fast_path(value, key: str, origin: str):
    if value not in ("auto", True, False):
        raise ConfigError(f"{origin}: key '{key}' expects auto, true or false, got {short_repr(value)}")
    return value


# Keys of the model section that every model has (validators); all other keys are the model's config fields.
SECTION_KEYS = {
    "name": _check_name,              # the registered model
    "glove": _check_bool,             # initialise the word embedding from GloVe (models with ``load_glove``)
    "cpu_fast_path": _check_fast_path,  # model/cpu_ops.py: auto | true | false
}


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, typed config class and output type (a NamedTuple class)."""
    name: str
    builder: Callable
    config: type
    outputs: type

    @property
    def output_fields(self) -> tuple[str, ...]:
        return tuple(self.outputs._fields)


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, config: type, outputs: type):
    """Decorator: register ``builder(config, num_question_tokens, num_answers) -> nn.Module`` under ``name``."""
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"register_model('{name}'): config must be a dataclass, got {config!r}")

    def decorate(builder: Callable) -> Callable:
        if name in _MODELS and _MODELS[name].builder is not builder:
            raise ValueError(f"a model named '{name}' is already registered")
        _MODELS[name] = ModelSpec(name, builder, config, outputs)
        return builder
    return decorate


def model_spec(name: str | None, where: str = "model.name") -> ModelSpec:
    """The registered model ``name`` (None means the default); ConfigError naming ``where`` otherwise."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
    name = DEFAULT_MODEL if name is None else name
    if name not in _MODELS:
        raise ConfigError(f"{where}: unknown model '{name}' (registered: {', '.join(sorted(_MODELS))})")
    return _MODELS[name]


def model_config(model_section) -> object:
    """The typed config (dataclass instance) of a ``model`` section (dict / EasyDict / checkpoint's
    ``model_config``); every field must be given. ConfigError names a missing, unknown or mistyped key."""
    spec = model_spec(model_section.get("name"))
    fields = {k: v for k, v in model_section.items() if k not in SECTION_KEYS}
    return typed_from_dict(spec.config, fields, "model", "model config")


def architecture(model_section) -> dict:
    """What defines the weights of a model section: its name and typed config (no runtime switches)."""
    spec = model_spec(model_section.get("name"))
    return {"name": spec.name, **dataclasses.asdict(model_config(model_section))}


def build_model(model_section, num_question_tokens: int, num_answers: int):
    """Build the model a ``model`` section names (default ``dualvgr``) for V question tokens and A answers."""
    spec = model_spec(model_section.get("name"))
    return spec.builder(model_config(model_section), num_question_tokens, num_answers)


def merge_model_section(defaults: dict, update: dict, origin: str, section: str) -> dict:
    """Merge one config layer into the ``model`` section: the keys every model has (:data:`SECTION_KEYS`) plus the
    fields of the typed config of the model ``name`` selects. Choosing another model starts from that model's
    config defaults (the other model's fields are dropped)."""
    name = update.get("name", defaults.get("name"))
    spec = model_spec(name, f"{origin}: key '{section}.name'")
    merged = copy.deepcopy(defaults)
    if name != defaults.get("name"):
        merged = {k: v for k, v in merged.items() if k in SECTION_KEYS}
    fields = {f.name: f for f in dataclasses.fields(spec.config)}
    for key, value in update.items():
        dotted = f"{section}.{key}"
        if key in SECTION_KEYS:
            merged[key] = SECTION_KEYS[key](value, dotted, origin)
        elif key in fields:
            merged[key] = coerce_typed(value, field_types(spec.config)[key], merged.get(key), dotted, origin)
        else:
            known = ", ".join(sorted([*SECTION_KEYS, *fields]))
            raise ConfigError(f"{origin}: unknown config key '{clip_text(str(dotted))}' for model '{name}' "
                              f"(known keys: {known})")
    for key, field in fields.items():
        if key not in merged and field.default is not dataclasses.MISSING:
            merged[key] = field.default
        elif key not in merged and field.default_factory is not dataclasses.MISSING:
            merged[key] = as_plain(field.default_factory())
    return merged


# Allowed values of the model keys (as utils.config.RANGES); a model without a key skips its rule.
MODEL_RANGES = {
    "model.module_dim": (lambda v: v > 0 and v % 2 == 0, "an even number > 0"),
    "model.word_dim": (positive, "> 0"),
    "model.vision_dim": (positive, "> 0"),
    "model.appearance_dim": (positive, "> 0 (or null: the appearance features' width)"),
    "model.motion_dim": (positive, "> 0 (or null: the motion features' width)"),
    "model.num_heads": (positive, "> 0"),
    "model.graph_layers": (positive, "> 0"),
    "model.unit_layers": (positive, "> 0"),
    "model.mfb_factor": (positive, "> 0"),
    "model.mfb_dim": (positive, "> 0"),
    "model.dropout.*": (probability, "in [0, 1)"),
}


def check_model_section(cfg: dict) -> None:
    """ConfigError naming the first model key outside its range in :data:`MODEL_RANGES`, or model.num_heads that
    does not divide model.module_dim (models with both keys)."""
    check_value_ranges(cfg, MODEL_RANGES)
    model = cfg.get("model", {})
    if "num_heads" in model and "module_dim" in model and model["module_dim"] % model["num_heads"]:
        raise ConfigError(f"config key 'model.num_heads' must divide model.module_dim ({model['module_dim']}), "
                          f"got {short_repr(model['num_heads'])}")


MODEL_SECTION = Section(merge_model_section, check_model_section)  # the ``model`` section's owner
