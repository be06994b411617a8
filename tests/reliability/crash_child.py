"""The crash-safety child: submits live orders through ``OrderRouter`` (journal on SQLite or
PostgreSQL) to a venue the test runs, until it is SIGKILLed. Three venues, all through the
real client library:
- ``ccxt``: ``ccxt.binance`` against the fake exchange (tests/fakes/binance_fake.py);
- ``mt5``: ``Mt5Client`` over rpyc to our bridge serving the fake MetaTrader5 module
  (tests/fakes/mt5_fake.py); the client order id travels in the order comment;
- ``spot-protect``: ``ccxt.binance`` against the same spot fake, each long with its stop
  and target as one OCO placed by the engine; that life is ``crash_spot_life.py``'s;
- ``swap``: ``ccxt.binanceusdm`` through ``CcxtSwapBroker`` against the USD-M fake
  (tests/fakes/binance_usdm), each entry with its stop and target placed at the exchange
  by the engine; that life is ``crash_swap_life.py``'s.

One life:
    python tests/reliability/crash_child.py run --venue V --port P --journal URL
        [--account A] [--orders N] [--settle] [--handshake]
starts like the daemon does (resolve what the previous life left ``submitting``/``unknown``,
by lookup only), then submits orders 0..N-1 with deterministic client ids, so a new life
re-runs the same "cycles" and must find, never re-send, what an earlier life sent. With
``--settle`` it finally waits out the resolver's grace so nothing stays unknown. With
``--handshake`` (swap) it waits after ``ready`` (and, settling, after ``settled``) for the
test's SIGUSR1: the test checks the position's stop at the exchange meanwhile.

Zygote (to afford 50 kills in a few seconds; importing ccxt, rpyc and SQLAlchemy takes ~2 s):
    python tests/reliability/crash_child.py zygote
imports everything once, then for every ``spawn <json args>`` line on stdin forks a life
and prints ``pid <n>``; lives print ``ready <pid>`` and ``exit <pid> <code>``. The test
kills lives with SIGKILL by pid; the zygote never touches the journal or the network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests/: the fakes' settings

# Imported lazily by the brokers and the journal; preloaded here for the zygote.
import ccxt  # noqa: F401
import rpyc  # noqa: F401
from crash_spot_life import SPOT_STEP, SPOT_SYMBOL, SPOT_VOLUME, spot_life
from crash_swap_life import STEP, SYMBOL, VOLUME, protected_life
from support.builders import an_intent

with contextlib.suppress(ImportError):  # the PostgreSQL driver, when installed
    import psycopg  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

from fakes.binance_usdm.exchange import api_urls
from fakes.mt5_fake import SECRET as BRIDGE_SECRET
from fakes.mt5_fake import FakeMetaTrader5, client_settings

from domain import (
    OrderIntent,
    OrderSide,
    OrderType,
    client_order_id,
)
from executor.brokers.base import Broker
from executor.brokers.ccxt_broker import CcxtBroker, make_exchange
from executor.brokers.ccxt_swap import CcxtSwapBroker, make_swap_exchange
from executor.brokers.config import CcxtSettings, ResolverSettings, SwapSettings
from executor.brokers.mt5 import Mt5Broker
from executor.brokers.mt5_client import Mt5Client
from executor.engine.resolver import UNRESOLVED, OrderResolver
from executor.engine.router import OrderRouter
from executor.journal.store import Journal

BAR0 = datetime(2024, 1, 1, tzinfo=UTC)
API_KEY = "fake-key"
SECRET = "fake-secret"
# Binance refuses a request older than recvWindow; an order not found after longer than
# that can no longer appear, so the grace is set just above it. The MT5 bridge has no such
# window, but the test's terminal executes a request within milliseconds of its arrival
# (scripted delays stay far below the grace), so the same grace bounds it there too.
RECV_WINDOW_MS = 1000
GRACE = ResolverSettings(grace_lookups=2, grace_seconds=1.5, backoff_seconds=0.1,
                         max_backoff_seconds=0.5)


@dataclass(frozen=True, slots=True)
class Market:
    """What a venue trades in the test: symbol, smallest volume, volume step."""

    symbol: str
    volume: float
    step: float


MARKETS = {"ccxt": Market("BTC/USDT", 0.001, 0.0001), "mt5": Market("EURUSD", 0.01, 0.01),
           "swap": Market(SYMBOL, VOLUME, STEP),
           "spot-protect": Market(SPOT_SYMBOL, SPOT_VOLUME, SPOT_STEP)}


def intent(venue: str, account: str, k: int) -> OrderIntent:
    m = MARKETS[venue]
    bar = BAR0 + timedelta(minutes=15 * k)
    side = OrderSide.BUY if k % 3 else OrderSide.SELL
    return an_intent(client_order_id=client_order_id(account, m.symbol, bar, f"crash:{k}"),
                     account=account, symbol=m.symbol, side=side,
                     volume=round(m.volume + m.step * (k % 7), 8), order_type=OrderType.MARKET,
                     bar_time=bar)


def make_broker(venue: str, port: int) -> Broker:
    """The live broker for ``venue``, pointed at the test's loopback server on ``port``."""
    if venue in ("ccxt", "spot-protect"):
        settings = CcxtSettings(symbols=(MARKETS[venue].symbol,), timeout_ms=2000,
                                rate_limit_ms=1, recv_window_ms=RECV_WINDOW_MS,
                                read_retries=2, read_backoff_seconds=0.05)
        base = f"http://127.0.0.1:{port}"
        exchange = make_exchange(settings, api_key=API_KEY, secret=SECRET,
                                 api_urls={"public": f"{base}/api/v3",
                                           "private": f"{base}/api/v3"})
        return CcxtBroker(exchange, settings)
    if venue == "swap":  # set up (one-way, margin mode, leverage) at every start
        settings = CcxtSettings(exchange="binanceusdm", symbols=(MARKETS[venue].symbol,),
                                timeout_ms=2000, rate_limit_ms=1,
                                recv_window_ms=RECV_WINDOW_MS, read_retries=2,
                                read_backoff_seconds=0.05)
        exchange = make_swap_exchange(settings, api_key=API_KEY, secret=SECRET,
                                      api_urls=api_urls(f"http://127.0.0.1:{port}"))
        broker = CcxtSwapBroker(exchange, settings,
                                SwapSettings(margin_mode="cross", leverage=5))
        broker.configure()
        return broker
    if venue == "mt5":
        terminal = FakeMetaTrader5()  # the account the test's terminal serves (its defaults)
        mt5 = client_settings(terminal, port, call_timeout_seconds=10.0,
                              connect_timeout_seconds=5.0, terminal_connect_wait_seconds=5.0)
        client = Mt5Client(mt5, password=terminal.account_password,
                           bridge_secret=BRIDGE_SECRET)
        return Mt5Broker(client, mt5)
    raise ValueError(f"unknown venue {venue!r}")


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())  # one write: atomic on a pipe, no buffering


