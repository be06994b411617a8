"""The daemon hands glibc's free heap back once a market day."""

from __future__ import annotations

import sys

import pytest

from executor import heap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim only")
def test_release_free_heap_returns_freed_memory_to_the_os() -> None:
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1])

    blocks = [bytearray(1000) for _ in range(100_000)]  # ~100 MB of small allocations
    pin = [bytearray(1000) for _ in range(100)]  # above them: the heap cannot shrink
    blocks.clear()  # freed inside the heap, so free() alone returns none of it
    before = rss()
    assert heap.release_free_heap()
    assert rss() < before - 10_000  # pages of 4 KiB: well over 40 MB back
    del pin
