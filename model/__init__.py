"""The VideoQA model: a DualVGR-style teacher and its one-graph-layer student in one module.

``build_model(cfg.model, num_question_tokens=V, num_answers=A)`` -> :class:`VideoQAModel`; its forward returns a
:class:`ModelOutput`. Losses live in :mod:`model.losses`, the parameter table in :mod:`model.summary`.

The names are imported on first use (PEP 562), so ``python -m model.summary`` can set the OpenMP wait policy
before torch loads.
"""
__all__ = ["ModelOutput", "VideoQAModel", "build_model"]


def __getattr__(name: str):
    """``model.build_model`` and friends, imported from :mod:`model.network` on first access."""
    if name in __all__:
        from model import network
        return getattr(network, name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
