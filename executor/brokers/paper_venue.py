"""The venue a paper account trades like (``[paper] venue``), and the trigger rule its
protective exits share.

A paper result is only worth having when live trading can reproduce it, so the simulator
refuses and charges what the configured venue refuses and charges (issue 19). What each
venue does, from its documentation:

- ``mt5-netting`` (the default; the simulator as it always was): one position per symbol
  ("only one common position for a symbol", MQL5 book, account_netting_hedge); a deal in
  the same direction adds to it and its SL/TP replace the position's; the SL/TP are held
  by the position, checked on every bar from the fill bar on. No commission unless
  ``fee_rate`` says so.
- ``mt5-hedging``: "you can open several positions for a symbol": every entry is a ticket
  with its own open price, SL and TP. The daemon's MT5 adapter closes its opposite
  tickets by naming them, oldest first, before it opens what is left
  (``mt5_orders._hedge_closes``), so our account never holds our long and short at once;
  paper does the same, and reports the lots over every ticket as ``gross_volume``.
- ``spot`` (Binance spot): no shorts, and a sell the account's *free* balance cannot
  cover is refused: -2010 "Account has insufficient balance for requested action."
  ("Error codes for Binance"). A sell larger than our holding is cut to it, as the live
  adapter cuts it (``ccxt_orders._sell_amount``): the fee leaves a little less than was
  bought. Commission, 0.1 % taker by default, "is always charged in the asset you
  receive" (Binance FAQ "What is Binance Spot Trading Fee and How to Calculate"): in the
  base asset for a buy (reported as a ``fee`` fill selling that much base, as the live
  adapter reports it), in the quote for a sell. Protective exits are orders of their own
  placed after the fill: one OCO per entry ("activation of one order immediately cancels
  the other", both legs of one quantity, "New Order list - OCO"), whose quantity must be
  free and stays ``locked`` while it works (account balances ``free`` / ``locked``).
- ``swap`` (Binance USD-M linear perpetual, one-way): shorts; commission in USDT, 0.05 %
  taker by default ("USDⓈ-M Futures Trading Fee"); funding "every 8 hours at 00:00 UTC;
  08:00 UTC and 16:00 UTC", "Funding Amount = Nominal Value of Positions x Funding Rate",
  only on a position open at that time, a positive rate meaning longs pay shorts
  ("Introduction to Binance Futures Funding Rates"; the interest part alone is 0.01 % per
  interval, the default rate here). Protective exits are reduce-only conditional orders of
  their own: each can only shrink the position, one that fires with nothing to reduce
  expires, and one left after its position closed stays working until cancelled.
- Every venue refuses an exit that is already past the price: MT5 answers
  TRADE_RETCODE_INVALID_STOPS (10016) to an entry whose SL/TP is on the wrong side, Binance
  -2021 "Order would immediately trigger." to such a conditional order.

Paper knows bar prices only: the last close stands for the market at a send, triggers are
judged against the bar's high and low (Binance's mark price is not modelled), and funding
is valued at the open of the bar the funding time falls in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from domain import Bar, OrderSide

VenueKind = Literal["mt5-netting", "mt5-hedging", "spot", "swap"]
VENUES: tuple[str, ...] = get_args(VenueKind)
# Taker commission without a discount token: MT5 brokers charge per deal as they like (none
# unless configured), Binance spot 0.1 %, USD-M 0.05 % at VIP 0.
_TAKER = {"mt5-netting": 0.0, "mt5-hedging": 0.0, "spot": 0.001, "swap": 0.0005}
FUNDING_RATE = 0.0001  # Binance's fixed interest part per 8 h interval, no premium
FUNDING_HOURS = (0, 8, 16)

INSUFFICIENT = "-2010 Account has insufficient balance for requested action."
WOULD_TRIGGER = "-2021 Order would immediately trigger."
REDUCE_ONLY = "-2022 ReduceOnly Order is rejected."
INVALID_STOPS = "TRADE_RETCODE_INVALID_STOPS 10016"
EPS = 1e-12


@dataclass(frozen=True, slots=True)
class PaperVenue:
    kind: VenueKind = "mt5-netting"
    fee_rate: float = 0.0  # of the notional, per fill
    funding_rate: float = 0.0  # per 8 h funding interval (swap only)

    @classmethod
    def of(cls, kind: VenueKind, *, fee_rate: float | None = None,
           funding_rate: float = FUNDING_RATE) -> PaperVenue:
        """The venue with its documented default commission unless ``fee_rate`` is set."""
        if kind not in VENUES:
            raise ValueError(f"paper venue {kind!r} is not one of {', '.join(VENUES)}")
        return cls(kind, _TAKER[kind] if fee_rate is None else fee_rate,
                   funding_rate if kind == "swap" else 0.0)

    @property
    def hedging(self) -> bool:
        return self.kind == "mt5-hedging"

    @property
    def spot(self) -> bool:
        return self.kind == "spot"

    @property
    def holds_shorts(self) -> bool:
        return self.kind != "spot"

    @property
    def separate_protection(self) -> bool:
        """Exits are orders the daemon places after the fill, not the position's SL/TP."""
        return self.kind in ("spot", "swap")

    def commission(self, side: OrderSide, price: float, volume: float,
                   contract_size: float) -> tuple[float, float]:
        """(the fee's value in the quote currency, the lots of base asset it takes)."""
        return price * volume * contract_size * self.fee_rate, self.fee_in_base(side, volume)

    def fee_in_base(self, side: OrderSide, volume: float) -> float:
        """Lots of base asset a fill's commission takes: a spot buy's ("the asset you
        receive"); none elsewhere."""
        return volume * self.fee_rate if self.spot and side is OrderSide.BUY else 0.0

    def funding_times(self, start: datetime, end: datetime) -> list[datetime]:
        """The funding times in [start, end) (none but on a swap)."""
        if self.kind != "swap" or end <= start:
            return []
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        out: list[datetime] = []
        while day < end:
            out.extend(t for h in FUNDING_HOURS
                       if start <= (t := day + timedelta(hours=h)) < end)
            day += timedelta(days=1)
        return out

    def stops_refused(self, kind: str, level: float, price: float) -> str:
        """Why an exit already past the price is refused, in the venue's words."""
        if self.kind.startswith("mt5"):
            return (f"invalid stops (SL/TP too close or on the wrong side): the {kind} "
                    f"{level:g} is past the price {price:g} ({INVALID_STOPS})")
        return (f"would trigger immediately: the {kind} {level:g} is past the last price "
                f"{price:g} ({WOULD_TRIGGER})")


def would_trigger(kind: str, exit_side: OrderSide, level: float, price: float) -> bool:
    """A stop fires when the price moves against the position it protects, a target when
    it moves in favour: a sell stop at or below its level, a sell target at or above it;
    a buy mirrored (the USD-M fake's ``fires``)."""
    below = price <= level
    if kind == "stop_loss":
        return below if exit_side is OrderSide.SELL else price >= level
    return price >= level if exit_side is OrderSide.SELL else below


def trigger_price(kind: str, exit_side: OrderSide, level: float, bar: Bar) -> float | None:
    """Where an exit at ``level`` fills in ``bar``, or None when the bar does not reach it:
    at the level, or at the open when the bar opens beyond it (a gap)."""
    low = (kind == "stop_loss") == (exit_side is OrderSide.SELL)  # reached from above
    if not would_trigger(kind, exit_side, level, bar.low if low else bar.high):
        return None
    return min(bar.open, level) if low else max(bar.open, level)
