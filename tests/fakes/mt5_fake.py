"""A fake ``MetaTrader5`` module: same call forms, constants, result shapes and error
behaviour as the official package, with a scriptable trade server behind it.

Shapes and behaviour follow the official MetaTrader5 Python documentation
(https://www.mql5.com/en/docs/python_metatrader5):
- ``initialize([path], login=, password=, server=, timeout=, portable=)`` returns ``True`` /
  ``False``; every other function answers ``None`` before it, with ``last_error()`` ==
  ``(RES_E_INTERNAL_FAIL_CONNECT, 'No IPC connection')`` (-10004; mt5lasterror_py lists
  RES_S_OK=1 ... RES_E_INTERNAL_FAIL_TIMEOUT=-10005).
- ``terminal_info()``/``account_info()``/``symbol_info()``/``symbol_info_tick()`` return
  named tuples (``_asdict()``) with the documented fields (mt5terminalinfo_py,
  mt5accountinfo_py, mt5symbolinfo_py, mt5symbolinfotick_py); ``None`` on error.
  ``account_info()`` money fields are in the deposit ``currency``, as the MQL5 account
  properties define them (ACCOUNT_BALANCE, ACCOUNT_CREDIT, ACCOUNT_PROFIT "current profit
  of an account", ACCOUNT_EQUITY, ACCOUNT_MARGIN, ACCOUNT_MARGIN_FREE, ACCOUNT_MARGIN_LEVEL
  "in %"): ``profit`` is the floating profit of the open positions (a buy valued at the
  bid, a sell at the ask), ``equity = balance + credit + profit``, ``margin_free = equity
  - margin``, ``margin_level = equity / margin * 100`` (0 without margin in use).
- ``copy_rates_from_pos(symbol, timeframe, start_pos, count)`` returns a numpy structured
  array with the fields ``time, open, high, low, close, tick_volume, spread, real_volume``
  (mt5copyratesfrompos_py). ``start_pos`` counts from the *present*: 0 is the current,
  still forming bar; the array itself is ordered oldest -> newest, so with start_pos=0 its
  LAST row is the forming bar. ``time`` is epoch seconds in the trade server's time zone.
- ``orders_get``/``positions_get(symbol=, group=, ticket=)`` and
  ``history_orders_get``/``history_deals_get(date_from, date_to, group=)`` or
  ``(ticket=)``/``(position=)`` return tuples of ``TradeOrder``/``TradePosition``/
  ``TradeDeal`` (empty tuple when none, ``None`` on error). For ``history_deals_get``,
  ``ticket`` is the *order* ticket whose deals are wanted (mt5historydealsget_py).
- ``order_send(request)`` returns an ``OrderSendResult`` (retcode, deal, order, volume,
  price, bid, ask, comment, request_id, retcode_external, request) whose ``retcode`` is a
  trade server return code (TRADE_RETCODE_DONE=10009, PLACED=10008, DONE_PARTIAL=10010,
  REQUOTE=10004, ...); ``None`` when the request could not be handed to the terminal.
- ``order_check(request)`` returns an ``OrderCheckResult`` (retcode 0 when valid).
- ``symbol_info().filling_mode`` is the SYMBOL_FILLING_FOK(1)/IOC(2) bitmask; orders use
  ORDER_FILLING_FOK(0)/IOC(1)/RETURN(2).

Position accounting, by ``margin_mode`` (``account_info().margin_mode``; MQL5
ENUM_ACCOUNT_MARGIN_MODE, https://www.mql5.com/en/book/automation/account/
account_netting_hedge, and "MetaTrader 5 features hedging position accounting system",
https://www.mql5.com/en/articles/2299):
- ACCOUNT_MARGIN_MODE_RETAIL_HEDGING (2, the default here): "you can open several positions
  for a symbol, including multidirectional ones". A deal without ``position`` always opens a
  new position (ticket = the order's ticket); an opposite order does not close anything. A
  position is closed or reduced only by naming it: "On a hedging account, the position to
  be closed must be specified using a ticket in the position field" (MQL5 book, "Closing a
  position: full and partial"). "Position reversal is not provided in hedging mode"
  (POSITION_IDENTIFIER, ENUM_POSITION_PROPERTY_INTEGER).
- ACCOUNT_MARGIN_MODE_RETAIL_NETTING (0) and ACCOUNT_MARGIN_MODE_EXCHANGE (1, "Exchange
  market, considering positions in the netting mode"): "only one common position for a
  symbol": a deal in the same direction increases it (DEAL_ENTRY_IN), an opposite one
  decreases or closes it (DEAL_ENTRY_OUT) or reverses it when larger (DEAL_ENTRY_INOUT).
  "During the reversal of a position in the netting mode ... POSITION_IDENTIFIER does not
  change. However, POSITION_TICKET is replaced by the ticket of the order that led to the
  reversal." Naming the position by ticket is allowed there too.
Note the netting consequence for magic numbers: the EA's trades and ours share the one
position of a symbol (tests that need them apart use the hedging default).

Server time: every ``time`` field is epoch seconds on the trade server's wall clock, which
the broker chooses; the usual retail server runs at UTC+2 in winter and UTC+3 in summer,
switching with the US daylight-saving calendar so that the New York close (17:00 New York)
is server midnight. ``server_timezone`` (IANA, with daylight saving) plus
``server_timezone_shift_hours`` models that ("America/New_York" + 7); otherwise the fixed
``server_offset_hours``. ``symbol_info_tick().time`` is the server time of the last quote,
here always now (a live market).

Filling policies (MQL5 docs, ENUM_ORDER_TYPE_FILLING, and the MetaTrader 5 help "Fill
Policy", https://www.metatrader5.com/en/mobile-trading/iphone/help/trade/general_concept/
fill_policy): ORDER_FILLING_FOK "an order can be executed in the specified volume only. If
the necessary amount of a financial instrument is currently unavailable in the market, the
order will not be executed"; ORDER_FILLING_IOC "a trader agrees to execute a deal with the
volume maximally available in the market within that indicated in the order. In case the
order cannot be filled completely, the available volume of the order will be filled, and
the remaining volume will be canceled"; ORDER_FILLING_RETURN keeps the remainder working
(not modelled here: a scripted partial fill on it raises).

Deliberate strictness: ``symbol_info_tick`` and ``copy_rates_from_pos`` answer ``None``
(RES_E_NOT_FOUND) for a symbol not selected in Market Watch, so a missing ``symbol_select``
shows up in tests. An "EA" (another magic number) can
hold orders, positions and deals alongside ours.

Scripting (``script_order_send``): each queued step applies to the next ``order_send``:
``("delay", s)``, ``("requote",)``, ``("price_off",)``, ``("reject", retcode)``,
``("partial", fraction)`` (only that share of the market is there: an IOC order fills it
and its remainder is cancelled, answered DONE_PARTIAL with the history order in
ORDER_STATE_PARTIAL; a FOK order is not executed at all; see "Filling policies" below),
``("accept_then_retcode", retcode)`` (executed, answered e.g.
TIMEOUT), ``("accept_then_none", code)`` (executed, ``None`` + last_error),
``("accept_then_sleep", s)`` (executed, then the answer is late, so the caller times out),
``("accept_then", callback)`` (executed, then ``callback()``: e.g. drop the bridge),
``("none", code)`` (not executed, ``None``). ``drop_ipc()`` cuts the terminal link until the
next ``initialize``; ``connect_after_polls`` delays ``terminal_info().connected``.
``on_order`` (a callback run with the request each time the server executed or placed one,
before the answer leaves) lets a test kill a client at that exact point.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections import namedtuple as _nt
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

# --------------------------------------------------------------------------- constants

TIMEFRAME_M1, TIMEFRAME_M2, TIMEFRAME_M3, TIMEFRAME_M4, TIMEFRAME_M5 = 1, 2, 3, 4, 5
TIMEFRAME_M6, TIMEFRAME_M10, TIMEFRAME_M12, TIMEFRAME_M15 = 6, 10, 12, 15
TIMEFRAME_M20, TIMEFRAME_M30 = 20, 30
TIMEFRAME_H1, TIMEFRAME_H2, TIMEFRAME_H3, TIMEFRAME_H4 = 16385, 16386, 16387, 16388
TIMEFRAME_H6, TIMEFRAME_H8, TIMEFRAME_H12 = 16390, 16392, 16396
TIMEFRAME_D1, TIMEFRAME_W1, TIMEFRAME_MN1 = 16408, 32769, 49153

TRADE_ACTION_DEAL = 1
TRADE_ACTION_PENDING = 5
TRADE_ACTION_SLTP = 6
TRADE_ACTION_MODIFY = 7
TRADE_ACTION_REMOVE = 8
TRADE_ACTION_CLOSE_BY = 10

ORDER_TYPE_BUY = 0
ORDER_TYPE_SELL = 1
ORDER_TYPE_BUY_LIMIT = 2
ORDER_TYPE_SELL_LIMIT = 3
ORDER_TYPE_BUY_STOP = 4
ORDER_TYPE_SELL_STOP = 5
ORDER_TYPE_BUY_STOP_LIMIT = 6
ORDER_TYPE_SELL_STOP_LIMIT = 7
ORDER_TYPE_CLOSE_BY = 8

ORDER_FILLING_FOK = 0
ORDER_FILLING_IOC = 1
ORDER_FILLING_RETURN = 2
ORDER_FILLING_BOC = 3

ORDER_TIME_GTC = 0
ORDER_TIME_DAY = 1
ORDER_TIME_SPECIFIED = 2
ORDER_TIME_SPECIFIED_DAY = 3

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

ORDER_REASON_CLIENT = 0
ORDER_REASON_EXPERT = 3
ORDER_REASON_SL = 4
ORDER_REASON_TP = 5

SYMBOL_FILLING_FOK = 1
SYMBOL_FILLING_IOC = 2
SYMBOL_FILLING_BOC = 4

SYMBOL_TRADE_MODE_DISABLED = 0
SYMBOL_TRADE_MODE_FULL = 4
SYMBOL_TRADE_EXECUTION_INSTANT = 1
SYMBOL_TRADE_EXECUTION_MARKET = 2

POSITION_TYPE_BUY = 0
POSITION_TYPE_SELL = 1
POSITION_REASON_CLIENT = 0
POSITION_REASON_EXPERT = 3

DEAL_TYPE_BUY = 0
DEAL_TYPE_SELL = 1
DEAL_TYPE_BALANCE = 2
DEAL_ENTRY_IN = 0
DEAL_ENTRY_OUT = 1
DEAL_ENTRY_INOUT = 2
DEAL_ENTRY_OUT_BY = 3
DEAL_REASON_CLIENT = 0
DEAL_REASON_EXPERT = 3
DEAL_REASON_SL = 4
DEAL_REASON_TP = 5
DEAL_REASON_SO = 6

ACCOUNT_TRADE_MODE_DEMO = 0
ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0
ACCOUNT_MARGIN_MODE_EXCHANGE = 1
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2

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
TRADE_RETCODE_INVALID_CLOSE_VOLUME = 10038
TRADE_RETCODE_CLOSE_ORDER_EXIST = 10039
TRADE_RETCODE_LIMIT_POSITIONS = 10040
TRADE_RETCODE_REJECT_CANCEL = 10041
TRADE_RETCODE_LONG_ONLY = 10042
TRADE_RETCODE_SHORT_ONLY = 10043
TRADE_RETCODE_CLOSE_ONLY = 10044
TRADE_RETCODE_FIFO_CLOSE = 10045

RES_S_OK = 1
RES_E_FAIL = -1
RES_E_INVALID_PARAMS = -2
RES_E_NO_MEMORY = -3
RES_E_NOT_FOUND = -4
RES_E_INVALID_VERSION = -5
RES_E_AUTH_FAILED = -6
RES_E_UNSUPPORTED = -7
RES_E_AUTO_TRADING_DISABLED = -8
RES_E_INTERNAL_FAIL = -10000
RES_E_INTERNAL_FAIL_SEND = -10001
RES_E_INTERNAL_FAIL_RECEIVE = -10002
RES_E_INTERNAL_FAIL_INIT = -10003
RES_E_INTERNAL_FAIL_CONNECT = -10004
RES_E_INTERNAL_FAIL_TIMEOUT = -10005

_RETCODE_TEXT = {
    TRADE_RETCODE_REQUOTE: "Requote", TRADE_RETCODE_REJECT: "Request rejected",
    TRADE_RETCODE_PLACED: "Order placed", TRADE_RETCODE_DONE: "Request executed",
    TRADE_RETCODE_DONE_PARTIAL: "Only part of the request was completed",
    TRADE_RETCODE_TIMEOUT: "Request canceled by timeout",
    TRADE_RETCODE_INVALID_VOLUME: "Invalid volume in the request",
    TRADE_RETCODE_INVALID_STOPS: "Invalid stops in the request",
    TRADE_RETCODE_MARKET_CLOSED: "Market is closed",
    TRADE_RETCODE_NO_MONEY: "There is not enough money to complete the request",
    TRADE_RETCODE_PRICE_OFF: "There are no quotes to process the request",
    TRADE_RETCODE_CLIENT_DISABLES_AT: "Autotrading disabled by client terminal",
    TRADE_RETCODE_INVALID_FILL: "Invalid order filling type",
    TRADE_RETCODE_CONNECTION: "No connection with the trade server",
}
# Retcodes after which the request left an order (and, for a deal, a deal) on the server.
_EXECUTED = frozenset({TRADE_RETCODE_PLACED, TRADE_RETCODE_DONE, TRADE_RETCODE_DONE_PARTIAL})
_ERROR_TEXT = {RES_S_OK: "Success", RES_E_NOT_FOUND: "Terminal: Not found",
               RES_E_AUTH_FAILED: "Terminal: Authorization failed",
               RES_E_INTERNAL_FAIL_INIT: "IPC initialize failed",
               RES_E_INTERNAL_FAIL_CONNECT: "No IPC connection",
               RES_E_INTERNAL_FAIL_TIMEOUT: "IPC timeout",
               RES_E_INVALID_PARAMS: "Invalid arguments"}

# --------------------------------------------------------------------------- structures

TerminalInfo = _nt("TerminalInfo", (
    "community_account community_connection connected dlls_allowed trade_allowed "
    "tradeapi_disabled email_enabled ftp_enabled notifications_enabled mqid build maxbars "
    "codepage ping_last community_balance retransmission company name language path "
    "data_path commondata_path"))
AccountInfo = _nt("AccountInfo", (
    "login trade_mode leverage limit_orders margin_so_mode trade_allowed trade_expert "
    "margin_mode currency_digits fifo_close balance credit profit equity margin margin_free "
    "margin_level margin_so_call margin_so_so margin_initial margin_maintenance assets "
    "liabilities commission_blocked name server currency company"))
SymbolInfo = _nt("SymbolInfo", (
    "custom chart_mode select visible session_deals session_buy_orders session_sell_orders "
    "volume volumehigh volumelow time digits spread spread_float ticks_bookdepth "
    "trade_calc_mode trade_mode start_time expiration_time trade_stops_level "
    "trade_freeze_level trade_exemode swap_mode swap_rollover3days margin_hedged_use_leg "
    "expiration_mode filling_mode order_mode order_gtc_mode option_mode option_right bid "
    "bidhigh bidlow ask askhigh asklow last lasthigh lastlow volume_real volumehigh_real "
    "volumelow_real option_strike point trade_tick_value trade_tick_value_profit "
    "trade_tick_value_loss trade_tick_size trade_contract_size trade_accrued_interest "
    "trade_face_value trade_liquidity_rate volume_min volume_max volume_step volume_limit "
    "swap_long swap_short margin_initial margin_maintenance session_volume session_turnover "
    "session_interest session_buy_orders_volume session_sell_orders_volume session_open "
    "session_close session_aw session_price_settlement session_price_limit_min "
    "session_price_limit_max margin_hedged price_change price_volatility price_theoretical "
    "price_greeks_delta price_greeks_theta price_greeks_gamma price_greeks_vega "
    "price_greeks_rho price_greeks_omega price_sensitivity basis category currency_base "
    "currency_profit currency_margin bank description exchange formula isin name page path"))
Tick = _nt("Tick", "time bid ask last volume time_msc flags volume_real")
TradeRequest = _nt("TradeRequest", (
    "action magic order symbol volume price stoplimit sl tp deviation type type_filling "
    "type_time expiration comment position position_by"))
OrderSendResult = _nt("OrderSendResult", (
    "retcode deal order volume price bid ask comment request_id retcode_external request"))
OrderCheckResult = _nt("OrderCheckResult", (
    "retcode balance equity profit margin margin_free margin_level comment request"))
TradeOrder = _nt("TradeOrder", (
    "ticket time_setup time_setup_msc time_done time_done_msc time_expiration type type_time "
    "type_filling state magic position_id position_by_id reason volume_initial "
    "volume_current price_open sl tp price_current price_stoplimit symbol comment "
    "external_id"))
TradePosition = _nt("TradePosition", (
    "ticket time time_msc time_update time_update_msc type magic identifier reason volume "
    "price_open sl tp price_current swap profit symbol comment external_id"))
TradeDeal = _nt("TradeDeal", (
    "ticket order time time_msc type entry magic position_id reason volume price commission "
    "swap profit fee symbol comment external_id"))

RATES_DTYPE = np.dtype([("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"),
                        ("close", "<f8"), ("tick_volume", "<u8"), ("spread", "<i4"),
                        ("real_volume", "<u8")])

_TF_SECONDS = {TIMEFRAME_M1: 60, TIMEFRAME_M5: 300, TIMEFRAME_M15: 900, TIMEFRAME_M30: 1800,
               TIMEFRAME_H1: 3600, TIMEFRAME_H4: 14400, TIMEFRAME_D1: 86400}


def _make(cls: Any, **values: Any) -> Any:
    defaults = dict.fromkeys(cls._fields, 0)
    defaults.update(values)
    return cls(**{k: defaults[k] for k in cls._fields})


class FakeMetaTrader5:
    """An instance behaves like the ``MetaTrader5`` module (``serve(fake, ...)`` or
    ``ModuleTransport(fake)``). Test helpers are the methods without an MT5 name."""

    def __init__(self, *, login: int = 5_001_234, password: str = "demo-pass",
                 server: str = "FakeBroker-Demo", server_offset_hours: float = 2.0,
                 balance: float = 10_000.0, leverage: int = 100,
                 margin_mode: int = ACCOUNT_MARGIN_MODE_RETAIL_HEDGING,
                 server_timezone: str | None = None,
                 server_timezone_shift_hours: float = 0.0) -> None:
        for name, value in list(globals().items()):
            if name.isupper() and isinstance(value, int):
                setattr(self, name, value)
        self.account_login = login
        self.account_password = password
        self.account_server = server
        self.server_offset_hours = server_offset_hours
        self.margin_mode = margin_mode
        self.server_zone = ZoneInfo(server_timezone) if server_timezone else None
        self.server_shift_hours = server_timezone_shift_hours
        self.balance = balance
        self.credit = 0.0
        self.leverage = leverage
        self.clock: Callable[[], float] = time.time  # UTC epoch seconds
        self._lock = threading.RLock()
        self._error: tuple[int, str] = (RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
        self.initialized = False
        self.ipc_ok = True
        self.connected = True
        self.connect_after_polls = 0
        self.fail_initialize = 0
        self.trade_allowed = True
        self.calls: list[str] = []
        self.order_script: deque[tuple[Any, ...]] = deque()
        self.symbols: dict[str, dict[str, Any]] = {}
        self.ticks: dict[str, tuple[float, float]] = {}
        self.market_closed: set[str] = set()
        self.rates: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
        self.orders: dict[int, Any] = {}  # active (pending) orders
        self.positions: dict[int, Any] = {}
        self.history_orders: dict[int, Any] = {}
        self.deals: dict[int, Any] = {}
        self.sent_requests: list[dict[str, Any]] = []
        self.on_order: Callable[[dict[str, Any]], None] | None = None
        self._next_ticket = 100_000
        self._next_deal = 500_000
        self._request_id = 0
        self.add_symbol("EURUSD")

    # ================================================================== test helpers

    def add_symbol(self, name: str, *, digits: int = 5, volume_min: float = 0.01,
                   volume_max: float = 50.0, volume_step: float = 0.01,
                   filling_mode: int = SYMBOL_FILLING_FOK | SYMBOL_FILLING_IOC,
                   stops_level: int = 10, contract_size: float = 100_000.0,
                   bid: float = 1.10000, spread_points: int = 10) -> None:
        point = 10.0 ** -digits
        self.symbols[name] = dict(
            name=name, digits=digits, point=point, volume_min=volume_min,
            volume_max=volume_max, volume_step=volume_step, filling_mode=filling_mode,
            trade_stops_level=stops_level, trade_contract_size=contract_size,
            trade_tick_size=point, trade_tick_value=contract_size * point,
            trade_mode=SYMBOL_TRADE_MODE_FULL, trade_exemode=SYMBOL_TRADE_EXECUTION_INSTANT,
            select=False, visible=False, currency_base=name[:3], currency_profit=name[3:6],
            currency_margin=name[:3], description=name, path=f"Forex\\{name}",
            volume_limit=0.0, spread=spread_points, spread_float=True)
        self.set_tick(name, bid, bid + spread_points * point)

    def set_tick(self, symbol: str, bid: float, ask: float) -> None:
        self.ticks[symbol] = (bid, ask)

    def move_price(self, symbol: str, delta: float) -> None:
        bid, ask = self.ticks[symbol]
        self.ticks[symbol] = (round(bid + delta, 8), round(ask + delta, 8))

    def server_offset_seconds(self, utc_epoch: float) -> float:
        """The server's offset from UTC at ``utc_epoch``: fixed, or its zone's (with
        daylight saving) plus the shift (see "Server time" in the module docstring)."""
        if self.server_zone is None:
            return self.server_offset_hours * 3600
        local = datetime.fromtimestamp(utc_epoch, UTC).astimezone(self.server_zone)
        return (local.utcoffset() or timedelta(0)).total_seconds() + \
            self.server_shift_hours * 3600

    def to_server(self, utc_epoch: float) -> int:
        return int(utc_epoch + self.server_offset_seconds(utc_epoch))

    def server_now(self) -> int:
        return self.to_server(self.clock())

    def script_order_send(self, *steps: tuple[Any, ...]) -> None:
        self.order_script.extend(steps)

    def drop_ipc(self) -> None:
        """The terminal link breaks (terminal restarted, IPC lost) until ``initialize``."""
        with self._lock:
            self.ipc_ok = False
            self.initialized = False

    def set_rates(self, symbol: str, timeframe: int,
                  bars: list[tuple[int, float, float, float, float, int, int, int]]) -> None:
        """Bars oldest -> newest, ``time`` in server-time epoch seconds; the last one is the
        bar still forming."""
        self.rates[(symbol, timeframe)] = list(bars)

    def generate_rates(self, symbol: str, timeframe: int, count: int,
                       now_utc: float | None = None, base: float = 1.1) -> None:
        """``count`` bars ending with the one forming at ``now_utc`` (server-time stamps)."""
        step = _TF_SECONDS[timeframe]
        now_server = self.to_server(now_utc if now_utc is not None else self.clock())
        last_open = now_server - now_server % step
        bars = []
        for i in range(count):
            t = last_open - (count - 1 - i) * step
            o = round(base + 0.0001 * (i % 17) - 0.0003 * (i % 5), 5)
            c = round(o + 0.0002 * ((i % 3) - 1), 5)
            bars.append((t, o, max(o, c) + 0.0004, min(o, c) - 0.0004, c, 100 + i, 10, 0))
        self.set_rates(symbol, timeframe, bars)

    def add_ea_position(self, symbol: str, order_type: int, volume: float, *,
                        magic: int = 424242, comment: str = "EA grid #1") -> int:
        """An EA's open position (another magic number), with its order and deal."""
        with self._lock:
            price = self.ticks[symbol][1 if order_type == ORDER_TYPE_BUY else 0]
            req = dict(action=TRADE_ACTION_DEAL, symbol=symbol, volume=volume,
                       type=order_type, price=price, magic=magic, comment=comment,
                       type_filling=ORDER_FILLING_IOC)
            return self._fill_market(req, volume, price)[0]

    def add_ea_order(self, symbol: str, order_type: int, volume: float, price: float, *,
                     magic: int = 424242, comment: str = "EA pending") -> int:
        with self._lock:
            req = dict(action=TRADE_ACTION_PENDING, symbol=symbol, volume=volume,
                       type=order_type, price=price, magic=magic, comment=comment)
            return self._place_pending(req)

    def fill_pending(self, ticket: int, price: float | None = None) -> int:
        """A pending order triggers on the server (e.g. while the daemon is down)."""
        with self._lock:
            order = self.orders.pop(ticket)
            px = price if price is not None else order.price_open
            now = self.server_now()
            position = ticket
            self.positions[position] = _make(
                TradePosition, ticket=position, time=now, time_msc=now * 1000,
                time_update=now, time_update_msc=now * 1000,
                type=POSITION_TYPE_BUY if order.type in (2, 4) else POSITION_TYPE_SELL,
                magic=order.magic, identifier=position, reason=POSITION_REASON_EXPERT,
                volume=order.volume_initial, price_open=px, sl=order.sl, tp=order.tp,
                price_current=px, symbol=order.symbol, comment=order.comment, external_id="")
            self.history_orders[ticket] = order._replace(
                state=ORDER_STATE_FILLED, time_done=now, time_done_msc=now * 1000,
                volume_current=0.0, position_id=position, price_current=px)
            deal_type = DEAL_TYPE_BUY if order.type in (2, 4) else DEAL_TYPE_SELL
            return self._add_deal(ticket, deal_type, DEAL_ENTRY_IN, order.magic, position,
                                  DEAL_REASON_EXPERT, order.volume_initial, px, 0.0,
                                  order.symbol, order.comment)

    def hit_protection(self, position_ticket: int, kind: str = "sl") -> int:
        """The server closes a position at its SL or TP (deal comment ``[sl 1.23456]``)."""
        with self._lock:
            pos = self.positions.pop(position_ticket)
            price = pos.sl if kind == "sl" else pos.tp
            sign = 1 if pos.type == POSITION_TYPE_BUY else -1
            info = self.symbols[pos.symbol]
            profit = round((price - pos.price_open) * sign * pos.volume
                           * info["trade_contract_size"], 2)
            self.balance += profit
            deal_type = DEAL_TYPE_SELL if pos.type == POSITION_TYPE_BUY else DEAL_TYPE_BUY
            order = self._new_ticket()
            now = self.server_now()
            self.history_orders[order] = _make(
                TradeOrder, ticket=order, time_setup=now, time_setup_msc=now * 1000,
                time_done=now, time_done_msc=now * 1000,
                type=ORDER_TYPE_SELL if sign > 0 else ORDER_TYPE_BUY,
                state=ORDER_STATE_FILLED, magic=pos.magic, position_id=pos.identifier,
                reason=ORDER_REASON_SL if kind == "sl" else ORDER_REASON_TP,
                volume_initial=pos.volume, volume_current=0.0, price_open=price,
                price_current=price, symbol=pos.symbol,
                comment=f"[{kind} {price:.{info['digits']}f}]", external_id="")
            return self._add_deal(order, deal_type, DEAL_ENTRY_OUT, pos.magic, pos.identifier,
                                  DEAL_REASON_SL if kind == "sl" else DEAL_REASON_TP,
                                  pos.volume, price, profit, pos.symbol,
                                  f"[{kind} {price:.{info['digits']}f}]")

    def orders_with_comment(self, token: str) -> list[Any]:
        """Every order (active or history) whose comment carries ``token``: the test's
        "exactly one order" check."""
        with self._lock:
            return [o for o in [*self.orders.values(), *self.history_orders.values()]
                    if token in o.comment]

    # ================================================================== MetaTrader5 API

    def _set_error(self, code: int, message: str | None = None) -> None:
        self._error = (code, message if message is not None else _ERROR_TEXT.get(code, ""))

    def _ready(self) -> bool:
        if not (self.initialized and self.ipc_ok):
            self._set_error(RES_E_INTERNAL_FAIL_CONNECT)
            return False
        self._set_error(RES_S_OK)
        return True

    def last_error(self) -> tuple[int, str]:
        return self._error

    def initialize(self, path: str | None = None, *, login: int | None = None,
                   password: str | None = None, server: str | None = None,
                   timeout: int | None = None, portable: bool = False) -> bool:
        del path, timeout, portable
        with self._lock:
            self.calls.append("initialize")
            if self.fail_initialize > 0:
                self.fail_initialize -= 1
                self._set_error(RES_E_INTERNAL_FAIL_INIT)
                return False
            if login is not None and (login != self.account_login
                                      or (password is not None
                                          and password != self.account_password)
                                      or (server is not None and server != self.account_server)):
                self._set_error(RES_E_AUTH_FAILED)
                return False
            self.initialized = True
            self.ipc_ok = True
            self._set_error(RES_S_OK)
            return True

    def shutdown(self) -> None:
        with self._lock:
            self.calls.append("shutdown")
            self.initialized = False
            self._set_error(RES_S_OK)

    def login(self, login: int, password: str | None = None, server: str | None = None,
              timeout: int | None = None) -> bool:
        del timeout
        with self._lock:
            if not self._ready():
                return False
            if login != self.account_login or (password is not None
                                               and password != self.account_password):
                self._set_error(RES_E_AUTH_FAILED)
                return False
            del server
            return True

    def terminal_info(self) -> Any:
        with self._lock:
            self.calls.append("terminal_info")
            if not self._ready():
                return None
            if self.connect_after_polls > 0:
                self.connect_after_polls -= 1
                connected = False
            else:
                connected = self.connected
            return _make(TerminalInfo, connected=connected, trade_allowed=self.trade_allowed,
                         dlls_allowed=False, tradeapi_disabled=False, build=4755,
                         maxbars=100_000, codepage=0, ping_last=12_000, company="Fake Ltd",
                         name="MetaTrader 5", language="English",
                         path="C:\\Program Files\\MetaTrader 5", data_path="C:\\mt5",
                         commondata_path="C:\\common", community_account=False,
                         community_connection=False, email_enabled=False, ftp_enabled=False,
                         notifications_enabled=False, mqid=False, community_balance=0.0,
                         retransmission=0.0)

    def account_info(self) -> Any:
        with self._lock:
            if not self._ready():
                return None
            margin = sum(self._margin(p.symbol, p.volume, p.price_open)
                         for p in self.positions.values())
            profit = self.floating_profit()
            equity = round(self.balance + self.credit + profit, 2)
            return _make(AccountInfo, login=self.account_login,
                         trade_mode=ACCOUNT_TRADE_MODE_DEMO, leverage=self.leverage,
                         limit_orders=200, trade_allowed=True, trade_expert=True,
                         margin_mode=self.margin_mode, currency_digits=2,
                         balance=self.balance, credit=self.credit, profit=profit,
                         equity=equity, margin=margin, margin_free=equity - margin,
                         margin_level=equity / margin * 100 if margin else 0.0,
                         name="Demo", server=self.account_server, currency="USD",
                         company="Fake Ltd")

    def floating_profit(self) -> float:
        """Profit of the open positions at the current quotes (test helper, also the
        ``profit`` of ``account_info``): a buy closes at the bid, a sell at the ask."""
        with self._lock:
            total = 0.0
            for p in self.positions.values():
                bid, ask = self.ticks[p.symbol]
                buy = p.type == POSITION_TYPE_BUY
                close = bid if buy else ask
                total += ((close - p.price_open) * (1 if buy else -1) * p.volume
                          * self.symbols[p.symbol]["trade_contract_size"])
            return round(total, 2)

    def symbol_info(self, symbol: str) -> Any:
        with self._lock:
            if not self._ready():
                return None
            info = self.symbols.get(symbol)
            if info is None:
                self._set_error(RES_E_NOT_FOUND)
                return None
            bid, ask = self.ticks[symbol]
            return _make(SymbolInfo, **info, bid=bid, ask=ask, time=self.server_now())

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        with self._lock:
            if not self._ready():
                return False
            if symbol not in self.symbols:
                self._set_error(RES_E_NOT_FOUND)
                return False
            self.symbols[symbol]["select"] = bool(enable)
            self.symbols[symbol]["visible"] = bool(enable)
            return True

    def symbol_info_tick(self, symbol: str) -> Any:
        with self._lock:
            if not self._ready():
                return None
            if not self.symbols.get(symbol, {}).get("select"):
                self._set_error(RES_E_NOT_FOUND)
                return None
            bid, ask = self.ticks[symbol]
            now = self.server_now()
            return Tick(now, bid, ask, 0.0, 0, now * 1000, 6, 0.0)

    def copy_rates_from_pos(self, symbol: str, timeframe: int, start_pos: int,
                            count: int) -> Any:
        with self._lock:
            self.calls.append("copy_rates_from_pos")
            if not self._ready():
                return None
            if not self.symbols.get(symbol, {}).get("select"):
                self._set_error(RES_E_NOT_FOUND)
                return None
            bars = self.rates.get((symbol, timeframe), [])
            end = len(bars) - int(start_pos)
            if end <= 0 or count <= 0:
                self._set_error(RES_E_INVALID_PARAMS)
                return None
            chosen = bars[max(0, end - int(count)):end]
            return np.array(chosen, dtype=RATES_DTYPE)

    def orders_get(self, symbol: str | None = None, group: str | None = None,
                   ticket: int | None = None) -> Any:
        with self._lock:
            if not self._ready():
                return None
            return tuple(o for o in self.orders.values()
                         if _match(o, symbol, group, ticket))

    def positions_get(self, symbol: str | None = None, group: str | None = None,
                      ticket: int | None = None) -> Any:
        with self._lock:
            if not self._ready():
                return None
            return tuple(p for p in self.positions.values()
                         if _match(p, symbol, group, ticket))

    def history_orders_get(self, date_from: Any = None, date_to: Any = None, *,
                           group: str | None = None, ticket: int | None = None,
                           position: int | None = None) -> Any:
        with self._lock:
            if not self._ready():
                return None
            if ticket is not None:
                return tuple(o for o in self.history_orders.values() if o.ticket == ticket)
            if position is not None:
                return tuple(o for o in self.history_orders.values()
                             if o.position_id == position)
            if date_from is None or date_to is None:
                self._set_error(RES_E_INVALID_PARAMS)
                return None
            lo, hi = _ts(date_from), _ts(date_to)
            return tuple(o for o in self.history_orders.values()
                         if lo <= o.time_setup <= hi and _match(o, None, group, None))

    def history_deals_get(self, date_from: Any = None, date_to: Any = None, *,
                          group: str | None = None, ticket: int | None = None,
                          position: int | None = None) -> Any:
        with self._lock:
            if not self._ready():
                return None
            if ticket is not None:
                return tuple(d for d in self.deals.values() if d.order == ticket)
            if position is not None:
                return tuple(d for d in self.deals.values() if d.position_id == position)
            if date_from is None or date_to is None:
                self._set_error(RES_E_INVALID_PARAMS)
                return None
            lo, hi = _ts(date_from), _ts(date_to)
            return tuple(d for d in self.deals.values()
                         if lo <= d.time <= hi and _match(d, None, group, None))

    def order_check(self, request: dict[str, Any]) -> Any:
        with self._lock:
            if not self._ready():
                return None
            retcode = self._validate(dict(request))
            margin = self._margin(request["symbol"], float(request.get("volume", 0)),
                                  float(request.get("price", 0) or 0))
            return _make(OrderCheckResult, retcode=0 if retcode is None else retcode,
                         balance=self.balance, equity=self.balance, margin=margin,
                         margin_free=self.balance - margin,
                         comment="Done" if retcode is None else _RETCODE_TEXT.get(retcode, ""),
                         request=self._request_tuple(request))

    def order_send(self, request: dict[str, Any]) -> Any:
        step = self.order_script.popleft() if self.order_script else ("ok",)
        kind = step[0]
        if kind == "delay":
            time.sleep(step[1])
            kind = "ok"
        with self._lock:
            self.calls.append("order_send")
            if not self._ready():
                return None
            req = dict(request)
            self.sent_requests.append(req)
            if kind == "none":
                self._set_error(step[1])
                return None
            if kind == "requote":
                self.move_price(req["symbol"], 0.0003)
                return self._result(req, TRADE_RETCODE_REQUOTE)
            if kind == "price_off":
                return self._result(req, TRADE_RETCODE_PRICE_OFF)
            if kind == "reject":
                return self._result(req, step[1])
            result = self._execute(req, partial=step[1] if kind == "partial" else None)
        if self.on_order is not None and result.retcode in _EXECUTED:
            self.on_order(req)
        if kind == "accept_then_retcode":
            return result._replace(retcode=step[1], deal=0, order=0, volume=0.0, price=0.0,
                                   comment=_RETCODE_TEXT.get(step[1], ""))
        if kind == "accept_then_none":
            self._set_error(step[1])
            return None
        if kind == "accept_then_sleep":
            time.sleep(step[1])
        if kind == "accept_then":
            step[1]()
        return result

    # ================================================================== the "server"

    def _new_ticket(self) -> int:
        self._next_ticket += 1
        return self._next_ticket

    def _request_tuple(self, req: dict[str, Any]) -> Any:
        return _make(TradeRequest, **{k: req.get(k, 0 if k != "symbol" and k != "comment"
                                              else "") for k in TradeRequest._fields})

    def _result(self, req: dict[str, Any], retcode: int, *, deal: int = 0, order: int = 0,
                volume: float = 0.0, price: float = 0.0) -> Any:
        self._request_id += 1
        bid, ask = self.ticks.get(req.get("symbol", ""), (0.0, 0.0))
        return OrderSendResult(retcode, deal, order, volume, price, bid, ask,
                               _RETCODE_TEXT.get(retcode, ""), self._request_id, 0,
                               self._request_tuple(req))

    def _margin(self, symbol: str, volume: float, price: float) -> float:
        info = self.symbols.get(symbol)
        if info is None:
            return 0.0
        return volume * info["trade_contract_size"] * price / self.leverage

    def _validate(self, req: dict[str, Any]) -> int | None:
        """The retcode refusing ``req``, or ``None`` when the server would take it."""
        symbol = req.get("symbol")
        info = self.symbols.get(symbol or "")
        if info is None:
            return TRADE_RETCODE_INVALID
        if not self.trade_allowed:
            return TRADE_RETCODE_CLIENT_DISABLES_AT
        if symbol in self.market_closed:
            return TRADE_RETCODE_MARKET_CLOSED
        volume = float(req.get("volume", 0))
        steps = volume / info["volume_step"]
        if (volume < info["volume_min"] - 1e-12 or volume > info["volume_max"] + 1e-12
                or abs(steps - round(steps)) > 1e-6):
            return TRADE_RETCODE_INVALID_VOLUME
        action = req.get("action")
        otype = req.get("type")
        bid, ask = self.ticks[symbol]  # type: ignore[index]
        point = info["point"]
        if action == TRADE_ACTION_DEAL:
            filling = req.get("type_filling", ORDER_FILLING_FOK)
            mask = info["filling_mode"]
            if ((filling == ORDER_FILLING_FOK and not mask & SYMBOL_FILLING_FOK)
                    or (filling == ORDER_FILLING_IOC and not mask & SYMBOL_FILLING_IOC)):
                return TRADE_RETCODE_INVALID_FILL
            price = ask if otype == ORDER_TYPE_BUY else bid
            if req.get("position"):
                if int(req["position"]) not in self.positions:
                    return TRADE_RETCODE_POSITION_CLOSED
                return None
        elif action == TRADE_ACTION_PENDING:
            price = float(req.get("price", 0))
            if price <= 0:
                return TRADE_RETCODE_INVALID_PRICE
        else:
            return TRADE_RETCODE_INVALID
        buy = otype in (ORDER_TYPE_BUY, ORDER_TYPE_BUY_LIMIT, ORDER_TYPE_BUY_STOP)
        gap = info["trade_stops_level"] * point
        sl, tp = float(req.get("sl") or 0), float(req.get("tp") or 0)
        if sl and (sl > price - gap if buy else sl < price + gap):
            return TRADE_RETCODE_INVALID_STOPS
        if tp and (tp < price + gap if buy else tp > price - gap):
            return TRADE_RETCODE_INVALID_STOPS
        used = sum(self._margin(p.symbol, p.volume, p.price_open)
                   for p in self.positions.values())
        if self._margin(symbol, volume, price) > self.balance - used:  # type: ignore[arg-type]
            return TRADE_RETCODE_NO_MONEY
        return None

    def _execute(self, req: dict[str, Any], partial: float | None) -> Any:
        retcode = self._validate(req)
        if retcode is not None:
            return self._result(req, retcode)
        symbol = req["symbol"]
        info = self.symbols[symbol]
        if req["action"] == TRADE_ACTION_PENDING:
            ticket = self._place_pending(req)
            return self._result(req, TRADE_RETCODE_PLACED, order=ticket,
                                volume=float(req["volume"]), price=float(req["price"]))
        bid, ask = self.ticks[symbol]
        market = ask if req["type"] == ORDER_TYPE_BUY else bid
        asked = float(req.get("price") or 0)
        deviation = int(req.get("deviation") or 0)
        if asked and abs(asked - market) > deviation * info["point"] + 1e-12:
            return self._result(req, TRADE_RETCODE_REQUOTE)
        volume = float(req["volume"])
        if partial is not None:
            filling = req.get("type_filling", ORDER_FILLING_FOK)
            if filling == ORDER_FILLING_FOK:
                # All or nothing: "the order will not be executed" (the retcode for this
                # case is not documented; the request is refused).
                return self._result(req, TRADE_RETCODE_REJECT)
            if filling != ORDER_FILLING_IOC:
                raise ValueError("fake: a partial fill is modelled for IOC (remainder "
                                 "cancelled) and FOK (not executed) only")
            step = info["volume_step"]
            volume = max(step, round(int(volume * partial / step + 1e-6) * step, 8))
        netted = (self._netting_position(symbol)
                  if self.margin_mode != ACCOUNT_MARGIN_MODE_RETAIL_HEDGING else None)
        if req.get("position"):
            order, deal = self._close(req, volume, market)
        elif netted is not None:
            order, deal = self._net_deal(req, netted, volume, market)
        else:
            order, deal = self._fill_market(req, volume, market,
                                            partial=partial is not None)
        return self._result(req, TRADE_RETCODE_DONE_PARTIAL if partial is not None
                            else TRADE_RETCODE_DONE, deal=deal, order=order, volume=volume,
                            price=market)

    def _fill_market(self, req: dict[str, Any], volume: float, price: float,
                     partial: bool = False) -> tuple[int, int]:
        ticket = self._new_ticket()
        now = self.server_now()
        otype = int(req["type"])
        magic = int(req.get("magic") or 0)
        comment = str(req.get("comment") or "")
        requested = float(req["volume"])
        self.history_orders[ticket] = _make(
            TradeOrder, ticket=ticket, time_setup=now, time_setup_msc=now * 1000,
            time_done=now, time_done_msc=now * 1000, type=otype,
            type_filling=int(req.get("type_filling") or 0), type_time=ORDER_TIME_GTC,
            state=ORDER_STATE_PARTIAL if partial else ORDER_STATE_FILLED, magic=magic,
            position_id=ticket, reason=ORDER_REASON_EXPERT, volume_initial=requested,
            volume_current=round(requested - volume, 8), price_open=price,
            sl=float(req.get("sl") or 0), tp=float(req.get("tp") or 0), price_current=price,
            symbol=req["symbol"], comment=comment, external_id="")
        self.positions[ticket] = _make(
            TradePosition, ticket=ticket, time=now, time_msc=now * 1000, time_update=now,
            time_update_msc=now * 1000,
            type=POSITION_TYPE_BUY if otype == ORDER_TYPE_BUY else POSITION_TYPE_SELL,
            magic=magic, identifier=ticket, reason=POSITION_REASON_EXPERT, volume=volume,
            price_open=price, sl=float(req.get("sl") or 0), tp=float(req.get("tp") or 0),
            price_current=price, symbol=req["symbol"], comment=comment, external_id="")
        deal = self._add_deal(ticket, DEAL_TYPE_BUY if otype == ORDER_TYPE_BUY
                              else DEAL_TYPE_SELL, DEAL_ENTRY_IN, magic, ticket,
                              DEAL_REASON_EXPERT, volume, price, 0.0, req["symbol"], comment)
        return ticket, deal

    def _netting_position(self, symbol: str) -> Any:
        return next((p for p in self.positions.values() if p.symbol == symbol), None)

    def _net_deal(self, req: dict[str, Any], pos: Any, volume: float,
                  price: float) -> tuple[int, int]:
        """A deal on a netting/exchange account whose symbol already has its one position:
        added to, reduced, closed or reversed (see the module docstring)."""
        buy = int(req["type"]) == ORDER_TYPE_BUY
        same = (pos.type == POSITION_TYPE_BUY) == buy
        if not same and volume <= pos.volume + 1e-12:
            return self._close(dict(req, position=pos.ticket), volume, price)
        ticket = self._new_ticket()
        now = self.server_now()
        magic = int(req.get("magic") or 0)
        comment = str(req.get("comment") or "")
        self.history_orders[ticket] = _make(
            TradeOrder, ticket=ticket, time_setup=now, time_setup_msc=now * 1000,
            time_done=now, time_done_msc=now * 1000, type=int(req["type"]),
            type_filling=int(req.get("type_filling") or 0), type_time=ORDER_TIME_GTC,
            state=ORDER_STATE_FILLED, magic=magic, position_id=pos.identifier,
            reason=ORDER_REASON_EXPERT, volume_initial=float(req["volume"]),
            volume_current=0.0, price_open=price, sl=float(req.get("sl") or 0),
            tp=float(req.get("tp") or 0), price_current=price, symbol=pos.symbol,
            comment=comment, external_id="")
        deal_type = DEAL_TYPE_BUY if buy else DEAL_TYPE_SELL
        if same:
            total = round(pos.volume + volume, 8)
            avg = (pos.price_open * pos.volume + price * volume) / total
            self.positions[pos.ticket] = pos._replace(
                volume=total, price_open=avg, time_update=now, time_update_msc=now * 1000,
                sl=float(req.get("sl") or pos.sl), tp=float(req.get("tp") or pos.tp))
            deal = self._add_deal(ticket, deal_type, DEAL_ENTRY_IN, magic, pos.identifier,
                                  DEAL_REASON_EXPERT, volume, price, 0.0, pos.symbol, comment)
            return ticket, deal
        # Reversal: the old volume closes at a profit, the rest opens the other way under
        # the same identifier and the reversing order's ticket.
        sign = 1 if pos.type == POSITION_TYPE_BUY else -1
        profit = round((price - pos.price_open) * sign * pos.volume
                       * self.symbols[pos.symbol]["trade_contract_size"], 2)
        self.balance += profit
        rest = round(volume - pos.volume, 8)
        del self.positions[pos.ticket]
        self.positions[ticket] = pos._replace(
            ticket=ticket, type=POSITION_TYPE_BUY if buy else POSITION_TYPE_SELL, volume=rest,
            price_open=price, price_current=price, time_update=now,
            time_update_msc=now * 1000, sl=float(req.get("sl") or 0),
            tp=float(req.get("tp") or 0), magic=magic, comment=comment)
        deal = self._add_deal(ticket, deal_type, DEAL_ENTRY_INOUT, magic, pos.identifier,
                              DEAL_REASON_EXPERT, volume, price, profit, pos.symbol, comment)
        return ticket, deal

    def _close(self, req: dict[str, Any], volume: float, price: float) -> tuple[int, int]:
        pos = self.positions[int(req["position"])]
        ticket = self._new_ticket()
        now = self.server_now()
        sign = 1 if pos.type == POSITION_TYPE_BUY else -1
        volume = min(volume, pos.volume)
        profit = round((price - pos.price_open) * sign * volume
                       * self.symbols[pos.symbol]["trade_contract_size"], 2)
        self.balance += profit
        comment = str(req.get("comment") or "")
        self.history_orders[ticket] = _make(
            TradeOrder, ticket=ticket, time_setup=now, time_setup_msc=now * 1000,
            time_done=now, time_done_msc=now * 1000, type=int(req["type"]),
            state=ORDER_STATE_FILLED, magic=int(req.get("magic") or 0),
            position_id=pos.identifier,
            reason=ORDER_REASON_EXPERT, volume_initial=volume, volume_current=0.0,
            price_open=price, price_current=price, symbol=pos.symbol, comment=comment,
            external_id="")
        remaining = round(pos.volume - volume, 8)
        if remaining <= 0:
            del self.positions[pos.ticket]
        else:
            self.positions[pos.ticket] = pos._replace(volume=remaining)
        deal = self._add_deal(ticket, DEAL_TYPE_SELL if sign > 0 else DEAL_TYPE_BUY,
                              DEAL_ENTRY_OUT, int(req.get("magic") or 0), pos.identifier,
                              DEAL_REASON_EXPERT, volume, price, profit, pos.symbol, comment)
        return ticket, deal

    def _place_pending(self, req: dict[str, Any]) -> int:
        ticket = self._new_ticket()
        now = self.server_now()
        self.orders[ticket] = _make(
            TradeOrder, ticket=ticket, time_setup=now, time_setup_msc=now * 1000,
            type=int(req["type"]), type_filling=ORDER_FILLING_RETURN, type_time=ORDER_TIME_GTC,
            state=ORDER_STATE_PLACED, magic=int(req.get("magic") or 0), position_id=0,
            reason=ORDER_REASON_EXPERT, volume_initial=float(req["volume"]),
            volume_current=float(req["volume"]), price_open=float(req["price"]),
            sl=float(req.get("sl") or 0), tp=float(req.get("tp") or 0),
            price_current=float(req["price"]), symbol=req["symbol"],
            comment=str(req.get("comment") or ""), external_id="")
        return ticket

    def _add_deal(self, order: int, deal_type: int, entry: int, magic: int, position: int,
                  reason: int, volume: float, price: float, profit: float, symbol: str,
                  comment: str) -> int:
        self._next_deal += 1
        now = self.server_now()
        self.deals[self._next_deal] = _make(
            TradeDeal, ticket=self._next_deal, order=order, time=now, time_msc=now * 1000,
            type=deal_type, entry=entry, magic=magic, position_id=position, reason=reason,
            volume=volume, price=price, commission=0.0, swap=0.0, profit=profit, fee=0.0,
            symbol=symbol, comment=comment, external_id="")
        return self._next_deal


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.replace(tzinfo=value.tzinfo or UTC).timestamp()
    return float(value)


