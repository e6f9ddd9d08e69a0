"""The VideoQA models, built by name (model/registry.py): the DualVGR-style teacher and its one-graph-layer student.

``build_model(cfg.model, num_question_tokens=V, num_answers=A)`` builds the model ``cfg.model.name`` names
(default ``dualvgr``: :class:`VideoQAModel`, whose forward returns a :class:`ModelOutput`). Loss terms live in
:mod:`model.losses`, the parameter table in :mod:`model.summary`.

The names are imported on first use (PEP 562), so ``python -m model.summary`` can set the OpenMP wait policy
before torch loads.
"""
_SOURCES = {"DualVGRConfig": "network", "ModelOutput": "network", "VideoQAModel": "network",
            "build_model": "registry", "register_model": "registry"}
__all__ = list(_SOURCES)


def __getattr__(name: str):
    """``model.build_model`` and friends, imported from their module on first access (the built-in models register
    themselves when :mod:`model.network` is imported)."""
    if name in _SOURCES:
        import importlib
        importlib.import_module("model.network")
        return getattr(importlib.import_module(f"model.{_SOURCES[name]}"), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
