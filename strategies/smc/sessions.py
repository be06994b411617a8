"""Trading session of a bar, from its UTC open time."""

from __future__ import annotations

from datetime import datetime

# Hours in UTC, half-open [start, end). The London/New York overlap (12:00-16:00) is
# reported as new_york: from the US open, US flow dominates FX volume. 21:00-24:00 is the
# thin rollover/Sydney period, which no SMC playbook trades, so it is None.
SESSIONS: tuple[tuple[str, int, int], ...] = (
    ("asia", 0, 7),
    ("london", 7, 12),
    ("new_york", 12, 21),
)

_BY_HOUR: tuple[str | None, ...] = tuple(
    next((name for name, start, end in SESSIONS if start <= h < end), None) for h in range(24)
)


def session_of(time: datetime) -> str | None:
    """Session name for a UTC-aware bar open time; a table lookup, as it runs every bar."""
    return _BY_HOUR[time.hour]
