"""Give the C heap's free memory back to the system between blocks of a long input.

A transcription allocates and frees many arrays of a few MB (logits, K/V caches, mel windows,
features). glibc keeps freed memory of that size in its heaps, and over hours of audio those
heaps fragment: a 2-hour file ended with ~120 MB more resident memory than a 15-minute one
(``tools/memory_check.py``), all of it free. ``malloc_trim`` returns it; called once per finished
block (minutes of audio) it costs nothing measurable. On other C libraries this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache


@lru_cache(maxsize=1)
def _trim():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc.malloc_trim if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return free heap memory to the system (glibc); True when it could be asked."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
