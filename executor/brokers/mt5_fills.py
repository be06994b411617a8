"""Our MT5 deals as fills, each reported once.

A deal of ours carries our magic; the deal that opens a position carries our comment. An
SL/TP exit or a stop-out is a server deal whose comment is the server's (``[sl x]``), so
it is attributed to the order that opened the position (its ``DEAL_ENTRY_IN`` deal), and
its kind says what closed it. Fill ids already journaled are seeded at ``restore`` and by
start-up reconciliation, so a restart never reports one twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from domain import Fill, OrderSide
from executor.brokers import mt5_client as C
from executor.brokers.base import BrokerFill
from executor.brokers.mt5_client import Mt5Client
from executor.brokers.mt5_ids import OrderMarks

# The history window from ``since`` (aware UTC), in server epoch seconds.
Window = Callable[[datetime], tuple[int, int]]


class Mt5Fills:
    def __init__(self, client: Mt5Client, marks: OrderMarks, *, window: Window,
                 to_utc: Callable[[float], datetime]) -> None:
        self.client = client
        self._marks = marks
        self._window = window
        self._to_utc = to_utc
        self.seen: set[str] = set()  # fill ids reported or journaled
        self.last_poll: datetime | None = None

    def restore(self, fills: Sequence[Fill]) -> None:
        self.seen.update(f.fill_id for f in fills)
        if fills:
            self.last_poll = max(f.time for f in fills)

    def unreported(self, polled: Sequence[BrokerFill]) -> list[BrokerFill]:
        """The fills not reported yet, now marked reported."""
        fills = [f for f in polled if f.fill.fill_id not in self.seen]
        for f in fills:
            self.seen.add(f.fill.fill_id)
        return fills

    def recent(self, since: datetime) -> list[BrokerFill]:
        """Our deals since ``since`` (aware UTC), oldest first; SL/TP exits are attributed
        to the order that opened the position (their comment is the server's ``[sl x]``)."""
        marks = self._marks
        lo, hi = self._window(since)
        deals = [d for d in self.client.history_deals_get(lo, hi) if marks.ours(d)
                 and int(d.get("type", -1)) in (C.DEAL_TYPE_BUY, C.DEAL_TYPE_SELL)]
        deals.sort(key=lambda d: (int(d.get("time_msc") or 0), int(d["ticket"])))
        opener: dict[int, str] = {}
        for d in deals:
            if int(d.get("entry", -1)) == C.DEAL_ENTRY_IN:
                coid = marks.client_id_of(d)
                if coid:
                    opener.setdefault(int(d["position_id"]), coid)
        out: list[BrokerFill] = []
        for d in deals:
            t = self._to_utc(float(d["time"]))
            if t < since:
                continue
            coid = self._deal_client_id(d, opener)
            if coid is None:
                continue
            out.append(self._broker_fill(d, coid, t))
        return out

    def _deal_client_id(self, d: dict[str, Any], opener: dict[int, str]) -> str | None:
        own = self._marks.client_id_of(d)
        if own:
            return own
        pid = int(d.get("position_id") or 0)
        if pid in opener:
            return opener[pid]
        for entry in self.client.history_deals_get(position=pid):
            if int(entry.get("entry", -1)) == C.DEAL_ENTRY_IN:
                coid = self._marks.client_id_of(entry)
                if coid:
                    opener[pid] = coid
                    return coid
        return None

    def _broker_fill(self, d: dict[str, Any], coid: str, t: datetime) -> BrokerFill:
        side = OrderSide.BUY if int(d["type"]) == C.DEAL_TYPE_BUY else OrderSide.SELL
        reason = int(d.get("reason", -1))
        if self._marks.client_id_of(d) == coid:
            kind = "entry"  # the order's own execution (opening or reducing)
        elif reason == C.DEAL_REASON_SL:
            kind = "stop_loss"
        elif reason == C.DEAL_REASON_TP:
            kind = "take_profit"
        else:
            kind = "close"  # e.g. a stop-out, attributed to the order that opened it
        cost = 0.0 - (float(d.get("commission") or 0.0) + float(d.get("fee") or 0.0))
        fill = Fill(coid, f"mt5:{d['ticket']}", str(d["symbol"]), side, t, float(d["price"]),
                    float(d["volume"]), cost)
        return BrokerFill(fill, kind, float(d.get("profit") or 0.0), None)
