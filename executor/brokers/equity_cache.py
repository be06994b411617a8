"""A live broker's account equity, read from the broker at most once per short interval.

The daemon asks for equity after every bar of every stream and for every decision; a
broker round-trip each time would add latency to the cycle and, on an exchange, request
weight. A reading is reused for ``ttl_seconds`` of monotonic time and dropped as soon as
the account changes under us (an order sent, a fill reported: ``invalidate``), so a
decision right after a fill sees fresh equity.

A failed read is remembered for the same interval and the *same* exception object is
raised again: a broker that is away is not asked again for every stream and every
decision of the cycle, and the caller can tell a repeat (``is`` the last one) from a new
failure, so it counts and logs each failure once.

No lock is held during the read itself: ``invalidate`` bumps a generation, and a read that
was in flight when the account changed is returned to its caller but not kept.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from domain.errors import PermanentVenueError, VenueError


class EquityCache:
    def __init__(self, read: Callable[[], float], ttl_seconds: float = 1.0, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not ttl_seconds >= 0:
            raise ValueError(f"equity cache ttl must be >= 0 seconds, not {ttl_seconds!r}")
        self._read = read
        self.ttl_seconds = ttl_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._generation = 0
        self._at = -math.inf
        self._value: float | None = None
        self._error: VenueError | None = None
        self.reads = 0  # reads that went to the broker (tests, diagnostics)

    def get(self) -> float:
        with self._lock:
            if self._monotonic() - self._at < self.ttl_seconds:
                if self._error is not None:
                    raise self._error
                if self._value is not None:
                    return self._value
            generation = self._generation
            self.reads += 1
        try:
            value = float(self._read())
        except VenueError as exc:
            self._keep(generation, None, exc)
            raise
        if not math.isfinite(value):
            error = PermanentVenueError(f"broker reported a non-finite equity {value!r}")
            self._keep(generation, None, error)
            raise error
        self._keep(generation, value, None)
        return value

    def _keep(self, generation: int, value: float | None, error: VenueError | None) -> None:
        with self._lock:
            if generation == self._generation:  # the account did not change meanwhile
                self._value, self._error, self._at = value, error, self._monotonic()

    def invalidate(self) -> None:
        """The account changed (an order went out, a fill came in): read afresh next time."""
        with self._lock:
            self._generation += 1
            self._value, self._error, self._at = None, None, -math.inf
