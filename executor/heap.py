"""Give the C heap's free memory back to the OS: fixed malloc thresholds, and a trim
once a market hour.

A daemon that runs for weeks allocates and frees steadily (SQLite's page buffers, bar and
decision objects, JSON). glibc's malloc keeps freed memory for reuse rather than returning
it, so resident memory creeps up although nothing is alive in it: over a simulated week of
M1 bars on 50 symbols RSS grew 4.7 % in four days, 1.7 % when the free heap was handed
back (benchmarks/bench_memory.py). ``malloc_trim(0)`` walks the heap to hand it back,
so the daemon calls it once per market hour of bars, after a cycle's commit, never per
cycle.

glibc also *raises* its mmap and trim thresholds each time a large mmapped block is freed
(up to 32 MiB and 64 MiB): from then on such blocks come from the heap and their memory
stays there between trims. In the same week-long run each hour's peak RSS grew 5.2 % by
day 4, all of it free heap (mallinfo2 ``fordblks`` 0.2 -> 3.3 MiB, used memory flat);
with the thresholds pinned at glibc's own defaults (128 KiB) the peak grew 2.0 %.
``pin_malloc_thresholds`` does that once at start-up (``dta run``).
On a libc without these calls (musl, macOS) both functions do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache

# mallopt(3) parameters and glibc's default for both thresholds.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
DEFAULT_THRESHOLD = 128 * 1024


@cache
def _libc(name: str) -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn: Callable[..., int] = getattr(libc, name)
    except (OSError, AttributeError):
        return None
    return fn


def release_free_heap() -> bool:
    """True if the C library could trim its heap."""
    trim = _libc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


def pin_malloc_thresholds(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds (setting them turns off their dynamic growth),
    so blocks of ``threshold`` bytes and more are mmapped and unmapped when freed, and free
    memory at the top of the heap goes back once it passes ``threshold``. True if set."""
    mallopt = _libc("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, threshold))


def settle_after_start_up() -> None:
    """What ``dta run`` does once the daemon has started: a full collection, then the
    start-up heap (imports, settings, the warmed snapshots: alive for the whole run) frozen
    out of the garbage collector, so no full collection of a long run rescans it (a pause
    that would land on whichever decision triggers it), and the malloc thresholds pinned.
    The benchmarks call it too, to measure the process ``dta run`` runs."""
    gc.collect()
    gc.freeze()
    pin_malloc_thresholds()  # no creeping free heap over weeks
