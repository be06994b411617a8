"""The time a cycle runs at: the wall clock live, bar closes in a replay.

Replay is not a second engine: it drives the same cycle with a ``SimulatedClock``, one bar
close at a time, exactly as the scheduler drives it with the ``WallClock``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """Replay time: moves only forward, only when the replay driver moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(1970, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance_to(self, t: datetime) -> None:
        if t > self._now:
            self._now = t
