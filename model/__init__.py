"""The VideoQA models, built by name (model/registry.py): the DualVGR-style teacher and its one-graph-layer student.

``build_model(cfg.model, num_question_tokens=V, num_answers=A)`` builds the model ``cfg.model.name`` names
(default ``dualvgr``: :class:`VideoQAModel`, whose forward returns a :class:`ModelOutput`). Loss terms live in
:mod:`model.losses`, the parameter table in :mod:`model.summary`.
"""
from model.network import DualVGRConfig, ModelOutput, VideoQAModel
from model.registry import build_model, register_model

__all__ = ["DualVGRConfig", "ModelOutput", "VideoQAModel", "build_model", "register_model"]
