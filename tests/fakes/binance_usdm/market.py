"""USD-M market data: exchangeInfo, 24 h ticker, premium index (mark price, funding rate),
leverage brackets. Klines come from ``fakes.binance_loopback`` (same twelve columns as spot).

Shapes from the USD-M REST documentation (developers.binance.com/docs/derivatives/
usds-margined-futures/market-data/rest-api):
- "Exchange Information" ``GET /fapi/v1/exchangeInfo``: ``symbols[]`` with ``contractType``
  PERPETUAL, ``marginAsset``, ``pricePrecision``/``quantityPrecision``, ``orderTypes`` (the
  conditional types listed here are accepted by ``POST /fapi/v1/algoOrder`` only, see
  ``algo``), and the filters ``PRICE_FILTER`` (tickSize), ``LOT_SIZE`` (limit orders),
  ``MARKET_LOT_SIZE`` (a smaller maxQty for MARKET orders), ``MAX_NUM_ORDERS``,
  ``MIN_NOTIONAL`` (its field is ``notional``, not spot's ``minNotional``) and
  ``PERCENT_PRICE``. The 2025-12-29 change log removed ``MAX_NUM_ALGO_ORDERS``.
- "24hr Ticker Price Change Statistics" ``GET /fapi/v1/ticker/24hr``: no bid/ask fields,
  unlike spot.
- "Mark Price" ``GET /fapi/v1/premiumIndex``: ``markPrice``, ``indexPrice``,
  ``lastFundingRate``, ``nextFundingTime`` (every 8 h: 00:00, 08:00, 16:00 UTC).
- "Notional and Leverage Brackets" ``GET /fapi/v1/leverageBracket`` (USER_DATA, signed):
  per symbol, brackets of ``notionalFloor``/``notionalCap``, ``initialLeverage``,
  ``maintMarginRatio`` and ``cum`` (the maintenance amount: cum_n = cum_{n-1} +
  floor_n * (mmr_n - mmr_{n-1})), which the liquidation price uses (``account``).
"""

from __future__ import annotations

from typing import Any

from fakes.binance_loopback import fmt

FUNDING_INTERVAL_MS = 8 * 3_600_000
CONDITIONAL_TYPES = ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                     "TRAILING_STOP_MARKET")

# (notionalFloor, notionalCap, initialLeverage, maintMarginRatio, cum): BTCUSDT's first
# brackets as the documentation's example lists them.
BRACKETS: tuple[tuple[float, float, int, float, float], ...] = (
    (0.0, 50_000.0, 125, 0.004, 0.0),
    (50_000.0, 500_000.0, 100, 0.005, 50.0),
    (500_000.0, 10_000_000.0, 50, 0.01, 2_550.0),
)


def default_symbols() -> dict[str, dict[str, Any]]:
    return {
        "BTCUSDT": dict(base="BTC", quote="USDT", tick="0.10", step="0.001", min_qty="0.001",
                        max_qty="1000", market_max_qty="120", min_notional="100",
                        price_precision=2, qty_precision=3, price=30_000.0, mark=None,
                        funding_rate=0.0001),
        "ETHUSDT": dict(base="ETH", quote="USDT", tick="0.01", step="0.001", min_qty="0.001",
                        max_qty="10000", market_max_qty="2000", min_notional="20",
                        price_precision=2, qty_precision=3, price=2_000.0, mark=None,
                        funding_rate=0.0001),
    }


def bracket_of(notional: float) -> tuple[float, float, int, float, float]:
    for b in BRACKETS:
        if abs(notional) < b[1]:
            return b
    return BRACKETS[-1]


class MarketData:
    symbols: dict[str, dict[str, Any]]

    def now_ms(self) -> int:
        raise NotImplementedError

    def mark(self, sid: str) -> float:
        s = self.symbols[sid]
        return float(s["mark"] if s["mark"] is not None else s["price"])

    def exchange_info(self) -> dict[str, Any]:
        return {"timezone": "UTC", "serverTime": self.now_ms(), "futuresType": "U_MARGINED",
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                     "intervalNum": 1, "limit": 2400},
                    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1,
                     "limit": 1200},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                     "limit": 300}],
                "exchangeFilters": [],
                "assets": [{"asset": "USDT", "marginAvailable": True,
                            "autoAssetExchange": "-10000"}],
                "symbols": [self._symbol_info(sid, s) for sid, s in self.symbols.items()]}

    def _symbol_info(self, sid: str, s: dict[str, Any]) -> dict[str, Any]:
        return {
            "symbol": sid, "pair": sid, "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": 1569398400000,
            "status": "TRADING", "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": s["base"],
            "quoteAsset": s["quote"], "marginAsset": s["quote"],
            "pricePrecision": s["price_precision"], "quantityPrecision": s["qty_precision"],
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "underlyingSubType": ["PoW"], "settlePlan": 0, "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": s["tick"],
                 "maxPrice": "4529764", "tickSize": s["tick"]},
                {"filterType": "LOT_SIZE", "minQty": s["min_qty"], "maxQty": s["max_qty"],
                 "stepSize": s["step"]},
                {"filterType": "MARKET_LOT_SIZE", "minQty": s["min_qty"],
                 "maxQty": s["market_max_qty"], "stepSize": s["step"]},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": s["min_notional"]},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
                 "multiplierDown": "0.9500", "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET", *CONDITIONAL_TYPES],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            "permissionSets": ["GRID", "COPY"],
        }

    def ticker_24hr(self, q: dict[str, str]) -> tuple[int, Any]:
        sid = q.get("symbol", "")
        s = self.symbols.get(sid)
        if s is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        price, now = float(s["price"]), self.now_ms()
        return 200, {
            "symbol": sid, "priceChange": fmt(0.0, 2), "priceChangePercent": "0.000",
            "weightedAvgPrice": fmt(price, 2), "lastPrice": fmt(price, 2), "lastQty": "0.010",
            "openPrice": fmt(price, 2), "highPrice": fmt(price * 1.001, 2),
            "lowPrice": fmt(price * 0.999, 2), "volume": "1000.000",
            "quoteVolume": fmt(price * 1000.0, 2), "openTime": now - 86_400_000,
            "closeTime": now, "firstId": 1, "lastId": 1000, "count": 1000}

    def next_funding_ms(self) -> int:
        now = self.now_ms()
        return now - now % FUNDING_INTERVAL_MS + FUNDING_INTERVAL_MS

    def premium_index(self, q: dict[str, str]) -> tuple[int, Any]:
        sid = q.get("symbol")
        if sid is not None and sid not in self.symbols:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        rows = [{"symbol": k, "markPrice": fmt(self.mark(k)),
                 "indexPrice": fmt(self.mark(k)), "estimatedSettlePrice": fmt(self.mark(k)),
                 "lastFundingRate": fmt(float(s["funding_rate"])),
                 "interestRate": "0.00010000", "nextFundingTime": self.next_funding_ms(),
                 "time": self.now_ms()}
                for k, s in self.symbols.items() if sid is None or k == sid]
        return 200, rows[0] if sid is not None else rows

    def leverage_brackets(self, q: dict[str, str]) -> tuple[int, Any]:
        sid = q.get("symbol")
        rows = [{"symbol": k, "notionalCoef": 1.0,
                 "brackets": [{"bracket": i + 1, "initialLeverage": lev, "notionalCap": cap,
                               "notionalFloor": floor, "maintMarginRatio": mmr, "cum": cum}
                              for i, (floor, cap, lev, mmr, cum) in enumerate(BRACKETS)]}
                for k in self.symbols if sid is None or k == sid]
        return 200, rows[0] if sid is not None else rows
