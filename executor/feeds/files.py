"""Read bar files (MT5 exports, ccxt OHLCV dumps) for replays, backtests and tests.

The reader converts and never judges: rows come back in file order, unsorted, and a bar
with an impossible value (a literal ``nan``, a negative price) reaches ``BarValidator``,
which rejects it with a journaled reason exactly as it would a bad bar from a live feed.
A row that cannot become a ``Bar`` at all (no usable timestamp, wrong column count, a
number that does not parse) is set aside as a ``RawRejection`` with its line number and
the exact reason (``high 'abc' is not a number``), so a replay report and the run summary
can account for every line of the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from domain import Bar, normalize_timeframe
from domain.errors import ConfigError, DataFormatError
from executor.feeds.base import RawRejection

__all__ = ["LoadedBars", "load_bars"]

FORMAT_MT5_CSV = "mt5_csv"
FORMAT_CCXT_JSON = "ccxt_json"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Rows used to infer the symbol's point from price decimals. MT5 drops trailing zeros
# (1.05680 is written 1.0568), so one row is not enough; a few hundred are in practice.
_POINT_SAMPLE_ROWS = 200

# MT5 writes `YYYY.MM.DD HH:MM:SS`; the "Bars" dialog splits date and time into two
# columns and may omit seconds. Dashes and slashes are accepted for hand-made files.
_DATE = re.compile(r"(\d{4})[.\-/](\d{1,2})[.\-/](\d{1,2})")
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")

# Header names, lower-cased and stripped of MT5's angle brackets, mapped to our fields.
_COLUMN_ALIASES: dict[str, str] = {
    "date": "date",
    "datetime": "date",
    "time": "time",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "tickvol": "tickvol",
    "tick_volume": "tickvol",
    "tickvolume": "tickvol",
    "vol": "volume",
    "volume": "volume",
    "real_volume": "volume",
    "spread": "spread",
}
_REQUIRED = ("date", "open", "high", "low", "close")
_PRICES = ("open", "high", "low", "close")


@dataclass(frozen=True, slots=True)
class LoadedBars:
    """One file's bars, in file order, plus what could not be read and a content hash.

    ``sha256`` lets a replay report (and the journal) pin exactly which data produced a
    result. ``point`` is the price step used to turn MT5's integer spread into a price
    (``None`` for formats without a spread column).
    """

    symbol: str
    timeframe: str
    bars: tuple[Bar, ...]
    rejected: tuple[RawRejection, ...]
    source: str
    sha256: str
    format: str = FORMAT_MT5_CSV
    point: float | None = None


def load_bars(
    path: str | os.PathLike[str],
    *,
    symbol: str | None = None,
    timeframe: str | None = None,
    server_utc_offset_hours: float = 0.0,
    point: float | None = None,
) -> LoadedBars:
    """Load an MT5 CSV/TSV export or a ccxt OHLCV JSON file.

    ``server_utc_offset_hours`` is the broker server's offset from UTC (MT5 exports are in
    server time); it is ignored for ccxt JSON, whose millisecond timestamps are UTC by
    definition. ``point`` overrides the price step inferred from the prices' decimals.
    Symbol and timeframe come from the arguments, else the JSON's own keys, else a file
    name like ``EURUSD_M15.csv``.
    """
    p = Path(path)
    if point is not None and not (math.isfinite(point) and point > 0):
        raise ConfigError(f"point must be a positive price step like 0.00001, got {point!r}")
    if not math.isfinite(server_utc_offset_hours) or abs(server_utc_offset_hours) > 24:
        raise ConfigError(
            f"server_utc_offset_hours must be between -24 and 24, got {server_utc_offset_hours!r}"
        )
    data = _read_bytes(p)
    digest = hashlib.sha256(data).hexdigest()
    text = _decode(data)
    stripped = text.lstrip()
    if not stripped:
        raise DataFormatError(f"bar file {p} is empty")
    if stripped[0] in "[{":
        return _load_ccxt_json(p, text, digest, symbol, timeframe)
    return _load_mt5_csv(
        p, text, digest, symbol, timeframe, timedelta(hours=server_utc_offset_hours), point
    )


# --------------------------------------------------------------------------- helpers


def _read_bytes(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(f"bar file {p} does not exist") from None
    except IsADirectoryError:
        raise DataFormatError(f"bar file {p} is a directory, not a file") from None
    except OSError as exc:
        raise DataFormatError(f"cannot read bar file {p}: {exc.strerror or exc}") from None


def _decode(data: bytes) -> str:
    """MT5 writes UTF-16 from some dialogs and UTF-8 (sometimes with a BOM) from others."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    if b"\x00" in data[:64]:  # UTF-16 without a BOM: every ASCII char has a zero byte
        return data.decode("utf-16-le", errors="replace")
    # Undecodable bytes become U+FFFD, so the row fails to parse and is reported by line.
    return data.decode("utf-8-sig", errors="replace")


