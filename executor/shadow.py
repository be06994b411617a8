"""Shadow mode: run the whole pipeline beside the desk's Expert Advisor, send nothing, and
pair what we would have done with what the EA did.

- ``ShadowBroker`` is the paper fill model under another name: intents are "filled"
  virtually so the shadow record has trades, R-multiples and drawdown, but no request ever
  leaves the process.
- An ``EaSource`` yields the EA's deals (MT5 history by the EA's magic number, or a CSV
  export of it); the executor journals them each cycle.
- ``pair`` matches each of our entries with the EA's nearest entry on the same symbol
  within a time window, and ``summarize`` turns pairs into the figures a desk decides on.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import mean, median
from typing import Any, Protocol

from domain.errors import DataFormatError
from executor.brokers.paper import PaperBroker


@dataclass(frozen=True, slots=True)
class EaDeal:
    """One EA deal (MT5 ``history_deals_get`` shape, reduced). ``entry`` is ``in`` for a
    deal that opens or adds, ``out`` for one that closes."""

    ticket: int
    symbol: str
    time: datetime
    side: str  # buy | sell
    price: float
    volume: float
    entry: str = "in"
    sl: float | None = None
    tp: float | None = None
    magic: int = 0
    comment: str = ""


class EaSource(Protocol):
    def ea_deals(self, since: datetime | None, until: datetime) -> list[EaDeal]: ...


class ShadowBroker(PaperBroker):
    """Virtual fills only. Named so journal rows and `dta status` say what happened."""

    name = "shadow"
    simulated = True


class CsvEaSource:
    """EA deals from a CSV export: ticket,time,symbol,side,price,volume,entry,sl,tp,magic,
    comment (time ISO-8601; naive times are broker server time, shifted by the offset)."""

    def __init__(self, path: Path, *, magic: int | None = None,
                 server_utc_offset_hours: float = 0.0) -> None:
        self.deals = sorted(_read_deals(path, magic, server_utc_offset_hours),
                            key=lambda d: (d.time, d.ticket))

    def ea_deals(self, since: datetime | None, until: datetime) -> list[EaDeal]:
        return [d for d in self.deals if (since is None or d.time > since) and d.time <= until]


def _read_deals(path: Path, magic: int | None, offset: float) -> Iterable[EaDeal]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    t = datetime.fromisoformat(row["time"])
                    if t.tzinfo is None:
                        t = (t - timedelta(hours=offset)).replace(tzinfo=UTC)
                    deal = EaDeal(
                        ticket=int(row["ticket"]), symbol=row["symbol"], time=t.astimezone(UTC),
                        side=row["side"].strip().lower(), price=float(row["price"]),
                        volume=float(row["volume"]), entry=(row.get("entry") or "in").lower(),
                        sl=_opt(row.get("sl")), tp=_opt(row.get("tp")),
                        magic=int(row.get("magic") or 0), comment=row.get("comment") or "")
                except (KeyError, ValueError) as exc:
                    raise DataFormatError(f"{path}:{line}: bad EA deal row: {exc}") from None
                if deal.side not in ("buy", "sell"):
                    raise DataFormatError(f"{path}:{line}: side must be buy or sell")
                if magic is None or deal.magic == magic:
                    yield deal
    except FileNotFoundError:
        raise DataFormatError(f"EA deals file {path} does not exist") from None


class Mt5EaSource:
    """The EA's deals straight from the MT5 terminal (``history_deals_get`` over our bridge),
    by the EA's magic number; never our own (``own_magic``). MT5 stamps deals in broker
    server time: shifted to UTC here, at the edge."""

    def __init__(self, client: Any, *, ea_magic: int | None, own_magic: int,
                 server_utc_offset_hours: float = 0.0, lookback_days: int = 7) -> None:
        self.client = client
        self.ea_magic = ea_magic
        self.own_magic = own_magic
        self.offset = timedelta(hours=server_utc_offset_hours)
        self.lookback = timedelta(days=lookback_days)

    def ea_deals(self, since: datetime | None, until: datetime) -> list[EaDeal]:
        start = since if since is not None else until - self.lookback
        rows = self.client.history_deals_get(start + self.offset, until + self.offset)
        out = []
        for d in rows:
            magic = int(d.get("magic", 0))
            if magic == self.own_magic or (self.ea_magic is not None and magic != self.ea_magic):
                continue
            if int(d.get("type", -1)) not in (0, 1):  # balance, credit...: not trades
                continue
            t = datetime.fromtimestamp(int(d["time"]), UTC) - self.offset
            if since is not None and t <= since:
                continue
            out.append(EaDeal(
                ticket=int(d["ticket"]), symbol=str(d["symbol"]), time=t,
                side="buy" if int(d["type"]) == 0 else "sell", price=float(d["price"]),
                volume=float(d["volume"]), entry="in" if int(d.get("entry", 0)) == 0 else "out",
                magic=magic, comment=str(d.get("comment", ""))))
        return sorted(out, key=lambda x: (x.time, x.ticket))


def _opt(text: str | None) -> float | None:
    return float(text) if text not in (None, "", "0", "0.0") else None


@dataclass(frozen=True, slots=True)
class OurEntry:
    client_order_id: str
    symbol: str
    time: datetime  # decision time (bar close)
    side: str
    price: float  # the market at decision time (bar close)
    sl: float | None
    tp: float | None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pair:
    ours: OurEntry | None
    ea: EaDeal | None

    @property
    def matched(self) -> bool:
        return self.ours is not None and self.ea is not None

    @property
    def direction_agrees(self) -> bool:
        return self.matched and self.ours.side == self.ea.side  # type: ignore[union-attr]

    @property
    def timing_s(self) -> float | None:
        if not self.matched:
            return None
        return (self.ea.time - self.ours.time).total_seconds()  # type: ignore[union-attr]

    @property
    def entry_diff(self) -> float | None:
        return self.ea.price - self.ours.price if self.matched else None  # type: ignore[union-attr]

    @property
    def slippage(self) -> float | None:
        """The EA's fill against the market we decided on, signed so positive is worse
        for the EA (paid up on a buy, sold lower on a sell)."""
        if not self.matched:
            return None
        sign = 1.0 if self.ea.side == "buy" else -1.0  # type: ignore[union-attr]
        return sign * (self.ea.price - self.ours.price)  # type: ignore[union-attr]

    @property
    def structure_agrees(self) -> bool | None:
        """Did the EA act on the same structure event? Read from the EA's comment (BOS,
        SMS/CHoCH) against our proposal's tags; None when the EA says nothing."""
        if not self.matched:
            return None
        comment = self.ea.comment.lower()  # type: ignore[union-attr]
        ea_kind = "bos" if "bos" in comment else "choch" if ("sms" in comment or
                                                             "choch" in comment) else None
        if ea_kind is None:
            return None
        return any(tag.startswith(ea_kind) for tag in self.ours.tags)  # type: ignore[union-attr]


