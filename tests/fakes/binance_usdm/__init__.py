"""A loopback Binance USD-M futures exchange that the real ``ccxt.binanceusdm`` talks to.

``FakeBinanceUsdm`` (``exchange``) serves the ``/fapi`` REST API on 127.0.0.1 through the
transport the spot fake uses (``fakes.binance_loopback``: signed requests, klines, scripted
faults such as 429/418 with ``Retry-After``, -1021, dropped connections). Each part cites
the documentation it models: ``market`` (exchangeInfo, tickers, mark price, leverage
brackets), ``account`` (one-way positions, leverage, margin type, position mode, funding,
income history, liquidation price), ``orders`` (``/fapi/v1/order``, fills, commissions,
the -4120 refusal of conditional types) and ``algo`` (``/fapi/v1/algoOrder`` and the
triggering of conditional orders when ``set_price`` crosses them).
"""

from fakes.binance_usdm.exchange import FakeBinanceUsdm

__all__ = ["FakeBinanceUsdm"]
