"""Give freed heap memory back to the system between the phases of a staging run.

torch's CPU tensors and numpy's arrays are freed to glibc's malloc, which keeps them in the
arena of the thread that allocated them (torch's compute threads each have one) instead of
returning them to the system. After RobustSleepNet had staged the example night ~170 MB of
freed memory stayed resident, and the next phase's temporaries came on top of it: the peak
RSS of ``eegvlm stage`` was set by that sum. ``malloc_trim`` returns it (a few ms).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None  # musl has none


def release_free_memory() -> bool:
    """Return the heap's free memory to the system (glibc); True if it could be asked."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
