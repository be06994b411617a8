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


PINNED_CHILD = """
import sys
from executor import heap
if sys.argv[1] == "pin":
    assert heap.pin_malloc_thresholds()
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096
first = bytearray(4 << 20)
del first  # freeing an mmapped block raises glibc's dynamic thresholds (unless pinned)
blocks, pins = [], []
for _ in range(64):  # 1 MiB blocks, each with a small live block above it
    blocks.append(bytearray(1 << 20))
    pins.append(bytearray(200))
before = rss()
blocks.clear()
print((before - rss()) >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt only")
def test_pinned_thresholds_hand_freed_large_blocks_back_at_once() -> None:
    """Unpinned, glibc serves 1 MiB blocks from the heap once it has freed a bigger mmapped
    one, and the small live blocks between them keep that memory resident; pinned, they
    are mmapped and go back to the OS the moment they are freed. In a child process: the
    thresholds are process-wide."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    def returned_mib(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PINNED_CHILD, mode], cwd=root,
                             capture_output=True, text=True, check=True, timeout=60)
        return int(out.stdout.strip())

    assert returned_mib("pin") >= 60  # all 64 MiB back
    assert returned_mib("default") < 8  # glibc's dynamic thresholds kept them


def test_settling_after_start_up_freezes_the_heap_out_of_the_collector() -> None:
    """What `dta run` (and the benchmarks, to measure the same process) does once the
    daemon has started: everything alive is frozen out of the collector."""
    import gc

    before = gc.get_freeze_count()  # 0 unless something in this process froze already
    alive = [object() for _ in range(1000)]
    try:
        heap.settle_after_start_up()
        assert gc.get_freeze_count() >= before + len(alive)
    finally:
        if before == 0:
            gc.unfreeze()
