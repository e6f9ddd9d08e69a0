"""The model package's sections of a config, for utils.config.load_config: ``model`` (model/registry.py), the loss
sections ``losses`` / ``distill.losses`` and their older alias keys (model/losses.py)."""
from __future__ import annotations

from model.losses import ALIAS_RANGES, LOSS_ALIASES, LOSS_SECTIONS
from model.registry import MODEL_SECTION
from utils.config import Schema

MODEL_SCHEMA = Schema(sections={"model": MODEL_SECTION, **LOSS_SECTIONS}, aliases=LOSS_ALIASES, ranges=ALIAS_RANGES)