def _resolve_names(
    p: Path,
    symbol: str | None,
    timeframe: str | None,
    embedded_symbol: str | None,
    embedded_timeframe: str | None,
) -> tuple[str, str]:
    stem_symbol, stem_timeframe = _names_from_filename(p.stem)
    sym = symbol or embedded_symbol or stem_symbol
    tf = timeframe or embedded_timeframe or stem_timeframe
    if not sym or not tf:
        missing = " and ".join(
            name for name, value in (("symbol", sym), ("timeframe", tf)) if not value
        )
        raise DataFormatError(
            f"cannot tell the {missing} of {p}: pass --symbol/--timeframe "
            "or name the file like EURUSD_M15.csv or BTCUSDT_1h.json"
        )
    try:
        return sym, normalize_timeframe(tf)
    except ValueError as exc:
        if timeframe:
            raise ConfigError(f"--timeframe: {exc}") from None
        raise DataFormatError(f"{p}: {exc}") from None


def _names_from_filename(stem: str) -> tuple[str | None, str | None]:
    """``EURUSD_M15`` -> (EURUSD, M15); the last part that is a timeframe wins.

    An all-lower-case symbol (``eurusd-m15.csv``) is upper-cased; a mixed-case one is kept
    as written because broker suffixes are case-sensitive (``EURUSDm``).
    """
    parts = re.split(r"[_\-]", stem)
    for i in range(len(parts) - 1, 0, -1):
        try:
            tf = normalize_timeframe(parts[i])
        except ValueError:
            continue
        sym = stem[: sum(len(part) + 1 for part in parts[:i]) - 1]
        if sym.islower():
            sym = sym.upper()
        return (sym or None), tf
    return None, None


def _to_float(text: Any, name: str) -> float:
    """The number, or a ``ValueError`` naming the field and what it held: text that is no
    number is not "NaN or infinite" (a literal ``nan`` is, and the validator says so)."""
    try:
        return float(text)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} {text!r} is not a number") from None


# --------------------------------------------------------------------------- MT5 CSV / TSV


def _sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", "\t", ";")}
    return max(counts, key=lambda d: counts[d])


