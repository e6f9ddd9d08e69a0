"""Which bf16 matrix instructions this CPU has (``train.amp: auto`` reads it).

Two x86 extensions multiply bf16 matrices in hardware, accumulating in float32: AMX (``amx_bf16``: tile matrix
multiplies, Intel Xeon since Sapphire Rapids) and AVX512-BF16 (``avx512_bf16``: bf16 dot products, Intel Cooper Lake
and later, AMD Zen 4 and later). oneDNN, which runs torch's bf16 CPU products, uses either. Measured with torch
2.14.1, 2 threads, a 4096 x 2048 @ 2048 x 3072 product: 6.5x the float32 speed on an Intel Xeon with AMX, 2.1x on
an AMD EPYC with AVX512-BF16 only (docs/notes.md). Without either, bf16 products are emulated and slower than
float32.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names, fastest first
_TORCH_PROBES = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set | None:
    """The first processor's flags from /proc/cpuinfo (Linux), or None where there is no such file."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return set()


@functools.lru_cache(maxsize=1)
def bf16_matrix_units() -> tuple:
    """The bf16 matrix instruction sets of this CPU, names as in :data:`BF16_FLAGS` (fastest first); () if none.

    Read from /proc/cpuinfo; elsewhere from torch's own CPU probes (``torch.cpu._is_*_supported``, private, so
    each is optional).
    """
    flags = _cpuinfo_flags()
    if flags is not None:
        return tuple(name for name in BF16_FLAGS if name in flags)
    found = []
    for name, probe in _TORCH_PROBES.items():
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            found.append(name)
    return tuple(found)
