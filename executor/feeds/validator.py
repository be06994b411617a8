"""The gate every bar passes before it can reach a strategy.

Feeds hand over raw bars; this is the one place that decides whether a bar is fit to
trade on. A rejection never stops the stream: the bar is dropped with a stable reason code
(journaled and counted), and the next good bar is accepted as usual. Gaps are flagged,
not rejected, because weekends and holidays make them normal in FX.

Called for every bar of every stream, so the common case (a good bar) is kept to a
handful of float comparisons and one datetime comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain import Bar, ensure_utc, normalize_timeframe, timeframe_seconds

__all__ = ["REJECTION_REASONS", "BarCheck", "BarValidator"]

# Stable reason codes: they are journaled and counted, so never rename one.
NON_FINITE = "non_finite"
NON_POSITIVE_PRICE = "non_positive_price"
NEGATIVE_VOLUME = "negative_volume"
NEGATIVE_SPREAD = "negative_spread"
HIGH_BELOW_LOW = "high_below_low"
OPEN_OUTSIDE_RANGE = "open_outside_range"
CLOSE_OUTSIDE_RANGE = "close_outside_range"
INVALID_TIME = "invalid_time"
UNKNOWN_TIMEFRAME = "unknown_timeframe"
MISALIGNED = "misaligned"
NOT_CLOSED = "not_closed"
STALE = "stale"
OUT_OF_ORDER = "out_of_order"
DUPLICATE = "duplicate"
WRONG_STREAM = "wrong_stream"

REJECTION_REASONS: tuple[str, ...] = (
    NON_FINITE,
    NON_POSITIVE_PRICE,
    NEGATIVE_VOLUME,
    NEGATIVE_SPREAD,
    HIGH_BELOW_LOW,
    OPEN_OUTSIDE_RANGE,
    CLOSE_OUTSIDE_RANGE,
    INVALID_TIME,
    UNKNOWN_TIMEFRAME,
    MISALIGNED,
    NOT_CLOSED,
    STALE,
    OUT_OF_ORDER,
    DUPLICATE,
    WRONG_STREAM,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class BarCheck:
    """The verdict on one bar.

    ``reason`` is a stable code from ``REJECTION_REASONS`` (``None`` when accepted);
    ``detail`` is for humans. ``gap_bars`` counts the bars missing between the last
    accepted bar and this one: a flag for the journal, never a reason to reject.
    """

    accepted: bool
    reason: str | None = None
    gap_bars: int = 0
    detail: str = ""

    @property
    def gap(self) -> bool:
        return self.gap_bars > 0


_ACCEPTED = BarCheck(True)


class _StreamState:
    __slots__ = ("align_seconds", "last", "length", "seconds")

    def __init__(self, seconds: int, align_seconds: int) -> None:
        self.seconds = seconds
        self.length = timedelta(seconds=seconds)
        self.align_seconds = align_seconds  # 0: do not check alignment
        self.last: datetime | None = None


class BarValidator:
    """Stateful per (symbol, timeframe): ordering and gaps are relative to the last
    *accepted* bar of the same stream, so one bad bar cannot poison the ones after it.

    ``stale_after``: with ``now`` given, reject a bar whose close is older than this
    (a live feed replaying an old backlog after an outage); ``None`` disables it.
    ``check_alignment``: reject bars whose open time is not a multiple of the timeframe
    since the epoch. Only timeframes up to ``alignment_max_seconds`` (H1) are checked:
    D1 and W1 bars open at broker midnight or on Sunday, which a UTC offset shifts.
    """

    def __init__(
        self,
        *,
        stale_after: timedelta | None = None,
        check_alignment: bool = True,
        alignment_max_seconds: int = 3600,
    ) -> None:
        self._stale_after = stale_after
        self._check_alignment = check_alignment
        self._alignment_max_seconds = alignment_max_seconds
        # Keyed by the bar's timeframe string as given; aliases ("15m", "M15") share state.
        self._streams: dict[tuple[str, str], _StreamState] = {}
        self._canonical: dict[tuple[str, str], _StreamState] = {}
        self._rejections = dict.fromkeys(REJECTION_REASONS, 0)
        self._accepted = 0
        self._gaps = 0

    # ------------------------------------------------------------------ state

    def restore(self, symbol: str, timeframe: str, last_time: datetime) -> None:
        """Seed the last accepted open time after a restart, so the first bar of the new
        run is checked for order, duplicates and gaps against the previous run."""
        state = self._state(symbol, timeframe)
        if state is None:
            raise ValueError(f"unknown timeframe {timeframe!r}")
        state.last = ensure_utc(last_time)

    def last_time(self, symbol: str, timeframe: str) -> datetime | None:
        """Open time of the last accepted bar, to persist for ``restore``."""
        state = self._state(symbol, timeframe)
        return None if state is None else state.last

    def counts(self) -> dict[str, int]:
        """Accepted bars and rejections by reason (every reason present, zeros included)."""
        return {"accepted": self._accepted, **self._rejections}

    @property
    def gaps(self) -> int:
        """How many accepted bars came after a gap."""
        return self._gaps

    def _state(self, symbol: str, timeframe: str) -> _StreamState | None:
        key = (symbol, timeframe)
        state = self._streams.get(key)
        if state is None:
            try:
                tf = normalize_timeframe(timeframe)
            except (ValueError, AttributeError, TypeError):
                return None
            canonical = (symbol, tf)
            state = self._canonical.get(canonical)
            if state is None:
                seconds = timeframe_seconds(tf)
                align = (
                    seconds
                    if self._check_alignment and seconds <= self._alignment_max_seconds
                    else 0
                )
                state = self._canonical[canonical] = _StreamState(seconds, align)
            self._streams[key] = state
        return state

    # ------------------------------------------------------------------ the check

    def check(self, bar: Bar, now: datetime | None = None,
              stream: tuple[str, str] | None = None) -> BarCheck:
        """Accept or reject ``bar``; never raises, whatever the bar's values.

        ``now`` (aware UTC) enables the ``not_closed`` and ``stale`` checks: live callers
        pass the clock, a replay passes its simulated clock. ``stream``: the (symbol,
        timeframe) the feed was asked for; a bar of any other pair is rejected before it
        can touch a stream's state (it would otherwise be taken for that pair's bar).
        """
        if stream is not None and (bar.symbol, bar.timeframe) != stream \
                and not self._same_stream(bar, stream):
            if self._state(bar.symbol, bar.timeframe) is None:
                return self._reject(
                    bar, UNKNOWN_TIMEFRAME, f"timeframe {bar.timeframe!r} is not known")
            return self._reject(bar, WRONG_STREAM,
                                f"handed over for {stream[0]} {stream[1]}")
        try:
            rejected = self._check_values(bar)
        except TypeError:  # strings, complex, None...: arithmetic or ordering refused them
            rejected = self._reject(bar, NON_FINITE, "price, volume or spread is not a number")
        if rejected is not None:
            return rejected

        state = self._streams.get((bar.symbol, bar.timeframe))
        if state is None:
            state = self._state(bar.symbol, bar.timeframe)
            if state is None:
                return self._reject(
                    bar, UNKNOWN_TIMEFRAME, f"timeframe {bar.timeframe!r} is not known"
                )
        t = bar.time
        if not isinstance(t, datetime) or t.tzinfo is None or t.utcoffset() is None:
            return self._reject(bar, INVALID_TIME, f"open time {t!r} is not timezone-aware")
        try:
            rejected = self._check_clock(bar, t, state, now)
            return rejected if rejected is not None else self._check_sequence(bar, t, state)
        except OverflowError:
            # Only reachable with times at the very edge of datetime's range.
            return self._reject(bar, INVALID_TIME, f"open time {t!r} is out of range")

    def _same_stream(self, bar: Bar, stream: tuple[str, str]) -> bool:
        """Same symbol, and the same timeframe under any alias (M15 = 15m)."""
        if bar.symbol != stream[0]:
            return False
        try:
            return normalize_timeframe(bar.timeframe) == normalize_timeframe(stream[1])
        except (ValueError, AttributeError, TypeError):
            return False

    def _check_values(self, bar: Bar) -> BarCheck | None:
        o = bar.open
        h = bar.high
        lo = bar.low
        c = bar.close
        v = bar.volume
        s = bar.spread
        # Numbers here are floats (numpy's float64 too) or plain ints. A bool would pass
        # as 1 or 0; a Decimal or another numpy scalar passes every comparison below, then
        # breaks the snapshot's arithmetic or the journal's JSON. One identity test per
        # value on the common path.
        if not (type(o) is float and type(h) is float and type(lo) is float
                and type(c) is float and type(v) is float and type(s) is float) \
                and not _all_real(o, h, lo, c, v, s):
            return self._reject(bar, NON_FINITE, "price, volume or spread is not a number")
        # One sum tests all six for NaN/inf (x - x is NaN only for non-finite x); the
        # slow path rules out a false alarm from finite values overflowing the sum.
        total = o + h + lo + c + v + s
        if total - total != 0.0 and not _all_finite(o, h, lo, c, v, s):
            return self._reject(bar, NON_FINITE, "price, volume or spread is NaN or infinite")
        if o <= 0.0 or h <= 0.0 or lo <= 0.0 or c <= 0.0:
            return self._reject(bar, NON_POSITIVE_PRICE, "a price is zero or negative")
        if v < 0.0:
            return self._reject(bar, NEGATIVE_VOLUME, f"volume {v!r} is negative")
        if s < 0.0:
            return self._reject(bar, NEGATIVE_SPREAD, f"spread {s!r} is negative")
        if h < lo:
            return self._reject(bar, HIGH_BELOW_LOW, f"high {h!r} < low {lo!r}")
        if o > h or o < lo:
            return self._reject(bar, OPEN_OUTSIDE_RANGE, f"open {o!r} outside [{lo!r}, {h!r}]")
        if c > h or c < lo:
            return self._reject(bar, CLOSE_OUTSIDE_RANGE, f"close {c!r} outside [{lo!r}, {h!r}]")
        return None

    def _check_clock(
        self, bar: Bar, t: datetime, state: _StreamState, now: datetime | None
    ) -> BarCheck | None:
        """The open time against the timeframe's grid, and the close against ``now``."""
        if state.align_seconds:
            # Whole seconds since the epoch, without float rounding of timestamp().
            since_epoch = t - _EPOCH
            if (
                since_epoch.microseconds
                or (since_epoch.days * 86400 + since_epoch.seconds) % state.align_seconds
            ):
                return self._reject(
                    bar,
                    MISALIGNED,
                    f"open time {t.isoformat()} is not on a {bar.timeframe} boundary",
                )
        if now is not None:
            close_time = t + state.length
            if close_time > now:
                return self._reject(
                    bar,
                    NOT_CLOSED,
                    f"bar closes at {close_time.isoformat()}, after now {now.isoformat()}",
                )
            stale_after = self._stale_after
            if stale_after is not None and now - close_time > stale_after:
                return self._reject(
                    bar,
                    STALE,
                    f"bar closed at {close_time.isoformat()}, more than {stale_after} "
                    f"before now {now.isoformat()}",
                )
        return None

    def _check_sequence(self, bar: Bar, t: datetime, state: _StreamState) -> BarCheck:
        """The open time against the stream's last accepted one: order, duplicates, gaps."""
        last = state.last
        if last is None:
            state.last = t
            self._accepted += 1
            return _ACCEPTED
        if t <= last:
            if t == last:
                return self._reject(bar, DUPLICATE, f"open time {t.isoformat()} seen already")
            return self._reject(
                bar,
                OUT_OF_ORDER,
                f"open time {t.isoformat()} is before the last accepted {last.isoformat()}",
            )
        state.last = t
        self._accepted += 1
        step = t - last
        if step == state.length:
            return _ACCEPTED
        # Bars missing in between; a non-multiple step (misaligned data) rounds down.
        gap_bars = int(step.total_seconds() // state.seconds) - 1
        if gap_bars <= 0:
            return _ACCEPTED
        self._gaps += 1
        return BarCheck(
            True,
            None,
            gap_bars,
            f"{gap_bars} bar(s) missing between {last.isoformat()} and {t.isoformat()}",
        )

    def _reject(self, bar: Bar, reason: str, detail: str) -> BarCheck:
        self._rejections[reason] += 1
        return BarCheck(False, reason, 0, f"{bar.symbol!s} {bar.timeframe!s}: {detail}")


def _all_real(*values: object) -> bool:
    return all(isinstance(x, float) or (isinstance(x, int) and not isinstance(x, bool))
               for x in values)


def _all_finite(*values: float) -> bool:
    try:
        return all(math.isfinite(v) for v in values)
    except TypeError:
        return False
