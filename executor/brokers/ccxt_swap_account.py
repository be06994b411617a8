"""A perpetual-swap account: set up and verified at start, positions read from the exchange.

Unlike spot, a swap account holds positions the exchange reports (``fetch_positions``:
Binance USD-M "Position Information V3", one net row per symbol in one-way mode), so the
exchange is the book: no position is rebuilt from fills.

Start-up (``configure``), before anything trades, for the account as ``[broker.swap]``
asks:
- **one-way position mode** (``fetch_position_mode``: ``GET /fapi/v1/positionSide/dual``).
  A hedge-mode account is refused, not switched: Binance refuses the switch while any
  position or open order exists (-4068/-4067), and the mode is account-wide, so it would
  change how every other client of the account trades.
- **margin mode** per symbol (``set_margin_mode``: ``POST /fapi/v1/marginType``; "No need
  to change margin type." -4046 is success), then read back (``fetch_margin_mode``:
  ``GET /fapi/v1/symbolConfig``). It cannot change while the symbol has a position or
  open orders (-4048/-4047): the read-back then disagrees and the start is refused, naming
  the symbol, what it is and what the settings ask.
- **leverage** per symbol (``set_leverage``: ``POST /fapi/v1/leverage``), read back the
  same way (``fetch_leverage``).
A disagreement is a ``ConfigError`` (exit 2: nothing started); a venue that cannot answer
raises its ``VenueError`` (the service restarts and tries again).

Funding (``funding``): every 8 hours a perpetual's longs and shorts pay each other the
funding rate on their notional ("Get Income History", ``GET /fapi/v1/income`` with
``incomeType`` FUNDING_FEE, what ccxt's ``fetch_funding_history`` reads): a cost of holding
the position that no order of ours shows, read per symbol with its exchange id
(``tranId``) so a payment seen twice is recognisable.

Margin terms (``margin_terms``): the leverage and margin mode verified at start and the
symbol's maintenance brackets ("Notional and Leverage Brackets", ``GET
/fapi/v1/leverageBracket``, ccxt's ``fetch_leverage_tiers``), read once for every traded
symbol: what the stop-to-liquidation guardrail estimates the new position's liquidation
price from (``domain.margin``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from domain import Position
from domain.errors import ConfigError, PermanentVenueError, VenueError
from domain.margin import MaintenanceTier, MarginTerms, tiers_from
from executor.brokers.ccxt_errors import Outcome
from executor.brokers.ccxt_exchange import ExchangeReader
from executor.brokers.config import SwapSettings

log = structlog.get_logger("dta.ccxt")


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One funding settlement: ``amount`` received (negative: paid), in ``currency``."""

    payment_id: str
    symbol: str
    time: datetime
    amount: float
    currency: str


