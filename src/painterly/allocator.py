"""Keep freed memory in the process instead of handing it back to the OS after every layer.

glibc's malloc serves blocks over its mmap threshold (a few MiB at most) with fresh
`mmap` calls and unmaps them on `free`. Every activation of a style network at 1024 px is
larger than that, so each layer's output costs a page fault per 4 KiB page, every call:
on this project's 2-core machines a TransformerNet at 1024² spent 4.1 s per image with
glibc's defaults and 2.3 s with large blocks kept on the heap (docs/benchmarks.md).

This is process-wide, so the library never does it by itself: the CLI (and so the web UI)
calls `keep_freed_memory()` at start-up, and API users may call it too. It costs up to
`TRIM_THRESHOLD` of freed memory held for reuse instead of returned. Not for ONNX Runtime: its
worker threads each get a malloc arena, and with large blocks kept in all of them an 8-bit
4096² image peaked at 3.1 GiB instead of 0.84 GiB, for 10 % more speed; `painterly apply`
applies it only on the torch backend.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap, where freed ones are reused
TRIM_THRESHOLD = 1 << 30  # free memory at the heap's top is returned to the OS past 1 GiB only
TOP_PAD = 64 << 20  # grow the heap 64 MiB at a time: fewer brk calls

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc to reuse large freed blocks; True if it was applied (once per process).

    A no-op returning False where the C library is not glibc (macOS, Windows, musl).
    """
    global _done
    if _done is None:
        _done = _apply()
    return _done


def _apply() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: musl has no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
