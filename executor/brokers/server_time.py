"""Broker server time <-> UTC, at the edge, for every MT5 timestamp we read or ask for.

An MT5 server stamps bars, deals and orders in its own wall-clock time, as epoch seconds
("time ... in the trade server's time zone"). Most retail servers do not keep one offset:
they run at UTC+2 in winter and UTC+3 in summer so that the New York close (17:00 New York)
is midnight on the server, which makes them follow the US daylight-saving calendar; others
follow the EU one (Europe/Athens, Europe/Kiev...). A fixed offset is right for half the
year only: the other half, bars come out an hour early or are held back as not closed.

So the server's clock is configured as an IANA zone plus an optional shift of whole hours
(``server_timezone = "America/New_York"``, ``server_timezone_shift_hours = 7`` for the New
York close convention; ``"Europe/Athens"`` with no shift for EU-calendar servers), or as a
fixed offset where a server really keeps one. Wall times repeated or skipped by a clock
change fall on a Sunday morning of the zone, when FX markets are closed; a repeated wall
time is read as its first occurrence (``fold=0``).

``check_offset`` compares the configuration with what the terminal shows (the time of the
newest tick against our UTC clock): a start-up refusal when they disagree by an hour.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EPOCH = datetime(1970, 1, 1)


class ServerClock:
    """The trade server's clock: a zone (plus shift) or a fixed offset from UTC."""

    def __init__(self, *, timezone: str | None = None, shift_hours: float = 0.0,
                 fixed_offset_hours: float = 0.0) -> None:
        self.zone: ZoneInfo | None = load_zone(timezone) if timezone else None
        self.shift = timedelta(hours=shift_hours if timezone else 0.0)
        self.fixed = timedelta(hours=fixed_offset_hours)

    @classmethod
    def from_settings(cls, settings: object) -> ServerClock:
        """From ``Mt5Settings`` (``server_timezone`` wins over ``server_utc_offset_hours``)."""
        return cls(timezone=getattr(settings, "server_timezone", None),
                   shift_hours=float(getattr(settings, "server_timezone_shift_hours", 0.0)),
                   fixed_offset_hours=float(getattr(settings, "server_utc_offset_hours", 0.0)))

    def describe(self) -> str:
        if self.zone is None:
            return f"UTC{_hours(self.fixed)}"
        shift = f" {_hours(self.shift)}" if self.shift else ""
        return f"{self.zone.key}{shift}"

    def offset(self, utc: datetime) -> timedelta:
        """Server wall clock minus UTC at the instant ``utc``."""
        if self.zone is None:
            return self.fixed
        local = utc.astimezone(self.zone).utcoffset() or timedelta(0)
        return local + self.shift

    def to_utc(self, server_epoch: float) -> datetime:
        """A server timestamp (epoch seconds on the server's wall clock) as aware UTC."""
        wall = _EPOCH + timedelta(seconds=float(server_epoch))
        if self.zone is None:
            return (wall - self.fixed).replace(tzinfo=UTC)
        return (wall - self.shift).replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    def to_server_epoch(self, utc: datetime) -> float:
        """The server's wall-clock epoch seconds at the instant ``utc``."""
        return (utc + self.offset(utc)).timestamp()

    def check_offset(self, server_epoch: float, now: datetime,
                     tolerance_seconds: float = 120.0) -> str | None:
        """``None`` when a tick stamped ``server_epoch`` (the newest the terminal has) fits
        the configuration at ``now``, else why not. A tick is never from the future, so one
        stamped later than the configured clock allows means the offset is too small; one
        stamped a whole number of hours earlier (within the tolerance) means it is too
        large: a tick exactly an hour old is no explanation worth trading on. Older ticks by
        other amounts (a closed market) prove nothing either way and pass."""
        observed = float(server_epoch) - now.timestamp()
        expected = self.offset(now).total_seconds()
        diff = observed - expected
        if abs(diff) <= tolerance_seconds:
            return None
        hours = round(diff / 3600)
        if diff > 0 or (hours != 0 and abs(diff - hours * 3600) <= tolerance_seconds):
            return (f"MT5 server time disagrees with the configuration: the terminal's newest "
                    f"tick says UTC{_hours(timedelta(seconds=observed))}, the configured "
                    f"server clock ({self.describe()}) says UTC"
                    f"{_hours(timedelta(seconds=expected))} at {now:%Y-%m-%d %H:%M} UTC; set "
                    "[broker.mt5] server_timezone (IANA name, e.g. 'America/New_York' with "
                    "server_timezone_shift_hours = 7 for a New York close server) or "
                    "server_utc_offset_hours to match the broker")
        return None


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as "
                         "'Europe/Athens' or 'America/New_York'") from None


def _hours(delta: timedelta) -> str:
    h = delta.total_seconds() / 3600
    sign = "-" if h < 0 else "+"
    whole = math.floor(abs(h))
    minutes = round((abs(h) - whole) * 60)
    return f"{sign}{whole}" + (f":{minutes:02d}" if minutes else "")
