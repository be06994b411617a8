"""The ccxt exchange as the spot broker's parts call it: built once from settings, its
markets loaded once, and every read retried or refused by what the error means.

Reads and sends fail differently; a read can be asked again. Error mapping on reads (by
Binance's own code, ``ccxt_errors``, not by ccxt's exception class, which depends on the
request URL): network or server-side errors retried with backoff, then
``TemporaryVenueError``; a rate limit is not retried at once (the venue asks us to back
off, and retrying within the cycle is what turns a 429 into a 418 ban) but raised as
``TemporaryVenueError``; -1021 (timestamp) resyncs the time first; -2013/-2011 (no such
order) reach the caller as ``ccxt.OrderNotFound``; anything else is raised as ccxt raised
it, for the caller to map. Sending an order is not a read: its mapping is in
``ccxt_orders``. A call that changes a setting or cancels (``call``) is sent once and its
error raised as our class (``ccxt_errors.venue_error``). On a futures exchange
(``defaultType`` swap or future) the USD-M codes count too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

import structlog
from pydantic import SecretStr

from domain.errors import ConfigError, TemporaryVenueError
from executor.brokers.ccxt_errors import Outcome, classify, venue_error
from executor.brokers.config import CcxtSettings

log = structlog.get_logger("dta.ccxt")

T = TypeVar("T")


def make_exchange(settings: CcxtSettings, *, api_key: SecretStr | str | None = None,
                  secret: SecretStr | str | None = None,
                  api_urls: Mapping[str, str] | None = None) -> Any:
    """A configured sync ccxt exchange. ``api_urls`` overrides entries of ``urls['api']``
    (tests point them at a loopback fake; an operator could use it for a proxy)."""
    import ccxt

    cls = getattr(ccxt, settings.exchange, None)
    if cls is None or not isinstance(cls, type):
        raise ConfigError(f"ccxt has no exchange {settings.exchange!r}")
    options: dict[str, Any] = {"defaultType": "spot", "adjustForTimeDifference": False}
    if settings.exchange.startswith("binance"):
        # Spot only: skip the private currencies call, the futures exchangeInfo calls and
        # the margin-pairs calls that load_markets would otherwise make.
        options.update({"fetchCurrencies": False, "fetchMargins": False,
                        "fetchMarkets": {"types": ["spot"]},
                        "recvWindow": settings.recv_window_ms,
                        "warnOnFetchOpenOrdersWithoutSymbol": False})
    options.update(settings.options)
    config: dict[str, Any] = {"enableRateLimit": settings.enable_rate_limit,
                              "timeout": settings.timeout_ms, "options": options}
    if settings.rate_limit_ms is not None:
        config["rateLimit"] = settings.rate_limit_ms
    if api_key is not None:
        config["apiKey"] = (api_key.get_secret_value() if isinstance(api_key, SecretStr)
                            else api_key)
    if secret is not None:
        config["secret"] = (secret.get_secret_value() if isinstance(secret, SecretStr)
                            else secret)
    exchange = cls(config)
    if settings.sandbox:
        exchange.set_sandbox_mode(True)
    if api_urls:
        exchange.urls["api"] = {**exchange.urls["api"], **dict(api_urls)}
    return exchange


def ccxt_module() -> Any:
    """``ccxt``, imported where it is used so ``dta --help`` does not load it."""
    import ccxt

    return ccxt


class ExchangeReader:
    """The exchange object and the one way the broker's parts read from it."""

    def __init__(self, exchange: Any, settings: CcxtSettings, *, name: str,
                 lock: threading.RLock, sleep: Callable[[float], None]) -> None:
        self.exchange = exchange
        self.settings = settings
        self.name = name
        self._lock = lock
        self._sleep = sleep
        self._markets_loaded = False
        options = getattr(exchange, "options", None) or {}
        self.futures = options.get("defaultType") in ("swap", "future")

    def read(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """A read: network and server-side errors retried with backoff, a timestamp refusal
        after a time resync. A rate limit is raised at once (retryable): retrying it
        within the cycle is what turns a 429 into a 418 ban. No such order reaches the
        caller as ``ccxt.OrderNotFound``, whatever class ccxt chose for the URL."""
        c = ccxt_module()
        last: BaseException | None = None
        for attempt in range(self.settings.read_retries + 1):
            if attempt:
                self._sleep(self.settings.read_backoff_seconds * 2 ** (attempt - 1))
            try:
                return fn(*args)
            except c.BaseError as exc:
                seen = classify(exc, futures=self.futures)
                last = exc
                if seen.outcome is Outcome.TIMESTAMP:
                    self.resync_time()
                elif seen.outcome is Outcome.TRANSIENT:
                    log.warning("ccxt_read_retry", call=what, error=str(exc)[:200],
                                attempt=attempt + 1)
                elif seen.outcome is Outcome.RATE_LIMITED:
                    log.warning("ccxt_rate_limited", call=what, error=str(exc)[:200])
                    raise TemporaryVenueError(f"{self.name} {what}: rate limited by the exchange, "
                                              f"backing off: {str(exc)[:200]}") from None
                elif seen.outcome is Outcome.NOT_FOUND and not isinstance(
                        exc, c.OrderNotFound):
                    raise c.OrderNotFound(str(exc)) from exc
                else:
                    raise
        raise TemporaryVenueError(f"{self.name} {what} failed after "
                                  f"{self.settings.read_retries + 1} attempts: {last}")

    def call(self, what: str, fn: Callable[..., T], *args: Any,
             ok: Collection[Outcome] = ()) -> T | None:
        """A call that changes something (a setting, a cancel): sent once, its error raised
        as our class; an outcome in ``ok`` (a setting already as asked: ``UNCHANGED``) is
        None. A timestamp refusal changed nothing: resynced and sent once more."""
        c = ccxt_module()
        for attempt in range(2):
            try:
                return fn(*args)
            except c.BaseError as exc:
                outcome = classify(exc, futures=self.futures).outcome
                if outcome in ok:
                    return None
                if attempt == 0 and outcome is Outcome.TIMESTAMP:
                    self.resync_time()
                    continue
                raise venue_error(exc, f"{self.name} {what}", futures=self.futures) from exc
        raise AssertionError("unreachable: the second attempt returns or raises")

    def resync_time(self) -> None:
        try:
            diff = self.exchange.load_time_difference()
            log.warning("ccxt_time_resynced", time_difference_ms=diff)
        except Exception as exc:  # the retry that follows will tell
            log.warning("ccxt_time_resync_failed", error=str(exc)[:200])

    def ensure_markets(self) -> None:
        """Markets are loaded once per process (the endpoint is heavy and rate-limited)."""
        with self._lock:
            if not self._markets_loaded:
                self.read("load_markets", self.exchange.load_markets)
                self._markets_loaded = True

    def paged(self, what: str, fn: Callable[..., list[dict[str, Any]]], symbol: str,
              since_ms: int, limit: int = 500) -> list[dict[str, Any]]:
        """Every row since ``since_ms``, a page at a time from the newest timestamp seen,
        at most ``max_catchup_pages`` pages; a row on two pages is kept once."""
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        start = since_ms
        for _ in range(self.settings.max_catchup_pages):
            page = self.read(what, fn, symbol, start, limit)
            fresh = [r for r in page if str(r.get("id")) not in seen]
            for r in fresh:
                seen.add(str(r.get("id")))
            rows.extend(fresh)
            if len(page) < limit or not fresh:
                break
            start = int(max(int(r.get("timestamp") or 0) for r in page))
        return rows