class SwapAccount:
    def __init__(self, reader: ExchangeReader, settings: SwapSettings,
                 symbols: Sequence[str]) -> None:
        self._reader = reader
        self.exchange = reader.exchange
        self.settings = settings
        self.symbols = tuple(symbols)
        self._liquidation: dict[str, float | None] = {}
        self._tiers: dict[str, tuple[MaintenanceTier, ...]] = {}

    # ------------------------------------------------------------------ start-up

    def configure(self) -> str:
        """Set the account up as the settings ask and read it back; a line for the log."""
        if not self.symbols:
            raise ConfigError("swap account: no symbols to trade")
        self._reader.ensure_markets()
        self._check_one_way()
        for symbol in self.symbols:
            self._margin_mode(symbol)
            self._leverage(symbol)
        line = (f"{self._reader.name}: one-way mode; {self.settings.margin_mode} margin, "
                f"leverage {self.settings.leverage} on {', '.join(self.symbols)}")
        log.info("swap_account_configured", detail=line)
        return line

    def _check_one_way(self) -> None:
        mode = self._reader.read("fetch_position_mode", self.exchange.fetch_position_mode,
                                 self.symbols[0])
        if mode.get("hedged") is not False:
            raise ConfigError(
                f"{self._reader.name}: the account is in hedge position mode "
                f"(dualSidePosition={mode.get('info')}); dta trades one-way mode only. "
                "Switch it in the exchange's preferences (it needs no position or open "
                "order), then start again")

    def _margin_mode(self, symbol: str) -> None:
        want = self.settings.margin_mode
        refused = self._change("set_margin_mode", self.exchange.set_margin_mode, want, symbol)
        got = self._reader.read("fetch_margin_mode", self.exchange.fetch_margin_mode,
                                symbol).get("marginMode")
        if got != want:
            raise ConfigError(
                f"{self._reader.name} {symbol}: margin mode is {got}, [broker.swap] asks "
                f"{want}{refused}. It cannot change while {symbol} has a position or open "
                "orders: close them or change the setting")

    def _leverage(self, symbol: str) -> None:
        want = self.settings.leverage
        refused = self._change("set_leverage", self.exchange.set_leverage, want, symbol)
        got = self._reader.read("fetch_leverage", self.exchange.fetch_leverage, symbol)
        seen = {got.get("longLeverage"), got.get("shortLeverage")}
        if seen != {want}:
            raise ConfigError(
                f"{self._reader.name} {symbol}: leverage is "
                f"{'/'.join(str(x) for x in sorted(seen, key=str))}, [broker.swap] asks "
                f"{want}{refused}")

    def _change(self, what: str, fn: Any, *args: Any) -> str:
        """Send a setting; "already so" is success. A refusal is returned as words for the
        read-back's message (the read-back decides), anything else raised."""
        try:
            self._reader.call(what, fn, *args, ok=(Outcome.UNCHANGED,))
        except PermanentVenueError as exc:
            return f" (the exchange refused the change: {exc})"
        return ""

    # ------------------------------------------------------------------ positions

    def positions(self) -> dict[str, Position]:
        """Every open position of the traded symbols, signed (short < 0), at its entry
        price, read from the exchange. A hedge-mode row (positionSide LONG/SHORT) is
        refused: its net would hide the two sides."""
        self._reader.ensure_markets()
        rows = self._reader.read("fetch_positions", self.exchange.fetch_positions,
                                 list(self.symbols))
        out: dict[str, Position] = {}
        liquidation: dict[str, float | None] = {}
        for row in rows:
            position, liq = _position(row)
            if position is None:
                continue
            out[position.symbol] = position
            liquidation[position.symbol] = liq
        self._liquidation = liquidation
        return out

    def position(self, symbol: str) -> Position:
        return self.positions().get(symbol) or Position(symbol)

    def funding(self, since: datetime) -> list[FundingPayment]:
        """Funding paid or received on the traded symbols since ``since``, oldest first."""
        self._reader.ensure_markets()
        out: list[FundingPayment] = []
        for symbol in self.symbols:
            rows = self._reader.paged("fetch_funding_history",
                                      self.exchange.fetch_funding_history, symbol,
                                      int(since.timestamp() * 1000))
            out.extend(FundingPayment(
                f"{self.exchange.id}:funding:{r['id']}", symbol,
                datetime.fromtimestamp(int(r["timestamp"]) / 1000, UTC),
                float(r.get("amount") or 0.0), str(r.get("code") or ""))
                for r in rows)
        return sorted(out, key=lambda p: (p.time, p.payment_id))

    def margin_terms(self, symbol: str) -> MarginTerms:
        """``symbol``'s leverage, margin mode and maintenance tiers; the tiers are read once
        for every traded symbol (a failed read raises, and is tried again next time)."""
        if not self._tiers:
            self._reader.ensure_markets()
            found = self._reader.read("fetch_leverage_tiers", self.exchange.fetch_leverage_tiers,
                                      list(self.symbols))
            self._tiers = {s: tiers_from([(float(t["minNotional"]), float(t["maxNotional"]),
                                           float(t["maintenanceMarginRate"])) for t in rows])
                           for s, rows in found.items() if rows}
        tiers = self._tiers.get(symbol)
        if not tiers:
            raise PermanentVenueError(f"{self._reader.name}: no maintenance margin tiers "
                                      f"for {symbol}")
        return MarginTerms(float(self.settings.leverage),
                           self.settings.margin_mode == "isolated", tiers)

    def liquidation_price(self, symbol: str) -> float | None:
        """The exchange's liquidation price of the position as last read (None: flat, or
        not reported)."""
        return self._liquidation.get(symbol)


def _position(row: Mapping[str, Any]) -> tuple[Position | None, float | None]:
    """A ccxt position as ours: ``contracts`` x ``contractSize`` base units, signed by
    ``side``; None for an empty row."""
    if row.get("hedged"):
        raise PermanentVenueError(
            f"position {row.get('symbol')} is a hedge-mode leg ({row.get('side')}): dta "
            "trades one-way mode only")
    contracts = float(row.get("contracts") or 0.0) * float(row.get("contractSize") or 1.0)
    if contracts == 0:
        return None, None
    if row.get("side") not in ("long", "short"):
        raise VenueError(f"position {row.get('symbol')}: side {row.get('side')!r} unknown")
    volume = contracts if row["side"] == "long" else -contracts
    liq = row.get("liquidationPrice")
    return (Position(str(row["symbol"]), volume, float(row.get("entryPrice") or 0.0)),
            float(liq) if liq else None)
