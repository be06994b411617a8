"""MT5 positions as ours: netted per symbol, and the tickets an opposite order must name.

On a hedging account tickets on both sides of a symbol may be open at once (ours are only
if someone else opened or closed them). The net is a position's ``volume`` and every
ticket's lots its ``gross_volume``, so a hedged book shows even when it nets to flat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from domain import OrderSide, Position
from executor.brokers import mt5_client as C


def net_positions(items: Iterable[dict[str, Any]],
                  opener: Callable[[str], str | None]) -> dict[str, Position]:
    """``positions_get`` rows netted per symbol; ``opener`` reads a ticket's comment as
    the client id of the order that opened it."""
    acc: dict[str, list[tuple[float, float, dict[str, Any]]]] = {}
    for p in items:
        sign = 1.0 if int(p.get("type", 0)) == C.POSITION_TYPE_BUY else -1.0
        acc.setdefault(str(p["symbol"]), []).append(
            (sign * float(p["volume"]), float(p["price_open"]), p))
    out: dict[str, Position] = {}
    for symbol, rows in acc.items():
        net = round(sum(v for v, _, _ in rows), 8)
        gross = round(sum(abs(v) for v, _, _ in rows), 8)
        if gross < 1e-12:
            continue
        same = [(v, px) for v, px, _ in rows if (v > 0) == (net > 0)]
        avg = (sum(abs(v) * px for v, px in same) / sum(abs(v) for v, _ in same)
               if abs(net) >= 1e-12 else 0.0)
        first = rows[0][2]
        out[symbol] = Position(symbol, volume=0.0 if abs(net) < 1e-12 else net, avg_price=avg,
                               stop_loss=float(first.get("sl") or 0.0) or None,
                               take_profit=float(first.get("tp") or 0.0) or None,
                               opened_by=opener(str(first.get("comment", ""))),
                               gross_volume=gross if len(rows) > 1 else None)
    return out


def opposite_type(side: OrderSide) -> int:
    """The POSITION_TYPE_* an order of ``side`` reduces."""
    return C.POSITION_TYPE_SELL if side is OrderSide.BUY else C.POSITION_TYPE_BUY


def tickets_to_close(ours: Iterable[dict[str, Any]], side: OrderSide,
                     volume: float) -> list[tuple[int, float]]:
    """On a hedging account, the tickets of ours (``ours``: our positions of the symbol)
    an order must close first, oldest first, with the lots to take off each, so the
    account ends where a netting account would: reduced, closed or reversed, never long
    and short at once."""
    want = opposite_type(side)
    tickets = sorted((p for p in ours if int(p.get("type", -1)) == want),
                     key=lambda p: (int(p.get("time_msc") or 0), int(p["ticket"])))
    out: list[tuple[int, float]] = []
    left = volume
    for p in tickets:
        if left <= 1e-9:
            break
        take = round(min(left, float(p["volume"])), 8)
        out.append((int(p["ticket"]), take))
        left = round(left - take, 8)
    return out
