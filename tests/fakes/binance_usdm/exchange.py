"""``FakeBinanceUsdm``: the parts (``market``, ``account``, ``orders``, ``algo``) behind one
router, on the shared loopback transport. ``api_urls()`` gives the ``urls['api']`` entries
ccxt.binanceusdm's ``/fapi`` calls use (``fapiPublic``, ``fapiPrivate``, and their V2/V3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fakes.binance_loopback import LoopbackBinance
from fakes.binance_usdm.account import Account
from fakes.binance_usdm.algo import Algo
from fakes.binance_usdm.market import MarketData, default_symbols
from fakes.binance_usdm.orders import Orders

Route = Callable[["FakeBinanceUsdm", dict[str, str]], tuple[int, Any]]

PUBLIC: dict[str, Route] = {
    "/fapi/v1/ping": lambda f, q: (200, {}),
    "/fapi/v1/time": lambda f, q: (200, {"serverTime": f.now_ms()}),
    "/fapi/v1/exchangeInfo": lambda f, q: (200, f.exchange_info()),
    "/fapi/v1/klines": lambda f, q: f.klines(q),
    "/fapi/v1/ticker/24hr": lambda f, q: f.ticker_24hr(q),
    "/fapi/v1/premiumIndex": lambda f, q: f.premium_index(q),
}

PRIVATE: dict[tuple[str, str], Route] = {
    ("GET", "/fapi/v1/leverageBracket"): lambda f, q: f.leverage_brackets(q),
    ("GET", "/fapi/v3/positionRisk"): lambda f, q: f.position_risk(q, v2=False),
    ("GET", "/fapi/v2/positionRisk"): lambda f, q: f.position_risk(q, v2=True),
    ("POST", "/fapi/v1/leverage"): lambda f, q: f.set_leverage(q),
    ("POST", "/fapi/v1/marginType"): lambda f, q: f.set_margin_type(q),
    ("GET", "/fapi/v1/positionSide/dual"):
        lambda f, q: (200, {"dualSidePosition": f.dual_side}),
    ("POST", "/fapi/v1/positionSide/dual"): lambda f, q: f.set_position_mode(q),
    ("GET", "/fapi/v1/symbolConfig"): lambda f, q: f.symbol_config(q),
    ("GET", "/fapi/v1/income"): lambda f, q: f.income_history(q),
    ("GET", "/fapi/v3/account"): lambda f, q: f.account_v3(),
    ("GET", "/fapi/v1/order"): lambda f, q: f.query_order(q),
    ("DELETE", "/fapi/v1/order"): lambda f, q: f.cancel_order(q),
    ("GET", "/fapi/v1/openOrders"): lambda f, q: f.open_orders(q),
    ("GET", "/fapi/v1/allOrders"): lambda f, q: f.all_orders(q),
    ("GET", "/fapi/v1/userTrades"): lambda f, q: f.user_trades(q),
    ("POST", "/fapi/v1/algoOrder"): lambda f, q: f.new_algo_order(q),
    ("GET", "/fapi/v1/algoOrder"): lambda f, q: f.query_algo(q),
    ("DELETE", "/fapi/v1/algoOrder"): lambda f, q: f.cancel_algo(q),
    ("GET", "/fapi/v1/openAlgoOrders"): lambda f, q: f.open_algo_orders(q),
}


def api_urls(base_url: str) -> dict[str, str]:
    """ccxt.binanceusdm's ``urls['api']`` for a fake at ``base_url`` (also for a process
    that only knows the port: the crash-safety child)."""
    fapi = f"{base_url}/fapi"
    return {"fapiPublic": f"{fapi}/v1", "fapiPublicV2": f"{fapi}/v2",
            "fapiPublicV3": f"{fapi}/v3", "fapiPrivate": f"{fapi}/v1",
            "fapiPrivateV2": f"{fapi}/v2", "fapiPrivateV3": f"{fapi}/v3",
            "fapiData": f"{base_url}/futures/data"}


class FakeBinanceUsdm(LoopbackBinance, MarketData, Account, Orders, Algo):
    thread_name = "fake-binance-usdm"

    def __init__(self, *, api_key: str = "fake-key", secret: str = "fake-secret",
                 wallet: float = 10_000.0, leverage: int = 20) -> None:
        super().__init__(api_key=api_key, secret=secret)
        self.symbols = default_symbols()
        self.on_order: Callable[[dict[str, Any]], None] | None = None
        self.init_account(wallet, leverage)
        self.init_orders()
        self.init_algo()

    def api_urls(self) -> dict[str, str]:
        return api_urls(self.base_url)

    def orders_by_client_id(self, client_order_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [o for o in self.orders if o["clientOrderId"] == client_order_id]

    def algo_by_client_id(self, client_algo_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [a for a in self.algo_orders if a["clientAlgoId"] == client_algo_id]

    def route(self, method: str, path: str, q: dict[str, str], raw: str,
              headers: Any, step: tuple[Any, ...] | None) -> tuple[int, Any]:
        public = PUBLIC.get(path)
        if public is not None and method == "GET":
            return public(self, q)
        if path == "/fapi/v1/order" and method == "POST":
            handler: Route | None = None
        else:
            handler = PRIVATE.get((method, path))
            if handler is None:
                return 404, {"code": -1000, "msg": f"unknown path {method} {path}"}
        problem = self.refusal(q, raw, headers, step)
        if problem is not None:
            return problem
        with self._lock:
            if handler is None:
                partial = step[1] if step is not None and step[0] == "partial" else None
                return self.new_order(q, partial)
            return handler(self, q)
