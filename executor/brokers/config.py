"""Settings of the live adapters (MetaTrader 5 and ccxt), as frozen pydantic sections.

The lead plugs these into ``executor/settings.py``; secrets are *not* here: the MT5
password, the bridge's shared secret and the exchange keys stay top-level ``SecretStr``
fields of ``Settings`` (``mt5_password``, ``mt5_bridge_secret``, ``exchange_api_key``,
``exchange_api_secret``) and are handed to the constructors, so a dump of these sections
can never leak one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mt5Settings(_Section):
    """One MetaTrader 5 terminal and account.

    ``transport``: ``module`` imports the official ``MetaTrader5`` package in this process
    (Windows only); ``bridge`` talks rpyc to ``executor.brokers.mt5_bridge`` running in the
    terminal's (Wine-side) Python, the normal set-up on a Linux VPS.
    """

    transport: Literal["module", "bridge"] = "bridge"
    host: str = "127.0.0.1"
    port: int = Field(default=18812, ge=1, le=65535)
    terminal_path: str | None = None  # module transport: terminal64.exe to start/attach
    login: int | None = None
    server: str | None = None
    # Our own orders and positions carry this magic; anything else (the EA's) is never
    # modified, only read for shadow mode.
    magic: int = Field(default=770_001, ge=1, le=2**63 - 1)
    deviation: int = Field(default=20, ge=0, le=10_000)  # points of slippage accepted
    comment_prefix: str = Field(default="", max_length=7)
    filling_preference: tuple[Literal["fok", "ioc", "return"], ...] = ("fok", "ioc", "return")
    requote_retries: int = Field(default=3, ge=0, le=20)
    # The trade server's clock (see executor/brokers/server_time.py): an IANA zone, plus a
    # shift of whole hours ("America/New_York" + 7 for the usual UTC+2/+3 New York close
    # server), or else a fixed offset. Checked against the terminal's ticks at start.
    server_utc_offset_hours: float = Field(default=0.0, ge=-14, le=14)
    server_timezone: str | None = None
    server_timezone_shift_hours: float = Field(default=0.0, ge=-24, le=24)
    server_time_tolerance_seconds: float = Field(default=120.0, gt=0, le=1800)
    # Timeouts and reconnection.
    connect_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    call_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    initialize_timeout_ms: int = Field(default=60_000, ge=1000, le=600_000)
    terminal_connect_wait_seconds: float = Field(default=60.0, ge=0, le=3600)
    reconnect_attempts: int = Field(default=5, ge=1, le=100)
    reconnect_backoff_seconds: float = Field(default=1.0, ge=0, le=60)
    # How far back lookups and start-up reconciliation search the terminal's history.
    history_days: int = Field(default=14, ge=1, le=3650)
    max_bars: int = Field(default=5000, ge=10, le=100_000)


    @field_validator("server_timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        from executor.brokers.server_time import load_zone

        return load_zone(v.strip()).key

    @model_validator(mode="after")
    def _one_clock(self) -> Mt5Settings:
        if self.server_timezone is not None and self.server_utc_offset_hours != 0.0:
            raise ValueError("mt5: set server_timezone or server_utc_offset_hours, not both")
        if self.server_timezone is None and self.server_timezone_shift_hours != 0.0:
            raise ValueError("mt5: server_timezone_shift_hours needs server_timezone")
        return self


class CcxtSettings(_Section):
    """One ccxt exchange account (spot)."""

    exchange: str = "binance"
    sandbox: bool = False
    symbols: tuple[str, ...] = ()
    enable_rate_limit: bool = True
    rate_limit_ms: int | None = Field(default=None, ge=1, le=60_000)
    timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    recv_window_ms: int = Field(default=5_000, ge=100, le=60_000)
    # Extra ccxt ``options``; merged over the defaults that avoid unneeded endpoints
    # (binance: ``fetchCurrencies: False``, spot markets only).
    options: dict[str, Any] = Field(default_factory=dict)
    read_retries: int = Field(default=3, ge=0, le=20)
    read_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    ohlcv_limit: int = Field(default=1000, ge=1, le=5000)
    max_catchup_pages: int = Field(default=50, ge=1, le=10_000)
    history_days: int = Field(default=7, ge=1, le=365)
    # Fills are polled (myTrades, a heavy request) once for each bar that closed after the
    # last poll or after an order we sent; bars replayed in a catch-up closed before it,
    # and share one poll per this many seconds.
    catchup_poll_seconds: float = Field(default=10.0, ge=0, le=3600)
    # Spot: a long's protective stop is a STOP_LOSS_LIMIT (Binance spot symbols do not
    # enable the stop-market STOP_LOSS: exchangeInfo ``orderTypes``): once the stop price
    # trades it becomes a limit sell at stop x this ratio. A price that gaps below that
    # limit leaves it unfilled, so the limit sits below the stop; 0.99 as freqtrade's
    # ``stoploss_on_exchange_limit_ratio`` (up to 1 % of slippage bought for a fill).
    stop_limit_ratio: float = Field(default=0.99, gt=0.5, lt=1.0)

    @field_validator("exchange")
    @classmethod
    def _exchange_id(cls, v: str) -> str:
        v = v.strip().lower()
        if not v.isidentifier():
            raise ValueError(f"{v!r} is not a ccxt exchange id (e.g. 'binance')")
        return v


class SwapSettings(_Section):
    """A perpetual-swap account (linear, USDT-margined; Binance USD-M first, ccxt's
    ``binanceusdm``), set up at start and verified before anything trades: one-way
    position mode (refused, not switched, when the account is in hedge mode: switching
    needs it flat and changes how every other client of the account trades), then for
    each traded symbol this margin mode and this leverage (``executor/brokers/
    ccxt_swap_account.py``)."""

    margin_mode: Literal["isolated", "cross"] = "isolated"
    leverage: int = Field(default=2, ge=1, le=125)
    # What fires a protective stop or target at the exchange: the mark price (an index of
    # several spot venues; one venue's wick does not stop the position out) or the last.
    trigger_price: Literal["mark", "last"] = "mark"
    # How often the exchange settles funding (Binance USD-M: every 8 h, 00:00/08:00/16:00
    # UTC; 4 or 1 for a symbol whose interval was shortened). Funding payments are read
    # once after each settlement (executor/engine/funding.py); a longer setting than the
    # venue's only journals them later, never loses one.
    funding_interval_hours: Literal[1, 2, 4, 8] = 8


class ResolverSettings(_Section):
    """How an order left ``unknown`` is settled: looked up, never sent again.

    It is declared lost (journaled ``rejected`` with the reason) only after ``grace_lookups``
    misses *and* ``grace_seconds`` since it was sent; for Binance keep ``grace_seconds``
    above ``recv_window_ms``: a request older than the window can no longer be accepted.
    """

    grace_lookups: int = Field(default=5, ge=1, le=1000)
    grace_seconds: float = Field(default=30.0, ge=0, le=86_400)
    backoff_seconds: float = Field(default=1.0, ge=0, le=600)
    max_backoff_seconds: float = Field(default=30.0, ge=0, le=3600)
    position_tolerance: float = Field(default=1e-6, ge=0)
