"""Each mapped Binance error code, spot and USD-M futures, raised by our adapter edge as the
class production raises.

ccxt chooses its Binance exception map by the request URL (``get_exceptions_by_url``:
``https://api.binance.com/`` spot, ``https://fapi.binance.com/`` linear). Against the
loopback fakes only its general map applies, so -2019, -2021, -2022 and -4164 arrive as a
plain ``ExchangeError``, which the previous code classified as "outcome unknown" where
production gets a refusal. Our edge (``ccxt_errors.venue_error``, raised by
``ExchangeReader.call``) decides by Binance's code, so each case below asserts, for the
same answer:
- the class our adapter raises against the fake (real ccxt, loopback URL), and
- that the production URL's answer maps to the very same class.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest
from fakes.binance_fake import FakeBinance
from fakes.binance_usdm import FakeBinanceUsdm

from domain.errors import (
    InsufficientFunds,
    OrderTooSmall,
    OrderWouldTrigger,
    PermanentVenueError,
    ReduceOnlyRejected,
    TemporaryVenueError,
    VenueError,
)
from executor.brokers.ccxt_errors import Outcome, classify, venue_error
from executor.brokers.ccxt_exchange import ExchangeReader, make_exchange
from executor.brokers.config import CcxtSettings

BTC = "BTC/USDT:USDT"
FAPI_ORDER = "https://fapi.binance.com/fapi/v1/order"
SPOT_ORDER = "https://api.binance.com/api/v3/order"
SWAP_OPTIONS = {"defaultType": "swap", "fetchMarkets": {"types": ["linear"]}}


def reader(fake: Any, exchange: str, options: dict[str, Any]) -> ExchangeReader:
    s = CcxtSettings(exchange=exchange, timeout_ms=2000, rate_limit_ms=1, read_retries=0,
                     options=options)
    ex = make_exchange(s, api_key="fake-key", secret="fake-secret", api_urls=fake.api_urls())
    r = ExchangeReader(ex, s, name=f"ccxt:{exchange}", lock=threading.RLock(),
                       sleep=lambda _: None)
    r.ensure_markets()
    return r


@pytest.fixture
def usdm() -> Iterator[FakeBinanceUsdm]:
    with FakeBinanceUsdm() as f:
        yield f


@pytest.fixture
def swap(usdm: FakeBinanceUsdm) -> ExchangeReader:
    return reader(usdm, "binanceusdm", SWAP_OPTIONS)


@pytest.fixture
def spot_fake() -> Iterator[FakeBinance]:
    with FakeBinance() as f:
        yield f


@pytest.fixture
def spot(spot_fake: FakeBinance) -> ExchangeReader:
    return reader(spot_fake, "binance", {})


def production(exchange: Any, url: str, status: int, code: int, msg: str) -> BaseException:
    """What ccxt raises for this answer from the production URL."""
    body = json.dumps({"code": code, "msg": msg})
    try:
        exchange.handle_errors(status, "Bad Request", url, "POST", {}, body, json.loads(body),
                               None, None)
    except ccxt.BaseError as exc:
        return exc
    raise AssertionError("ccxt raised nothing")


def raised_by(r: ExchangeReader, fn: Any, *args: Any) -> VenueError:
    with pytest.raises(VenueError) as info:
        r.call("call", fn, *args)
    return info.value


def loopback_error(fn: Any, *args: Any) -> BaseException:
    with pytest.raises(ccxt.BaseError) as info:
        fn(*args)
    return info.value


# ---------------------------------------------------------------------- USD-M futures

# (case, Binance code, our class, the class ccxt raises for it from the production URL:
# read off ccxt.binanceusdm's own "linear" error map, so our table is anchored to it).
FUTURES_CASES: list[tuple[str, int, type[VenueError], type[Exception]]] = [
    ("margin", -2019, InsufficientFunds, ccxt.InsufficientFunds),
    ("stop past the price", -2021, OrderWouldTrigger, ccxt.OrderImmediatelyFillable),
    ("reduce-only on flat", -2022, ReduceOnlyRejected, ccxt.InvalidOrder),
    ("notional", -4164, OrderTooSmall, ccxt.InvalidOrder),
    ("legacy stop endpoint", -4120, PermanentVenueError, ccxt.InvalidOrder),
    ("unknown order cancel", -2011, PermanentVenueError, ccxt.OrderNotFound),
    ("precision", -1111, PermanentVenueError, ccxt.BadRequest),
]


def futures_call(swap: ExchangeReader, case: str) -> tuple[Any, tuple[Any, ...]]:
    """The request that makes the fake answer with the case's code, as ccxt sends it."""
    ex = swap.exchange
    calls: dict[str, tuple[Any, tuple[Any, ...]]] = {
        "margin": (ex.create_order, (BTC, "market", "buy", 100.0)),
        "stop past the price": (ex.create_order, (BTC, "market", "sell", 0.01, None,
                                                  {"stopLossPrice": 31_000.0,
                                                   "reduceOnly": True})),
        "reduce-only on flat": (ex.create_order, (BTC, "market", "buy", 0.01, None,
                                                  {"reduceOnly": True})),
        "notional": (ex.create_order, (BTC, "market", "buy", 0.001)),
        "legacy stop endpoint": (ex.fapiPrivatePostOrder, (
            {"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_MARKET",
             "quantity": "0.01", "stopPrice": "29000"},)),
        "unknown order cancel": (ex.cancel_order, ("123", BTC)),
        "precision": (ex.fapiPrivatePostOrder, (
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.0015"},)),
    }
    return calls[case]


@pytest.mark.parametrize(("case", "code", "cls", "ccxt_cls"), FUTURES_CASES,
                         ids=[f"{c[1]}-{c[0]}" for c in FUTURES_CASES])
def test_futures_code_raises_the_production_class(usdm: FakeBinanceUsdm,
                                                  swap: ExchangeReader, case: str,
                                                  code: int, cls: type[VenueError],
                                                  ccxt_cls: type[Exception]) -> None:
    fn, args = futures_call(swap, case)
    exc = loopback_error(fn, *args)
    err = raised_by(swap, fn, *args)
    assert type(err) is cls and str(code) in str(err)
    assert err.retryable is False
    prod = production(ccxt.binanceusdm(), FAPI_ORDER, 400, code, exchange_msg(exc))
    # What production raises, from ccxt's map rather than ours: a refusal, never a
    # network error, agreeing with our permanent class.
    assert type(prod) is ccxt_cls and not isinstance(prod, ccxt.NetworkError)
    assert type(venue_error(prod, "x", futures=True)) is cls
    assert classify(exc, futures=True).outcome is classify(prod, futures=True).outcome


def exchange_msg(exc: BaseException) -> str:
    return json.loads(str(exc).partition(" ")[2])["msg"]


def test_the_loopback_class_is_not_production_s(usdm: FakeBinanceUsdm,
                                                swap: ExchangeReader) -> None:
    """Why the mapping is by code: ccxt's classes differ between the two URLs."""
    fn, args = futures_call(swap, "margin")
    exc = loopback_error(fn, *args)
    assert type(exc) is ccxt.ExchangeError
    assert isinstance(production(ccxt.binanceusdm(), FAPI_ORDER, 400, -2019,
                                 "Margin is insufficient."), ccxt.InsufficientFunds)


def test_futures_duplicate_id_and_unchanged_setting_are_not_refusals(
        usdm: FakeBinanceUsdm, swap: ExchangeReader) -> None:
    ex = swap.exchange
    ex.set_margin_mode("isolated", BTC)
    again = loopback_error(ex.set_margin_mode, "isolated", BTC)
    assert classify(again, futures=True).outcome is Outcome.UNCHANGED
    ex.create_order(BTC, "limit", "buy", 0.01, 29_000.0, {"clientOrderId": "dup"})
    exc = loopback_error(ex.create_order, BTC, "limit", "buy", 0.01, 29_000.0,
                         {"clientOrderId": "dup"})
    assert classify(exc, futures=True).outcome is Outcome.DUPLICATE  # look it up, not lost
    assert type(venue_error(exc, "x", futures=True)) is VenueError


@pytest.mark.parametrize("status", [429, 418])
def test_futures_rate_limit_and_timestamp_are_temporary(usdm: FakeBinanceUsdm,
                                                        swap: ExchangeReader,
                                                        status: int) -> None:
    usdm.script("POST", "/fapi/v1/leverage", ("reject", -1003, "Too many requests.", status))
    err = raised_by(swap, swap.exchange.set_leverage, 5, BTC)
    assert type(err) is TemporaryVenueError and err.retryable
    usdm.script("POST", "/fapi/v1/leverage", ("timestamp",), ("timestamp",))
    err = raised_by(swap, swap.exchange.set_leverage, 5, BTC)  # resynced once, then raised
    assert type(err) is TemporaryVenueError and "-1021" in str(err)
    assert usdm.requests.count(("GET", "/fapi/v1/time")) == 1


def test_futures_codes_mean_other_things_on_spot() -> None:
    """-2021/-2022 on spot are cancel-replace failures (partial or full): not refusals of
    a new order, so they are not read as such without ``futures``."""
    prod = production(ccxt.binance(), SPOT_ORDER, 400, -2022, "Order cancel-replace failed.")
    assert classify(prod).outcome is Outcome.OTHER
    assert type(venue_error(prod, "x")) is VenueError


# ---------------------------------------------------------------------- spot


# (code, message, our class, what ccxt.binance raises for it from the production URL).
SPOT_CASES: list[tuple[int, str, type[VenueError], type[Exception]]] = [
    (-2010, "Account has insufficient balance for requested action.", InsufficientFunds,
     ccxt.InsufficientFunds),
    (-2010, "Stop price would trigger immediately.", OrderWouldTrigger,
     ccxt.OrderImmediatelyFillable),
    (-1013, "Filter failure: NOTIONAL", OrderTooSmall, ccxt.BadRequest),
    (-1013, "Filter failure: LOT_SIZE", PermanentVenueError, ccxt.InvalidOrder),
    (-2010, "Market is closed.", PermanentVenueError, ccxt.MarketClosed),
    (-1121, "Invalid symbol.", PermanentVenueError, ccxt.BadSymbol),
]


@pytest.mark.parametrize(("code", "msg", "cls", "ccxt_cls"), SPOT_CASES,
                         ids=[f"{c[0]}-{c[1][:20]}" for c in SPOT_CASES])
def test_spot_code_raises_the_production_class(spot_fake: FakeBinance, spot: ExchangeReader,
                                               code: int, msg: str, cls: type[VenueError],
                                               ccxt_cls: type[Exception]) -> None:
    spot_fake.script("POST", "/api/v3/order", ("reject", code, msg))
    err = raised_by(spot, spot.exchange.create_order, "BTC/USDT", "market", "buy", 0.01)
    assert type(err) is cls and msg in str(err)
    prod = production(ccxt.binance(), SPOT_ORDER, 400, code, msg)
    assert type(prod) is ccxt_cls and not isinstance(prod, ccxt.NetworkError)
    assert type(venue_error(prod, "x")) is cls


def test_spot_insufficient_balance_from_the_account(spot_fake: FakeBinance,
                                                    spot: ExchangeReader) -> None:
    spot_fake.balances["USDT"] = 10.0
    err = raised_by(spot, spot.exchange.create_order, "BTC/USDT", "market", "buy", 0.01)
    assert type(err) is InsufficientFunds


def test_spot_not_found_and_rate_limit(spot_fake: FakeBinance, spot: ExchangeReader) -> None:
    err = raised_by(spot, spot.exchange.cancel_order, "42", "BTC/USDT")
    assert type(err) is PermanentVenueError and "-2011" in str(err)
    spot_fake.script("POST", "/api/v3/order", ("reject", -1015, "Too many new orders.", 429))
    err = raised_by(spot, spot.exchange.create_order, "BTC/USDT", "market", "buy", 0.01)
    assert type(err) is TemporaryVenueError
