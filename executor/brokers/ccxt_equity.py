"""The spot account's balances and the equity of the sleeve this daemon trades.

A spot account has no equity figure of its own: it holds assets. Equity here is the total
(free + locked) balance of the quote currency plus each traded symbol's base asset valued
at a recent price. Balances are read at most once per ``equity_ttl_seconds`` and shared
with the positions' cap, and dropped whenever the account changes under us (an order
sent, a fill seen), so a decision right after a fill sees the account as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from domain import Bar
from domain.errors import PermanentVenueError, TemporaryVenueError, VenueError
from executor.brokers.ccxt_exchange import ExchangeReader, ccxt_module


def _amount(value: Any) -> float:
    """A balance entry: ccxt leaves a currency the exchange did not list as ``None``."""
    return 0.0 if value is None else float(value)


class Balances:
    """The account's total balance per asset, read at most once per ``ttl`` of monotonic
    time; ``changed`` drops it, and a read in flight when it was called is not kept."""

    def __init__(self, reader: ExchangeReader, ttl: float,
                 monotonic: Callable[[], float]) -> None:
        self._reader = reader
        self._ttl = ttl
        self._monotonic = monotonic
        # (monotonic, generation, totals) of the last read.
        self._last: tuple[float, int, dict[str, float]] | None = None
        self._generation = 0

    def totals(self) -> dict[str, float]:
        now = self._monotonic()
        cached = self._last
        if (cached is not None and cached[1] == self._generation
                and now - cached[0] < self._ttl):
            return cached[2]
        generation = self._generation
        reader = self._reader
        balance = reader.read("fetch_balance", reader.exchange.fetch_balance)
        totals = {str(k): _amount(v) for k, v in (balance.get("total") or {}).items()}
        if generation == self._generation:
            self._last = (now, generation, totals)
        return totals

    def changed(self) -> None:
        self._generation += 1
        self._last = None


class SpotEquity:
    """Equity of the traded sleeve, and the prices it is marked at."""

    def __init__(self, reader: ExchangeReader, balances: Balances,
                 symbols: Callable[[], list[str]], *, clock: Callable[[], datetime],
                 mark_max_age: timedelta) -> None:
        self._reader = reader
        self.exchange = reader.exchange
        self._balances = balances
        self._symbols = symbols
        self._clock = clock
        # symbol -> (price, as of): the newest closed bar's close or ticker, for equity.
        self._mark: dict[str, tuple[float, datetime]] = {}
        self._mark_max_age = mark_max_age
        self._last_close: dict[str, float] = {}

    def see(self, bar: Bar) -> bool:
        """Keep the bar's close as the symbol's mark unless a newer one is known (catch-up
        bars are older). True when equity now covers one more symbol."""
        self._last_close[bar.symbol] = bar.close
        mark = self._mark.get(bar.symbol)
        added = mark is None and bar.symbol not in self._symbols()
        if mark is None or bar.close_time >= mark[1]:
            self._mark[bar.symbol] = (bar.close, bar.close_time)
        return added

    def last_close(self, symbol: str) -> float | None:
        """The close of the last bar seen, a reference price for a market order."""
        return self._last_close.get(symbol)

    def traded(self) -> list[str]:
        """The symbols equity covers: configured, ordered, or seen in a bar (the daemon's
        streams reach ``on_bar`` before any decision, even when ``ccxt.symbols`` is empty)."""
        return list(dict.fromkeys([*self._symbols(), *self._mark]))

    def currency(self) -> str:
        """The settlement currency of the traded markets; one, or refused."""
        self._reader.ensure_markets()
        by_currency: dict[str, list[str]] = {}
        for sym in self.traded():
            market = self.exchange.market(sym)
            code = str(market.get("settle") or market["quote"])
            by_currency.setdefault(code, []).append(sym)
        if len(by_currency) != 1:
            detail = ("no symbol known yet (ccxt.symbols is empty and no bar was "
                      "seen)" if not by_currency else
                      "; ".join(f"{c}: {', '.join(s)}" for c, s in by_currency.items()))
            raise PermanentVenueError(f"{self._reader.name}: cannot state equity in one "
                                      f"currency: {detail}")
        return next(iter(by_currency))

    def read(self) -> float:
        """One reading; every failure a ``VenueError``."""
        c = ccxt_module()
        name = self._reader.name
        try:
            currency = self.currency()
            total = self._balances.totals()
            equity = _amount(total.get(currency))
            bases: dict[str, str] = {}
            for sym in self.traded():
                bases.setdefault(str(self.exchange.market(sym)["base"]), sym)
            for base, sym in bases.items():
                held = _amount(total.get(base))
                if held:
                    equity += held * self._mark_price(sym)
        except VenueError:
            raise
        except c.BaseError as exc:
            raise VenueError(f"{name} equity: {exc.__class__.__name__}: {str(exc)[:300]}",
                             retryable=isinstance(exc, c.NetworkError)) from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PermanentVenueError(f"{name} equity: unexpected balance or ticker: "
                                      f"{exc.__class__.__name__}: {exc}") from None
        return equity

    def _mark_price(self, symbol: str) -> float:
        now = self._clock()
        mark = self._mark.get(symbol)
        if mark is not None and now - mark[1] <= self._mark_max_age:
            return mark[0]
        reader = self._reader
        ticker = reader.read("fetch_ticker", reader.exchange.fetch_ticker, symbol)
        price = ticker.get("last") or ticker.get("close")
        if not price and ticker.get("bid") and ticker.get("ask"):
            price = (float(ticker["bid"]) + float(ticker["ask"])) / 2
        if not price or not math.isfinite(float(price)) or float(price) <= 0:
            raise TemporaryVenueError(f"{reader.name}: no price for {symbol} in its ticker")
        self._mark[symbol] = (float(price), now)
        return float(price)
