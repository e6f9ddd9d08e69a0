"""OpenMP wait policy for every entry point: idle threads sleep (PASSIVE) unless the user chose otherwise.

With the default (spinning) policy, an OpenMP thread that waits for a descheduled partner keeps its core busy; on a
machine shared with other jobs that makes CPU training steps several times slower. The OpenMP runtime reads
``OMP_WAIT_POLICY`` once, when torch loads it, so every command line calls :func:`default_openmp_wait_policy`
before anything imports torch. This module must not import torch itself.
"""
from __future__ import annotations

import os

OMP_WAIT_POLICY = "OMP_WAIT_POLICY"
DEFAULT_POLICY = "PASSIVE"


def default_openmp_wait_policy() -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it; returns the policy in effect."""
    return os.environ.setdefault(OMP_WAIT_POLICY, DEFAULT_POLICY)

