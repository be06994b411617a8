"""Where a leveraged perpetual position is liquidated: the venue's margin terms and its
documented estimate of the liquidation price.

A perpetual swap is closed by the exchange, not by our stop, once its margin falls to the
maintenance margin. A stop placed beyond that price never fires: the position is gone
first, at a worse price and with a liquidation fee. So before an entry is sent, the
guardrails estimate the new position's liquidation price from these terms
(``guardrails.limits.StopBeforeLiquidationCheck``).

Binance USDⓈ-M, "How to Calculate Liquidation Price of USDⓈ-M Contracts" (binance.com
support FAQ b3c689c1f50a44cabb3a84e663b81d93), one-way mode:

    LP = (WB - TMM1 + UPNL1 + cum - Side * |Q| * EP) / (|Q| * MMR - Side * |Q|)

WB the wallet balance backing the position (isolated: the position's isolated wallet),
TMM1 / UPNL1 the maintenance margin and unrealised PnL of the *other* cross positions
(0 when isolated), Side +1 long / -1 short, Q the size, EP the entry price, MMR and cum
(the "maintenance amount") from the notional bracket of the position ("Notional and
Leverage Brackets", ``GET /fapi/v1/leverageBracket``: cum_n = cum_{n-1} + floor_n x
(mmr_n - mmr_{n-1})). The FAQ adds: when the notional at the liquidation price falls in
another bracket than at entry, recompute with that bracket's MMR and cum.

The estimate here is the isolated one with WB = the position's initial margin
(|Q| x EP / leverage: what Binance moves into the isolated wallet when the position
opens, adding to it for every fill that grows it). For a cross-margin account it is the
conservative bound: cross margin backs the position with the whole cross wallet, at
least the initial margin while the account can open it, so its liquidation price lies
at or beyond the isolated one - unless other cross positions lose meanwhile, which no
check at entry can foresee. Not modelled: the isolated wallet shrinking by funding paid
or a closing fee, and margin added by hand; the guardrail's buffer covers the first two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MaintenanceTier:
    """One notional bracket: from ``floor`` up to ``cap`` (quote currency) the maintenance
    margin is notional x ``rate`` - ``amount``."""

    floor: float
    cap: float
    rate: float
    amount: float


@dataclass(frozen=True, slots=True)
class MarginTerms:
    """What the liquidation price of a symbol's position depends on at the venue.

    ``contract_size``: base units per lot of our volumes (1 for ccxt, whose amounts are
    base units). ``tiers`` empty: unknown (the venue could not say), which the guardrail
    treats as a reason not to trade rather than as no risk."""

    leverage: float
    isolated: bool
    tiers: tuple[MaintenanceTier, ...]
    contract_size: float = 1.0

    @property
    def known(self) -> bool:
        return self.leverage >= 1 and bool(self.tiers)

    def tier(self, notional: float) -> MaintenanceTier:
        """The bracket holding ``notional`` (the last one above every cap)."""
        for t in self.tiers:
            if abs(notional) < t.cap:
                return t
        return self.tiers[-1]


UNKNOWN_TERMS = MarginTerms(leverage=0.0, isolated=True, tiers=())


def tiers_from(brackets: Sequence[tuple[float, float, float]]) -> tuple[MaintenanceTier, ...]:
    """Tiers from (floor, cap, rate) brackets in notional order, each maintenance amount
    derived by the documented recurrence rather than read: ccxt's unified leverage tiers
    carry the rate, not the amount."""
    out: list[MaintenanceTier] = []
    amount = prev_rate = 0.0
    for floor, cap, rate in sorted(brackets):
        amount += floor * (rate - prev_rate) if out else 0.0
        out.append(MaintenanceTier(floor, cap, rate, amount))
        prev_rate = rate
    return tuple(out)


def _isolated(side: int, size: float, entry: float, leverage: float,
              tier: MaintenanceTier) -> float:
    wallet = size * entry / leverage
    return (wallet + tier.amount - side * size * entry) / (size * tier.rate - side * size)


def liquidation_price(terms: MarginTerms, side: int, size: float, entry: float) -> float:
    """The estimated liquidation price of a one-way position of ``size`` base units
    (``side`` +1 long, -1 short) opened at ``entry`` under ``terms`` (see the module's
    docstring). 0.0 for a long no price above zero liquidates. Of the brackets at entry
    and at the liquidation price, the one giving the price nearer the entry counts."""
    if not terms.known or size <= 0 or entry <= 0 or side not in (1, -1):
        raise ValueError("liquidation price needs known terms, a size, an entry and a side")
    at_entry = terms.tier(size * entry)
    price = _isolated(side, size, entry, terms.leverage, at_entry)
    at_liq = terms.tier(size * max(price, 0.0))
    if at_liq != at_entry:
        other = _isolated(side, size, entry, terms.leverage, at_liq)
        price = max(price, other) if side > 0 else min(price, other)
    return max(price, 0.0)
