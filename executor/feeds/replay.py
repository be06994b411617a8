"""Replay bar files through the live cycle, one simulated bar close at a time.

A replay must exercise the same code path as live trading, including the validator's
handling of bad data, so this feed releases rows exactly in file order (duplicates and
out-of-order rows included) and only once they are closed at the simulated ``now``.
The driver advances its clock to ``max(clock, next_close_time())`` and runs one cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from domain import Bar, normalize_timeframe, timeframe_seconds
from domain.errors import ConfigError
from executor.feeds.files import LoadedBars

__all__ = ["ReplayFeed"]


class _Stream:
    """One (symbol, timeframe) series with a release cursor.

    Close times are precomputed because ``Bar.close_time`` re-parses the timeframe on every
    call, and the replay asks for the next close time once per cycle.
    """

    __slots__ = ("bars", "close_times", "cursor", "started")

    def __init__(self) -> None:
        self.bars: list[Bar] = []
        self.close_times: list[datetime] = []
        self.cursor = 0
        self.started = False

    def extend(self, bars: Iterable[Bar], length: timedelta) -> None:
        for bar in bars:
            self.bars.append(bar)
            self.close_times.append(bar.time + length)


class ReplayFeed:
    """A ``Feed`` over bars loaded from files, for one or many (symbol, timeframe) streams.

    Two sources for the same stream are concatenated in the order given, so a year split
    into monthly files replays as one series (overlaps surface as validator rejections).
    """

    def __init__(self, *sources: LoadedBars) -> None:
        self._streams: dict[tuple[str, str], _Stream] = {}
        for source in sources:
            self._add(source.symbol, source.timeframe, source.bars)

    @classmethod
    def from_bars(cls, bars: Iterable[Bar]) -> ReplayFeed:
        """Build a feed from bars in memory (tests, generated data), keeping their order."""
        feed = cls()
        for bar in bars:
            feed._add(bar.symbol, bar.timeframe, (bar,))
        return feed

    def _add(self, symbol: str, timeframe: str, bars: Iterable[Bar]) -> None:
        tf = normalize_timeframe(timeframe)
        stream = self._streams.get((symbol, tf))
        if stream is None:
            stream = self._streams[(symbol, tf)] = _Stream()
        stream.extend(bars, timedelta(seconds=timeframe_seconds(tf)))

    @property
    def streams(self) -> tuple[tuple[str, str], ...]:
        """(symbol, timeframe) pairs, in the order they were first loaded."""
        return tuple(self._streams)

    def closed_bars(
        self, symbol: str, timeframe: str, since: datetime | None, now: datetime
    ) -> list[Bar]:
        """Release, in file order, every unreleased row closed at ``now``.

        ``since`` matters only on the first call for a stream: leading rows at or before it
        were processed by a previous run (resume after restart) and are skipped. After
        that the cursor is the truth, so a row older than ``since`` (out of order, a
        duplicate) is still delivered and the validator rejects it with a reason.
        Release stops at the first row not closed yet, even if later rows are.
        """
        stream = self._stream(symbol, timeframe)
        bars, close_times, i = stream.bars, stream.close_times, stream.cursor
        n = len(bars)
        if not stream.started:
            stream.started = True
            if since is not None:
                while i < n and bars[i].time <= since:
                    i += 1
        start = i
        while i < n and close_times[i] <= now:
            i += 1
        stream.cursor = i
        return bars[start:i]

    def next_close_time(self) -> datetime | None:
        """Earliest close time among the streams' next unreleased rows; ``None`` when done.

        It can be earlier than the driver's clock (an out-of-order row); the driver then
        keeps its clock and ``closed_bars`` releases that row, so each cycle releases at
        least one row of the stream holding the minimum and a replay always terminates.
        """
        earliest: datetime | None = None
        for stream in self._streams.values():
            if stream.cursor < len(stream.bars):
                t = stream.close_times[stream.cursor]
                if earliest is None or t < earliest:
                    earliest = t
        return earliest

    def remaining(self) -> int:
        """Rows not yet released or skipped, over all streams."""
        return sum(len(s.bars) - s.cursor for s in self._streams.values())

    def total(self) -> int:
        return sum(len(s.bars) for s in self._streams.values())

    def _stream(self, symbol: str, timeframe: str) -> _Stream:
        stream = self._streams.get((symbol, timeframe))
        if stream is None:
            try:
                stream = self._streams.get((symbol, normalize_timeframe(timeframe)))
            except ValueError:
                stream = None
            if stream is None:
                loaded = ", ".join(f"{s} {tf}" for s, tf in self._streams) or "nothing"
                raise ConfigError(f"replay has no bars for {symbol} {timeframe}; loaded: {loaded}")
        return stream