def _map_header(p: Path, header: Sequence[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        key = _COLUMN_ALIASES.get(name.strip().strip("<>").strip().lower())
        if key is not None and key not in columns:
            columns[key] = i
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise DataFormatError(
            f"{p}: unknown format: header {list(header)!r} lacks {', '.join(missing)}; "
            "expected an MT5 export (Date,Open,High,Low,Close,Tickvol,Volume,Spread or "
            "<DATE> <TIME> <OPEN> ...) or ccxt OHLCV JSON"
        )
    return columns


def _infer_point(rows: Sequence[Sequence[str]], price_columns: Sequence[int]) -> float:
    decimals = 0
    for row in rows[:_POINT_SAMPLE_ROWS]:
        for i in price_columns:
            if i < len(row):
                value = row[i].strip()
                dot = value.find(".")
                if dot >= 0 and value[dot + 1 :].isdigit():
                    decimals = max(decimals, len(value) - dot - 1)
    return 10.0**-decimals


def _load_mt5_csv(
    p: Path,
    text: str,
    digest: str,
    symbol: str | None,
    timeframe: str | None,
    offset: timedelta,
    point: float | None,
) -> LoadedBars:
    sym, tf = _resolve_names(p, symbol, timeframe, None, None)
    lines = text.split("\n")
    header, rows = _mt5_rows(text, lines)
    layout = _Mt5Layout.of(_map_header(p, header), len(header))
    if not rows:
        raise DataFormatError(f"bar file {p} has a header but no bar rows")
    step = _spread_step(layout, rows, point)
    stamps = _StampParser(offset)
    bars: list[Bar] = []
    rejected: list[RawRejection] = []
    for lineno, row in rows:
        try:
            bars.append(_mt5_bar(row, layout, stamps, sym, tf, step))
        except ValueError as exc:
            rejected.append(RawRejection(lineno, str(exc), _raw(lines, lineno)))
    return LoadedBars(
        symbol=sym,
        timeframe=tf,
        bars=tuple(bars),
        rejected=tuple(rejected),
        source=str(p),
        sha256=digest,
        format=FORMAT_MT5_CSV,
        point=step,
    )


def _mt5_rows(text: str, lines: Sequence[str]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header's fields, and (line number, fields) for every non-blank data row.

    Line numbers count the header and any blank lines before it, so they match an editor's.
    """
    start = next(i for i, line in enumerate(lines) if line.strip())
    delimiter = _sniff_delimiter(lines[start])
    rows: list[tuple[int, list[str]]] = []
    if '"' in text:  # a hand-made file with quoted fields: the csv module reads it
        reader = csv.reader(lines[start:], delimiter=delimiter)
        header = next(reader)
        for row in reader:
            if row and (len(row) > 1 or row[0].strip()):
                rows.append((reader.line_num + start, row))
        return header, rows
    # MT5 never quotes, so a plain split reads its exports.
    header = lines[start].rstrip("\r").split(delimiter)
    for i in range(start + 1, len(lines)):
        line = lines[i].rstrip("\r")
        if line.strip():
            rows.append((i + 1, line.split(delimiter)))
    return header, rows


@dataclass(frozen=True, slots=True)
class _Mt5Layout:
    """Where each field sits in the rows of one MT5 export (``None``: not in the file)."""

    ncols: int
    date: int
    time: int | None
    prices: tuple[int, int, int, int]  # open, high, low, close
    volume: int | None
    tickvol: int | None
    spread: int | None

    @classmethod
    def of(cls, columns: dict[str, int], ncols: int) -> _Mt5Layout:
        prices = (columns["open"], columns["high"], columns["low"], columns["close"])
        return cls(ncols=ncols, date=columns["date"], time=columns.get("time"), prices=prices,
                   volume=columns.get("volume"), tickvol=columns.get("tickvol"),
                   spread=columns.get("spread"))


def _spread_step(
    layout: _Mt5Layout, rows: Sequence[tuple[int, list[str]]], point: float | None
) -> float | None:
    """The price step that turns MT5's integer spread into a price: the one given, else
    the one the prices' decimals show; ``None`` for a file without a spread column."""
    if layout.spread is None:
        return None
    if point is not None:
        return point
    return _infer_point([row for _, row in rows], layout.prices)


def _mt5_bar(
    row: Sequence[str],
    layout: _Mt5Layout,
    stamps: _StampParser,
    symbol: str,
    timeframe: str,
    step: float | None,
) -> Bar:
    """Raise ``ValueError`` whose message is the rejection reason."""
    if len(row) != layout.ncols:
        raise ValueError(f"expected {layout.ncols} columns, got {len(row)}")
    if layout.time is None:
        t = stamps.parse(*_split_stamp(row[layout.date]))
    else:
        t = stamps.parse(row[layout.date].strip(), row[layout.time].strip())
    o, h, lo, c = (_to_float(row[i], n) for i, n in zip(layout.prices, _PRICES, strict=True))
    return Bar(symbol, timeframe, t, o, h, lo, c, _mt5_volume(row, layout),
               _mt5_spread(row, layout, step))


def _mt5_volume(row: Sequence[str], layout: _Mt5Layout) -> float:
    """Real volume where the broker reports it (exchange-traded symbols), else tick volume:
    FX brokers export Volume as 0. An unparsable real volume rejects the row rather than
    silently falling back to tick volume."""
    volume = 0.0
    if layout.volume is not None:
        volume = _to_float(row[layout.volume], "volume")
    if layout.tickvol is not None and volume <= 0:
        volume = _to_float(row[layout.tickvol], "tickvol")
    return volume


def _mt5_spread(row: Sequence[str], layout: _Mt5Layout, step: float | None) -> float:
    if layout.spread is None or step is None:
        return 0.0
    # Rounded so 20 points of 0.00001 journal as 0.0002, not 0.00020000000000000001.
    return round(_to_float(row[layout.spread], "spread") * step, 12)


def _raw(lines: Sequence[str], lineno: int) -> str:
    return lines[lineno - 1].rstrip("\r") if 0 < lineno <= len(lines) else ""


class _StampParser:
    """Parse broker-time stamps into UTC, each distinct date and time of day only once.

    A year of M15 bars has ~260 dates and 96 times of day, so most rows cost two dict
    lookups and one addition instead of a regex and a ``datetime`` constructor.
    """

    __slots__ = ("_days", "_offset", "_times")

    def __init__(self, offset: timedelta) -> None:
        self._offset = offset
        self._days: dict[str, datetime] = {}
        self._times: dict[str, timedelta] = {}

    def parse(self, date_text: str, time_text: str) -> datetime:
        """Raise ``ValueError`` whose message is the rejection reason."""
        day = self._days.get(date_text)
        if day is None:
            day = self._parse_day(date_text, time_text)
            self._days[date_text] = day
        tod = self._times.get(time_text)
        if tod is None:
            tod = self._parse_time(date_text, time_text)
            self._times[time_text] = tod
        return day + tod

    def _parse_day(self, date_text: str, time_text: str) -> datetime:
        m = _DATE.fullmatch(date_text)
        if m is None:
            raise ValueError(f"unparsable timestamp {_join(date_text, time_text)!r}")
        try:
            return datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC) - self._offset
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"invalid timestamp {_join(date_text, time_text)!r}: {exc}") from None

    def _parse_time(self, date_text: str, time_text: str) -> timedelta:
        if not time_text:
            return timedelta(0)
        m = _TIME_OF_DAY.fullmatch(time_text)
        if m is None:
            raise ValueError(f"unparsable timestamp {_join(date_text, time_text)!r}")
        hours, minutes, seconds = int(m[1]), int(m[2]), int(m[3] or 0)
        if hours > 23 or minutes > 59 or seconds > 59:
            raise ValueError(
                f"invalid timestamp {_join(date_text, time_text)!r}: time of day out of range"
            )
        return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _split_stamp(stamp: str) -> tuple[str, str]:
    date_text, sep, time_text = stamp.strip().partition(" ")
    if not sep:
        date_text, _, time_text = date_text.partition("T")
    return date_text, time_text.strip()


def _join(date_text: str, time_text: str) -> str:
    return f"{date_text} {time_text}" if time_text else date_text


# --------------------------------------------------------------------------- ccxt JSON


def _load_ccxt_json(
    p: Path, text: str, digest: str, symbol: str | None, timeframe: str | None
) -> LoadedBars:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    rows, embedded_symbol, embedded_timeframe = _ccxt_rows(p, doc)
    if not rows:
        raise DataFormatError(f"bar file {p} contains no OHLCV rows")
    sym, tf = _resolve_names(p, symbol, timeframe, embedded_symbol, embedded_timeframe)
    bars: list[Bar] = []
    rejected: list[RawRejection] = []
    for n, row in enumerate(rows, start=1):
        try:
            bars.append(_ccxt_bar(row, sym, tf))
        except ValueError as exc:
            rejected.append(RawRejection(n, str(exc), json.dumps(row)))
    return LoadedBars(
        symbol=sym,
        timeframe=tf,
        bars=tuple(bars),
        rejected=tuple(rejected),
        source=str(p),
        sha256=digest,
        format=FORMAT_CCXT_JSON,
        point=None,
    )


def _ccxt_rows(p: Path, doc: Any) -> tuple[list[Any], str | None, str | None]:
    """The OHLCV rows of a bare list, or of an object's ``ohlcv`` key with the symbol and
    timeframe the object names (``None`` where it names none)."""
    if isinstance(doc, list):
        return doc, None, None
    if not isinstance(doc, dict):
        raise DataFormatError(f"{p}: unknown format: expected a JSON list or object")
    rows = doc.get("ohlcv")
    if not isinstance(rows, list):
        raise DataFormatError(
            f'{p}: unknown format: a JSON object needs an "ohlcv" list of '
            "[ms, open, high, low, close, volume] rows"
        )
    symbol, timeframe = doc.get("symbol"), doc.get("timeframe")
    return (rows, symbol if isinstance(symbol, str) else None,
            timeframe if isinstance(timeframe, str) else None)


def _ccxt_bar(row: Any, symbol: str, timeframe: str) -> Bar:
    """Raise ``ValueError`` whose message is the rejection reason."""
    if not isinstance(row, list):
        raise ValueError(f"expected a list, got {type(row).__name__}")
    if len(row) != 6:
        raise ValueError(
            f"expected 6 values [ms, open, high, low, close, volume], got {len(row)}")
    ms = row[0]
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        raise ValueError(f"unparsable timestamp {ms!r}")
    try:
        t = _EPOCH + timedelta(milliseconds=ms)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"invalid timestamp {ms!r}: {exc}") from None
    o, h, lo, c, v = (_to_float(x, n) for x, n in zip(row[1:], (*_PRICES, "volume"),
                                                      strict=True))
    return Bar(symbol, timeframe, t, o, h, lo, c, v, 0.0)