def quiet_logs() -> None:
    """Logs to stderr: stdout carries the protocol lines the test reads."""
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


def run(venue: str, port: int, journal_url: str, account: str, orders: int, settle: bool,
        migrate: bool = True, handshake: bool = False) -> int:
    broker = make_broker(venue, port)
    journal = Journal.open(journal_url, migrate_schema=migrate)
    if isinstance(broker, CcxtSwapBroker):
        return protected_life(broker, journal, account, orders, settle, handshake, GRACE,
                              say)
    if venue == "spot-protect":
        assert isinstance(broker, CcxtBroker)
        return spot_life(broker, journal, account, orders, settle, handshake, GRACE, say)
    broker.restore(journal.orders.all(account), [], [])
    router = OrderRouter(journal, broker)
    resolver = OrderResolver(journal, broker, GRACE)
    resolver.resolve_pending(account)  # start-up: settle what the last life left in doubt
    journal.commit()
    say(f"ready {os.getpid()}")
    # Like the daemon, a new life resumes after the last settled cycle instead of replaying
    # old ones; an order still in doubt goes through the router again (lookup, no send).
    settled = {o.client_order_id for o in journal.orders.all(account)
               if o.state not in UNRESOLVED}
    for k in range(orders):
        i = intent(venue, account, k)
        if i.client_order_id in settled:
            continue
        router.submit(i)  # journal first, then the venue; an existing id is looked up
        journal.commit()  # the end of the cycle
    if settle:
        left = resolver.settle(account, max_seconds=GRACE.grace_seconds + 5)
        journal.commit()
        if left:
            say(f"unresolved {[o.client_order_id for o in left]}")
            return 3
        pending = journal.orders.all(account, list(UNRESOLVED))
        assert not pending, pending
    journal.close()
    return 0


def zygote() -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # lives are reaped by the kernel
    say(f"zygote {os.getpid()}")
    for line in sys.stdin:
        cmd, _, payload = line.strip().partition(" ")
        if cmd != "spawn":
            continue
        args = json.loads(payload)
        pid = os.fork()
        if pid == 0:  # a life
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 1
            try:
                code = run(**args)
            except BaseException as exc:
                say(f"error {os.getpid()} {exc.__class__.__name__}: {exc}")
            finally:
                say(f"exit {os.getpid()} {code}")
                os._exit(code)
        say(f"pid {pid}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    life = sub.add_parser("run")
    life.add_argument("--venue", choices=sorted(MARKETS), default="ccxt")
    life.add_argument("--port", type=int, required=True)
    life.add_argument("--journal", required=True)
    life.add_argument("--account", default="crash-acct")
    life.add_argument("--orders", type=int, default=100)
    life.add_argument("--settle", action="store_true")
    life.add_argument("--handshake", action="store_true")
    sub.add_parser("zygote")
    ns = parser.parse_args(argv)
    quiet_logs()
    if ns.cmd == "zygote":
        return zygote()
    started = time.monotonic()
    code = run(ns.venue, ns.port, ns.journal, ns.account, ns.orders, ns.settle,
               handshake=ns.handshake)
    say(f"exit {os.getpid()} {code} after {time.monotonic() - started:.2f}s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
