"""Answer heads: one :class:`Head` per answer type (``model.head``), found by name with :func:`get_head`.

A head owns everything that depends on the kind of answer: the network's output layer (built and applied), logits
-> predictions, the per-question outcome, the metric and its direction, the answer-prior baselines, answer text,
the default loss terms and the batch fields it needs. Nothing outside this package compares head names.

Add a head: write ``model/heads/<name>.py`` with a ``@register_head`` subclass of :class:`Head`, and put its module
in :data:`HEAD_MODULES` (a test or a script may also register one by itself). docs/model.md section 8 describes the
three built-in heads.
"""
from model.heads.base import (DEFAULT_HEAD, HEAD_MODULES, Head, get_head, head_names, metric_lower_is_better,
                              register_head)

__all__ = ["DEFAULT_HEAD", "HEAD_MODULES", "Head", "get_head", "head_names", "metric_lower_is_better", "register_head"]