def pair(ours: Sequence[OurEntry], deals: Sequence[EaDeal], *,
         window: timedelta = timedelta(hours=1)) -> list[Pair]:
    """Greedy nearest-in-time matching per symbol; each side is used at most once."""
    entries = sorted((d for d in deals if d.entry == "in"), key=lambda d: d.time)
    used: set[int] = set()
    pairs: list[Pair] = []
    for o in sorted(ours, key=lambda o: o.time):
        best: EaDeal | None = None
        for d in entries:
            if d.ticket in used or d.symbol != o.symbol:
                continue
            gap = abs((d.time - o.time).total_seconds())
            if gap <= window.total_seconds() and (
                    best is None or gap < abs((best.time - o.time).total_seconds())):
                best = d
        if best is not None:
            used.add(best.ticket)
        pairs.append(Pair(o, best))
    pairs.extend(Pair(None, d) for d in entries if d.ticket not in used)
    return pairs


def summarize(pairs: Sequence[Pair]) -> dict[str, Any]:
    matched = [p for p in pairs if p.matched]
    ours = sum(1 for p in pairs if p.ours is not None)
    eas = sum(1 for p in pairs if p.ea is not None)

    def stats(values: list[float]) -> dict[str, float] | None:
        return {"mean": mean(values), "median": median(values)} if values else None

    structure = [p.structure_agrees for p in matched if p.structure_agrees is not None]
    return {
        "our_entries": ours,
        "ea_entries": eas,
        "matched": len(matched),
        "only_ours": ours - len(matched),
        "only_ea": eas - len(matched),
        "direction_agreement": (sum(p.direction_agrees for p in matched) / len(matched)
                                if matched else None),
        "timing_s": stats([p.timing_s for p in matched if p.timing_s is not None]),
        "entry_diff": stats([p.entry_diff for p in matched if p.entry_diff is not None]),
        "slippage": stats([p.slippage for p in matched if p.slippage is not None]),
        "sl_diff": stats(_level_diffs(matched, "sl")),
        "tp_diff": stats(_level_diffs(matched, "tp")),
        "structure_agreement": (sum(structure) / len(structure)) if structure else None,
    }


def _level_diffs(matched: Sequence[Pair], level: str) -> list[float]:
    """EA minus ours for the stop (``sl``) or target (``tp``), where both have one."""
    out = []
    for p in matched:
        ea = getattr(p.ea, level, None)
        ours = getattr(p.ours, level, None)
        if ea is not None and ours is not None:
            out.append(float(ea) - float(ours))
    return out
