"""A swap position's protective exits at the exchange: its stop-loss and take-profit as
conditional orders the exchange holds, so the position stays protected when the daemon,
its machine or the network goes away.

Binance USD-M has taken conditional orders on the Algo Service only since 2025-12-09
(change log, 2025-11-06 entry; ``POST /fapi/v1/order`` answers -4120). ccxt 4.5.90 sends an
order with ``stopLossPrice`` / ``takeProfitPrice`` there as STOP_MARKET /
TAKE_PROFIT_MARKET with ``clientAlgoId`` = our id, and reaches it again (query, cancel,
open list) only with ``{"trigger": True}``. Each leg is:
- ``reduceOnly`` with the entry's filled quantity: it can only shrink the position, so a
  leg left behind never opens one (Binance rejects it at trigger time);
- triggered by the mark price (``workingType`` MARK_PRICE, ``[broker.swap]
  trigger_price``): the mark follows the index of several spot venues, so one venue's
  wick does not stop the position out;
- named deterministically from the entry's client id (``protective_id``: the entry's id
  plus ``sl``/``tp``, 26 characters, within Binance's 36): after a crash the daemon finds
  the legs of any journaled entry by id, without a journal row of its own, and placing a
  leg twice is refused by the exchange (-4116 "ClientOrderId is duplicated." while it is
  open), then found by its id: never two stops for one entry.
A leg whose trigger is already passed is refused with -2021 (``OrderWouldTrigger``): the
position must be closed at once. When a leg fires, the exchange's MARKET order has an id
of its own (``actualOrderId`` on the algo order); ``link_triggered`` maps it to the leg so
the trade history credits its trades to the leg (``ccxt_swap`` then credits them to the
entry, as a ``stop_loss`` / ``take_profit`` exit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import structlog

from domain import OrderSide
from domain.errors import OrderWouldTrigger, PermanentVenueError, VenueError
from executor.brokers.ccxt_errors import Outcome
from executor.brokers.ccxt_exchange import ExchangeReader, ccxt_module
from executor.brokers.ccxt_ids import OrderIds

log = structlog.get_logger("dta.ccxt")

TRIGGER = {"trigger": True}
WORKING_TYPE = {"mark": "MARK_PRICE", "last": "CONTRACT_PRICE"}


class Kind(StrEnum):
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"


_SUFFIX = {Kind.STOP_LOSS: "sl", Kind.TAKE_PROFIT: "tp"}
_PRICE_PARAM = {Kind.STOP_LOSS: "stopLossPrice", Kind.TAKE_PROFIT: "takeProfitPrice"}


def protective_id(entry_client_id: str, kind: Kind) -> str:
    return f"{entry_client_id}{_SUFFIX[kind]}"


def entry_of(client_id: str) -> tuple[str, Kind] | None:
    """The entry's client id and the leg's kind, for a protective id; else None."""
    for kind, suffix in _SUFFIX.items():
        if client_id.endswith(suffix) and len(client_id) > len(suffix):
            return client_id[: -len(suffix)], kind
    return None


@dataclass(frozen=True, slots=True)
class Leg:
    """One protective order as we know it. ``status``: open (held by the exchange),
    filled (fired and traded), cancelled, expired (fired with nothing to reduce),
    would_trigger (refused: the price is already past it), failed (refused otherwise),
    unknown (no answer: look it up by ``client_id``), absent (the exchange never saw it:
    not followed any more)."""

    client_id: str
    kind: Kind
    symbol: str
    side: OrderSide
    volume: float
    trigger: float
    status: str
    exchange_id: str | None = None
    actual_order_id: str | None = None
    reason: str = ""


_STATUS = {"NEW": "open", "TRIGGERING": "open", "TRIGGERED": "filled", "FINISHED": "filled",
           "CANCELED": "cancelled", "CANCELLED": "cancelled", "EXPIRED": "expired",
           "REJECTED": "failed"}


class SwapProtection:
    def __init__(self, reader: ExchangeReader, ids: OrderIds, trigger_price: str) -> None:
        self._reader = reader
        self.exchange = reader.exchange
        self._ids = ids
        self._working_type = WORKING_TYPE[trigger_price]
        self.legs: dict[str, Leg] = {}  # by client id, as last seen

    def place(self, symbol: str, kind: Kind, side: OrderSide, volume: float, trigger: float,
              client_id: str) -> Leg:
        """Send one leg; its outcome is the leg's status, never an error."""
        leg = Leg(client_id, kind, symbol, side, volume, trigger, "unknown")
        self._ids.symbol_of[client_id] = symbol
        amount = float(self.exchange.amount_to_precision(symbol, volume))
        params = {"clientOrderId": client_id, "reduceOnly": True,
                  "workingType": self._working_type, _PRICE_PARAM[kind]: trigger}
        try:
            sent = self._reader.call(f"place {kind.value}", self.exchange.create_order,
                                     symbol, "market", side.value, amount, None, params)
        except OrderWouldTrigger as exc:
            leg = replace(leg, status="would_trigger", reason=str(exc))
        except PermanentVenueError as exc:
            leg = replace(leg, status="failed", reason=str(exc))
        except VenueError as exc:  # no answer, a duplicate id: the exchange knows
            found = self.find(client_id, symbol)
            leg = found if found is not None else replace(leg, reason=str(exc))
        else:
            leg = replace(leg, status="open", exchange_id=str((sent or {}).get("id")))
        self.legs[client_id] = leg
        log.info("swap_protective_order", client_id=client_id, kind=kind.value,
                 status=leg.status, trigger=trigger, reason=leg.reason[:200])
        return leg

    def find(self, client_id: str, symbol: str) -> Leg | None:
        """The leg as the exchange has it now; None when the exchange never saw it."""
        c = ccxt_module()
        try:
            o = self._reader.read("fetch_order", self.exchange.fetch_order, None, symbol,
                                  {**TRIGGER, "clientOrderId": client_id})
        except c.OrderNotFound:
            return None
        leg = _leg(o, symbol)
        self.legs[client_id] = leg
        if leg.actual_order_id:  # it fired: its trades are this leg's, whoever asked
            self._ids.coid_of[leg.actual_order_id] = client_id
        return leg

    def cancel(self, client_id: str, symbol: str) -> bool:
        """Cancel a leg; False when the exchange no longer holds it (fired, cancelled)."""
        done = self._reader.call("cancel protective order", self.exchange.cancel_order,
                                 None, symbol, {**TRIGGER, "clientOrderId": client_id},
                                 ok=(Outcome.NOT_FOUND,))
        if client_id in self.legs:
            self.legs[client_id] = replace(self.legs[client_id], status="cancelled")
        return done is not None

    def open_legs(self, symbol: str) -> list[Leg]:
        """Every conditional order open on ``symbol``, ours (a protective id) or not."""
        rows = self._reader.read("fetch_open_orders", self.exchange.fetch_open_orders,
                                 symbol, None, None, dict(TRIGGER))
        return [_leg(o, symbol) for o in rows]

    def link_triggered(self, symbol: str) -> list[Leg]:
        """Legs of ``symbol`` that fired since last seen, their exchange order mapped to
        the leg's id so the trade history credits the trades to it."""
        fired = []
        for cid, leg in list(self.legs.items()):
            if leg.symbol != symbol or leg.status not in ("open", "unknown"):
                continue
            try:
                now = self.find(cid, symbol)
            except Exception as exc:  # one leg's lookup never stops the poll
                log.warning("protective_lookup_failed", client_order_id=cid,
                            error=str(exc)[:200])
                continue
            if now is None:  # the exchange never saw it: nothing to follow, every bar
                self.legs[cid] = replace(leg, status="absent")
            elif now.actual_order_id:  # linked by ``find``
                fired.append(now)
        return fired


def _leg(o: Mapping[str, Any], symbol: str) -> Leg:
    info: Mapping[str, Any] = o.get("info") or {}
    cid = str(o.get("clientOrderId") or "")
    found = entry_of(cid)
    kind = found[1] if found else (
        Kind.TAKE_PROFIT if str(info.get("orderType", "")).startswith("TAKE") else
        Kind.STOP_LOSS)
    actual = str(info.get("actualOrderId") or "") or None
    return Leg(cid, kind, symbol, OrderSide(str(o.get("side") or "sell")),
               float(o.get("amount") or 0.0), float(o.get("triggerPrice") or 0.0),
               _STATUS.get(str(info.get("algoStatus")), "unknown"),
               exchange_id=str(o.get("id")) if o.get("id") is not None else None,
               actual_order_id=actual)