def _match(item: Any, symbol: str | None, group: str | None, ticket: int | None) -> bool:
    if symbol is not None and item.symbol != symbol:
        return False
    if ticket is not None and item.ticket != ticket:
        return False
    if group is not None:
        pattern = group.replace("*", "")
        if pattern and pattern not in item.symbol:
            return False
    return True


# --------------------------------------------------------------------------- test wiring

SECRET = b"test-bridge-secret-0123456789abcdef"


def start_bridge(fake: FakeMetaTrader5, secret: bytes = SECRET) -> Any:
    """Our real bridge serving ``fake`` on a free loopback port (caller closes it)."""
    from executor.brokers.mt5_bridge import serve

    return serve(fake, "127.0.0.1", 0, secret, block=False, handshake_timeout=0.5)


def client_settings(fake: FakeMetaTrader5, port: int, **overrides: Any) -> Any:
    from executor.brokers.config import Mt5Settings

    values: dict[str, Any] = dict(
        transport="bridge", port=port, login=fake.account_login, server=fake.account_server,
        server_utc_offset_hours=fake.server_offset_hours, call_timeout_seconds=5.0,
        connect_timeout_seconds=2.0, reconnect_backoff_seconds=0.01,
        terminal_connect_wait_seconds=2.0)
    if fake.server_zone is not None:
        values.update(server_utc_offset_hours=0.0, server_timezone=fake.server_zone.key,
                      server_timezone_shift_hours=fake.server_shift_hours)
    values.update(overrides)
    return Mt5Settings(**values)
