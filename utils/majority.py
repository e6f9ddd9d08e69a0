"""The project's one majority definition: the most frequent answer id, lowest id on ties, some ids excluded.

Every majority baseline uses it: the answer heads' (model/heads/, scored by training/baselines.py and validate.py
--compare) and the synthetic generator's dataset statistics (preprocess/synthetic/msvd_qa.py, whose text answers it
numbers in order of first appearance, so a tie goes to the answer seen first).
"""
from __future__ import annotations

import numpy as np


def most_frequent(values, exclude=()) -> int | None:
    """The most frequent non-negative int in ``values`` (N,) outside ``exclude`` (lowest on ties); None if none."""
    values = np.asarray(values, dtype=np.int64)
    values = values[~np.isin(values, list(exclude))] if len(exclude) else values
    if values.size == 0:
        return None
    return int(np.bincount(values).argmax())
