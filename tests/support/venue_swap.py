"""The perpetual-swap venue model for the conformance suite: Binance USD-M through the real
``ccxt.binanceusdm`` against the loopback fake (tests/fakes/binance_usdm), one-way mode,
commissions in USDT (the quantity traded is the quantity held), the exchange's positions
and realised PnL as the venue's truth."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain import OrderSide
from support.venues import _LiveVenue


class CcxtSwap(_LiveVenue):
    name = "ccxt-swap"
    account = "bn-live"
    symbol = "BTC/USDT:USDT"
    lot = 0.01  # 300 USDT at the fake's price: above BTCUSDT's 100 USDT MIN_NOTIONAL
    shorts = True
    partial_fills = True  # a MARKET order out of liquidity ends EXPIRED with a part filled
    fills_while_down = True
    protective_exits = True  # conditional orders at the exchange, placed by the engine
    fee_rate = 0.0  # commission in USDT: the position is what was traded
    dust = 0.0

    def __init__(self, tmp_path: Path, strategy: str) -> None:
        from fakes.binance_usdm import FakeBinanceUsdm

        super().__init__(tmp_path, strategy)
        self.fake = FakeBinanceUsdm(wallet=1_000_000.0)
        self.fake.start()

    def _settings(self) -> Any:
        from support.daemon_helpers import live_settings

        return live_settings(self.url, self.fake, self.strategy, lots=self.lot, broker={
            "kind": "ccxt", "symbols": [self.symbol], "timeframe": "1m",
            "ccxt_api_urls": self.fake.api_urls(),
            "ccxt": {"exchange": "binanceusdm", "timeout_ms": 2000, "rate_limit_ms": 1,
                     "history_days": 30},
            "swap": {"margin_mode": "cross", "leverage": 5}})

    def _next_bar(self) -> None:
        self.fake.time_offset_ms = int((self._now() - datetime.now(UTC)).total_seconds()
                                       * 1000)

    def _script_partial(self, fraction: float) -> None:
        self.fake.script("POST", "/fapi/v1/order", ("partial", fraction))

    def protected(self, side: OrderSide, lots: float, exit_by: str) -> None:
        """Open with a stop and a target 1 % away; the engine places both at the exchange
        as conditional orders; the price then moves through one of them (the mark with
        it), the exchange fires it, and the next bar's poll sees the exit."""
        price = float(self.fake.symbols["BTCUSDT"]["price"])
        sign = 1 if side is OrderSide.BUY else -1
        stop, target = round(price * (1 - sign * 0.01), 1), round(price * (1 + sign * 0.01), 1)
        self.send(side, lots, stops=(stop, target))
        assert len(self.open_legs()) == 2, "the stop and the target are at the exchange"
        through = (stop - sign * 10) if exit_by == "sl" else (target + sign * 10)
        self.fake.set_price("BTCUSDT", through, mark=through)
        self._bar()
        assert self.open_legs() == [], "the other leg was cancelled"
        self.fake.set_price("BTCUSDT", price, mark=None)

    def open_legs(self) -> list[str]:
        return [a["clientAlgoId"] for a in self.fake.algo_orders if a["algoStatus"] == "NEW"]

    def venue_position(self) -> float:
        return round(self.fake.positions["BTCUSDT"]["amt"], 10)

    def venue_gross(self) -> float:
        return abs(self.venue_position())

    def venue_open_orders(self) -> int:
        return sum(1 for o in self.fake.orders if o["status"] in ("NEW", "PARTIALLY_FILLED"))

    def venue_realized(self) -> float | None:
        return round(sum(float(r["income"]) for r in self.fake.income
                         if r["incomeType"] == "REALIZED_PNL"), 2)

    def close(self) -> None:
        super().close()
        self.fake.stop()
