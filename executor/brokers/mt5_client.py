"""``Mt5Client``: the one seam through which the daemon talks to a MetaTrader 5 terminal.

Two transports behind it, chosen by ``Mt5Settings.transport``:
- ``module``: the official ``MetaTrader5`` package imported in this process (Windows only,
  imported lazily so ``dta --help`` stays fast and Linux never needs it);
- ``bridge``: rpyc to ``executor.brokers.mt5_bridge`` in the terminal's Wine-side Python,
  authenticated by a shared-secret HMAC handshake.

Both hand back the same plain data (dicts, lists of dicts; see ``mt5_bridge.to_plain``), so
the feed and broker above never see a transport.

Failure handling, per the MetaTrader5 docs (``last_error`` codes) and rpyc's errors:
- the bridge connection drops (``EOFError``/socket errors) -> reconnect, re-``initialize``,
  wait for ``terminal_info().connected``, retry the call;
- a call answers ``None`` with an IPC error (``RES_E_INTERNAL_FAIL*``, -10000..-10005: no
  IPC connection, IPC timeout...) -> re-``initialize`` and retry;
- a call times out -> retried after a backoff;
but only for *reads*. ``order_send`` is never retried here: a lost connection or a timeout
after the request left us is an unknown outcome, which the router settles by lookup.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import structlog
from pydantic import SecretStr

from domain.errors import PermanentVenueError, TemporaryVenueError
from executor.brokers.config import Mt5Settings
from executor.brokers.mt5_bridge import RPYC_CONFIG, client_handshake, to_plain

log = structlog.get_logger("dta.mt5")

# --------------------------------------------------------------------------- constants
# Values as documented for the MetaTrader5 Python package (https://www.mql5.com/en/docs/
# python_metatrader5 and the MQL5 enumerations it mirrors). Hard-coded so the bridge never
# has to ship module attributes, and checked against the fake module in the tests.

TRADE_ACTION_DEAL = 1
TRADE_ACTION_PENDING = 5
TRADE_ACTION_SLTP = 6
TRADE_ACTION_MODIFY = 7
TRADE_ACTION_REMOVE = 8

ORDER_TYPE_BUY = 0
ORDER_TYPE_SELL = 1
ORDER_TYPE_BUY_LIMIT = 2
ORDER_TYPE_SELL_LIMIT = 3
ORDER_TYPE_BUY_STOP = 4
ORDER_TYPE_SELL_STOP = 5

ORDER_FILLING_FOK = 0
ORDER_FILLING_IOC = 1
ORDER_FILLING_RETURN = 2
ORDER_TIME_GTC = 0

# SYMBOL_FILLING_MODE flags (a bitmask in symbol_info().filling_mode).
SYMBOL_FILLING_FOK = 1
SYMBOL_FILLING_IOC = 2

ORDER_STATE_STARTED = 0
ORDER_STATE_PLACED = 1
ORDER_STATE_CANCELED = 2
ORDER_STATE_PARTIAL = 3
ORDER_STATE_FILLED = 4
ORDER_STATE_REJECTED = 5
ORDER_STATE_EXPIRED = 6
ORDER_STATE_REQUEST_ADD = 7
ORDER_STATE_REQUEST_MODIFY = 8
ORDER_STATE_REQUEST_CANCEL = 9

ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0
ACCOUNT_MARGIN_MODE_EXCHANGE = 1
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2

POSITION_TYPE_BUY = 0
POSITION_TYPE_SELL = 1

DEAL_TYPE_BUY = 0
DEAL_TYPE_SELL = 1
DEAL_ENTRY_IN = 0
DEAL_ENTRY_OUT = 1
DEAL_ENTRY_INOUT = 2
DEAL_ENTRY_OUT_BY = 3
DEAL_REASON_SL = 4
DEAL_REASON_TP = 5
DEAL_REASON_SO = 6

TRADE_RETCODE_REQUOTE = 10004
TRADE_RETCODE_REJECT = 10006
TRADE_RETCODE_CANCEL = 10007
TRADE_RETCODE_PLACED = 10008
TRADE_RETCODE_DONE = 10009
TRADE_RETCODE_DONE_PARTIAL = 10010
TRADE_RETCODE_ERROR = 10011
TRADE_RETCODE_TIMEOUT = 10012
TRADE_RETCODE_INVALID = 10013
TRADE_RETCODE_INVALID_VOLUME = 10014
TRADE_RETCODE_INVALID_PRICE = 10015
TRADE_RETCODE_INVALID_STOPS = 10016
TRADE_RETCODE_TRADE_DISABLED = 10017
TRADE_RETCODE_MARKET_CLOSED = 10018
TRADE_RETCODE_NO_MONEY = 10019
TRADE_RETCODE_PRICE_CHANGED = 10020
TRADE_RETCODE_PRICE_OFF = 10021
TRADE_RETCODE_INVALID_EXPIRATION = 10022
TRADE_RETCODE_ORDER_CHANGED = 10023
TRADE_RETCODE_TOO_MANY_REQUESTS = 10024
TRADE_RETCODE_NO_CHANGES = 10025
TRADE_RETCODE_SERVER_DISABLES_AT = 10026
TRADE_RETCODE_CLIENT_DISABLES_AT = 10027
TRADE_RETCODE_LOCKED = 10028
TRADE_RETCODE_FROZEN = 10029
TRADE_RETCODE_INVALID_FILL = 10030
TRADE_RETCODE_CONNECTION = 10031
TRADE_RETCODE_ONLY_REAL = 10032
TRADE_RETCODE_LIMIT_ORDERS = 10033
TRADE_RETCODE_LIMIT_VOLUME = 10034
TRADE_RETCODE_INVALID_ORDER = 10035
TRADE_RETCODE_POSITION_CLOSED = 10036
TRADE_RETCODE_LIMIT_POSITIONS = 10040
TRADE_RETCODE_LONG_ONLY = 10042
TRADE_RETCODE_SHORT_ONLY = 10043
TRADE_RETCODE_CLOSE_ONLY = 10044
TRADE_RETCODE_FIFO_CLOSE = 10045

RES_S_OK = 1
RES_E_NOT_FOUND = -4
RES_E_AUTH_FAILED = -6
RES_E_INTERNAL_FAIL = -10000
RES_E_INTERNAL_FAIL_SEND = -10001
RES_E_INTERNAL_FAIL_RECEIVE = -10002
RES_E_INTERNAL_FAIL_INIT = -10003
RES_E_INTERNAL_FAIL_CONNECT = -10004  # "No IPC connection"
RES_E_INTERNAL_FAIL_TIMEOUT = -10005  # "Internal timeout"

# last_error codes after which the terminal link is re-initialized.
IPC_ERRORS = frozenset({RES_E_INTERNAL_FAIL, RES_E_INTERNAL_FAIL_SEND,
                        RES_E_INTERNAL_FAIL_RECEIVE, RES_E_INTERNAL_FAIL_INIT,
                        RES_E_INTERNAL_FAIL_CONNECT, RES_E_INTERNAL_FAIL_TIMEOUT})

TIMEFRAMES: dict[str, int] = {
    "M1": 1, "M2": 2, "M3": 3, "M4": 4, "M5": 5, "M6": 6, "M10": 10, "M12": 12, "M15": 15,
    "M20": 20, "M30": 30, "H1": 16385, "H2": 16386, "H3": 16387, "H4": 16388, "H6": 16390,
    "H8": 16392, "H12": 16396, "D1": 16408, "W1": 32769, "MN1": 49153,
}


# --------------------------------------------------------------------------- transports


class TransportLost(Exception):
    """The link to the terminal (bridge socket) is gone; reconnect before the next call."""


class CallTimeout(Exception):
    """No answer within ``call_timeout_seconds``; the call may still complete remotely."""


class Mt5Transport(Protocol):
    def call(self, name: str, args: Sequence[Any],
             kwargs: Mapping[str, Any]) -> tuple[Any, tuple[int, str]]:
        """Call ``MetaTrader5.<name>``; return (plain result, last_error right after)."""
        ...

    def close(self) -> None: ...


class ModuleTransport:
    """The ``MetaTrader5`` package in-process (or any module-like object with its API)."""

    def __init__(self, module: Any | None = None) -> None:
        if module is None:
            try:
                import MetaTrader5  # Windows only
            except ImportError:
                raise PermanentVenueError(
                    "the MetaTrader5 package is not installed (it exists for Windows only): "
                    "on Linux set mt5.transport = 'bridge' and run executor.brokers.mt5_bridge "
                    "in the terminal's Wine Python") from None
            module = MetaTrader5
        self.module: Any = module
        self._lock = threading.Lock()

    def call(self, name: str, args: Sequence[Any],
             kwargs: Mapping[str, Any]) -> tuple[Any, tuple[int, str]]:
        with self._lock:
            result = getattr(self.module, name)(*args, **kwargs)
            code, message = self.module.last_error()
        return to_plain(result), (int(code), str(message))

    def close(self) -> None:
        pass


class BridgeTransport:
    """rpyc to our bridge: authenticated handshake, JSON payloads, per-call timeout."""

    def __init__(self, host: str, port: int, secret: bytes, *, connect_timeout: float,
                 call_timeout: float) -> None:
        import rpyc
        from rpyc.core.stream import SocketStream

        try:
            stream = SocketStream.connect(host, port, timeout=connect_timeout, nodelay=True,
                                          keepalive=True, attempts=1)
        except OSError as exc:
            raise TransportLost(f"cannot connect to the MT5 bridge at {host}:{port}: "
                                f"{exc}") from None
        try:
            client_handshake(stream.sock, secret, connect_timeout)
            stream.sock.settimeout(None)
        except PermissionError as exc:  # before OSError: PermissionError is one
            stream.close()
            raise PermanentVenueError(str(exc)) from None
        except (OSError, ConnectionError) as exc:
            stream.close()
            raise TransportLost(f"MT5 bridge handshake failed: {exc}") from None
        config = dict(RPYC_CONFIG, sync_request_timeout=call_timeout)
        self._conn = rpyc.connect_stream(stream, service=rpyc.VoidService, config=config)

    def call(self, name: str, args: Sequence[Any],
             kwargs: Mapping[str, Any]) -> tuple[Any, tuple[int, str]]:
        payload = json.dumps({"args": list(args), "kwargs": dict(kwargs)})
        try:
            answer = self._conn.root.call(name, payload)
        except TimeoutError as exc:  # rpyc's AsyncResultTimeout
            raise CallTimeout(f"MT5 bridge call {name} timed out") from exc
        except Exception as exc:
            if hasattr(exc, "_remote_tb"):  # raised by the bridge, rebuilt here by rpyc
                message = exc.args[0] if exc.args else exc.__class__.__name__
                if isinstance(exc, PermissionError):
                    raise PermanentVenueError(f"MT5 bridge refused {name}: {message}") from None
                raise PermanentVenueError(f"MT5 bridge error in {name}: "
                                          f"{exc.__class__.__name__}: {message}") from None
            if isinstance(exc, (EOFError, OSError, ConnectionError)):
                raise TransportLost(f"MT5 bridge connection lost during {name}: "
                                    f"{exc.__class__.__name__}: {exc}") from None
            raise
        decoded = json.loads(answer)
        code, message = decoded.get("last_error") or (RES_S_OK, "")
        return decoded.get("result"), (int(code), str(message))

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a dead link must not raise
            self._conn.close()


# --------------------------------------------------------------------------- client


class _Retry(Exception):
    pass


def _secret_bytes(secret: SecretStr | str | bytes | None) -> bytes:
    if secret is None:
        return b""
    if isinstance(secret, SecretStr):
        return secret.get_secret_value().encode()
    return secret.encode() if isinstance(secret, str) else bytes(secret)


class Mt5Client:
    """Thread-safe; one call at a time (the terminal serialises anyway)."""

    def __init__(self, settings: Mt5Settings, *, password: SecretStr | str | None = None,
                 bridge_secret: SecretStr | str | bytes | None = None,
                 transport_factory: Callable[[], Mt5Transport] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self._password = (password.get_secret_value() if isinstance(password, SecretStr)
                          else password)
        self._sleep = sleep
        if transport_factory is None:
            if settings.transport == "module":
                transport_factory = ModuleTransport
            else:
                secret = _secret_bytes(bridge_secret)
                if len(secret) < 16:
                    raise PermanentVenueError("mt5.transport = 'bridge' needs the bridge's shared "
                                              "secret (mt5_bridge_secret, >= 16 bytes)")

                def transport_factory() -> Mt5Transport:
                    return BridgeTransport(settings.host, settings.port, secret,
                                           connect_timeout=settings.connect_timeout_seconds,
                                           call_timeout=settings.call_timeout_seconds)
        self._factory = transport_factory
        self._transport: Mt5Transport | None = None
        self._initialized = False
        self._lock = threading.RLock()
        self.last_error: tuple[int, str] = (RES_S_OK, "")
        self.reconnects = 0

    # ------------------------------------------------------------------ lifecycle

    def connect(self) -> None:
        """Connect, initialize and wait for the terminal's trade-server connection."""
        with self._lock:
            self._with_retries("connect", lambda t: None)

    def close(self) -> None:
        """Drop the link. Only an in-process module is shut down: a bridge's terminal link
        is shared with other clients (``dta status``), so it stays up."""
        with self._lock:
            if self._transport is not None:
                try:
                    if self._initialized and self.settings.transport == "module":
                        self._transport.call("shutdown", (), {})
                except Exception:  # best effort on the way out
                    pass
                self._drop()

    def _drop(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._initialized = False

    def _ensure(self) -> Mt5Transport:
        if self._transport is None:
            self._transport = self._factory()
            self._initialized = False
            self.reconnects += 1
        t = self._transport
        if not self._initialized:
            s = self.settings
            kwargs: dict[str, Any] = {"timeout": s.initialize_timeout_ms}
            if s.login is not None:
                kwargs["login"] = s.login
                if self._password:
                    kwargs["password"] = self._password
                if s.server:
                    kwargs["server"] = s.server
            args = [s.terminal_path] if s.terminal_path else []
            ok, err = t.call("initialize", args, kwargs)
            if not ok:
                self.last_error = err
                if err[0] == RES_E_AUTH_FAILED:
                    raise PermanentVenueError(f"MT5 login {s.login} on {s.server} failed: {err[1]}")
                raise _Retry(f"MT5 initialize failed: {err}")
            self._wait_connected(t)
            self._initialized = True
            log.info("mt5_initialized", transport=s.transport)
        return t

    def _wait_connected(self, t: Mt5Transport) -> None:
        deadline = time.monotonic() + self.settings.terminal_connect_wait_seconds
        while True:
            info, err = t.call("terminal_info", (), {})
            if isinstance(info, dict) and info.get("connected"):
                return
            if time.monotonic() >= deadline:
                raise _Retry(f"MT5 terminal not connected to its trade server ({err})")
            self._sleep(0.1)

    def _with_retries(self, name: str, fn: Callable[[Mt5Transport], Any],
                      idempotent: bool = True) -> Any:
        s = self.settings
        last = ""
        for attempt in range(s.reconnect_attempts):
            if attempt:
                self._sleep(min(s.reconnect_backoff_seconds * 2 ** (attempt - 1), 30.0))
            try:
                return fn(self._ensure())
            except TransportLost as exc:
                self._drop()
                last = str(exc)
                log.warning("mt5_link_lost", call=name, error=last, attempt=attempt + 1)
                if not idempotent:
                    raise PermanentVenueError(f"{last}: outcome of {name} unknown") from None
            except CallTimeout as exc:
                last = str(exc)
                log.warning("mt5_call_timeout", call=name, attempt=attempt + 1)
                if not idempotent:
                    raise PermanentVenueError(f"{last}: outcome unknown") from None
            except _Retry as exc:
                self._initialized = False
                last = str(exc)
                log.warning("mt5_reinitialize", call=name, error=last, attempt=attempt + 1)
                if not idempotent:
                    raise PermanentVenueError(f"{last}: outcome of {name} unknown") from None
        raise TemporaryVenueError(
            f"MT5 {name} failed after {s.reconnect_attempts} attempts: {last}")

    # ------------------------------------------------------------------ calls

    def call(self, name: str, *args: Any, idempotent: bool = True, **kwargs: Any) -> Any:
        """Call ``MetaTrader5.<name>`` and return its plain result (``None`` allowed).

        A ``None`` answer with an IPC error re-initializes the link and, for reads, retries.
        """

        def once(t: Mt5Transport) -> Any:
            result, err = t.call(name, args, kwargs)
            self.last_error = err
            if result is None and err[0] in IPC_ERRORS:
                self._initialized = False
                if idempotent:
                    raise _Retry(f"{name}: {err[1]} ({err[0]})")
            return result

        with self._lock:
            return self._with_retries(name, once, idempotent)

    def _list(self, name: str, **kwargs: Any) -> list[dict[str, Any]]:
        result = self.call(name, **kwargs)
        if result is None:
            raise TemporaryVenueError(f"MT5 {name} failed: {self.last_error}")
        return list(result)

    def terminal_info(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.call("terminal_info")
        return result

    def account_info(self) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.call("account_info")
        return result

    def symbol_info(self, symbol: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.call("symbol_info", symbol)
        return result

    def symbol_info_tick(self, symbol: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.call("symbol_info_tick", symbol)
        return result

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        return bool(self.call("symbol_select", symbol, enable))

    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int,
                            count: int) -> list[dict[str, Any]] | None:
        result: list[dict[str, Any]] | None = self.call("copy_rates_from_pos", symbol,
                                                        timeframe, start_pos, count)
        return result

    def order_send(self, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """Never retried: raises ``VenueError`` when the outcome is unknown."""
        result: dict[str, Any] | None = self.call("order_send", dict(request),
                                                  idempotent=False)
        return result

    def order_check(self, request: Mapping[str, Any]) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.call("order_check", dict(request))
        return result

    def orders_get(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self._list("orders_get", **kwargs)

    def positions_get(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self._list("positions_get", **kwargs)

    def history_orders_get(self, date_from: datetime | int | None = None,
                           date_to: datetime | int | None = None,
                           **kwargs: Any) -> list[dict[str, Any]]:
        """By date range (``date_from, date_to``) or by ``ticket=``/``position=``."""
        return self._history("history_orders_get", date_from, date_to, kwargs)

    def history_deals_get(self, date_from: datetime | int | None = None,
                          date_to: datetime | int | None = None,
                          **kwargs: Any) -> list[dict[str, Any]]:
        """By date range, or by ``ticket=`` (the order) / ``position=`` (position id)."""
        return self._history("history_deals_get", date_from, date_to, kwargs)

    def _history(self, name: str, date_from: datetime | int | None,
                 date_to: datetime | int | None, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        args = [] if date_from is None or date_to is None else [_epoch(date_from),
                                                                _epoch(date_to)]
        result = self.call(name, *args, **kwargs)
        if result is None:
            raise TemporaryVenueError(f"MT5 {name} failed: {self.last_error}")
        return list(result)


def _epoch(value: datetime | int) -> int:
    """History queries cross as epoch seconds: the package accepts them as documented
    ("datetime object or number of seconds elapsed since 1970.01.01") and JSON carries them."""
    return int(value.timestamp()) if isinstance(value, datetime) else int(value)
