"""The VideoQA model: a DualVGR-style teacher and its one-graph-layer student in one module.

``build_model(cfg.model, num_question_tokens=V, num_answers=A)`` -> :class:`VideoQAModel`; its forward returns a
:class:`ModelOutput`. Losses live in :mod:`model.losses`, the parameter table in :mod:`model.summary`.
"""
from model.network import ModelOutput, VideoQAModel, build_model

__all__ = ["ModelOutput", "VideoQAModel", "build_model"]
