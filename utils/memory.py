"""Host memory available to new allocations (for checks made before allocating)."""
from __future__ import annotations

import os


def host_memory_available() -> int | None:
    """Bytes of host RAM available to new allocations (Linux MemAvailable; else free pages), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
