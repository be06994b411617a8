"""`live` mode on a perpetual-swap account, wired end to end against the loopback USD-M fake:
``broker.ccxt.exchange = "binanceusdm"`` builds the swap broker, which sets the account up
(one-way mode, margin mode, leverage) before anything trades, and the daemon opens a short,
which a spot account cannot hold."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.binance_usdm import FakeBinanceUsdm
from support.daemon_helpers import a_falling_minute, cleared_journal, swap_settings
from support.doubles import AlwaysLong

from domain.errors import ConfigError
from executor.engine.startup import start_live
from executor.journal.store import Journal
from executor.wiring import build_daemon
from strategies.registry import STRATEGIES

BTC = "BTC/USDT:USDT"


@pytest.fixture
def always_long() -> object:
    STRATEGIES[AlwaysLong.name] = AlwaysLong
    yield AlwaysLong
    STRATEGIES.pop(AlwaysLong.name, None)


@contextmanager
def a_live_daemon(url: str, fake: FakeBinanceUsdm) -> Iterator[tuple[Any, Journal]]:
    """The live daemon on ``fake``, started and reconciled; stopped and its lease released
    on the way out."""
    settings = swap_settings(url, fake, AlwaysLong.name)
    journal = cleared_journal(url, AlwaysLong.name)
    daemon = build_daemon(settings, journal)
    try:
        daemon.executor.start()
        start_live(settings, daemon, journal)
        yield daemon, journal
    finally:
        daemon.executor.stop()
        daemon.live.lease.release()
        journal.close()


def committed_fills(url: str, client_order_id: str) -> list[tuple[str, str, float]]:
    reader = Journal.open(url)  # a fresh session: what the daemon committed
    try:
        return [(f.kind, f.side, f.volume) for f in reader.orders.fills(client_order_id)]
    finally:
        reader.close()


def test_live_swap_sets_the_account_up_and_opens_a_short(tmp_path: Path,
                                                         always_long: object) -> None:
    url = f"sqlite:///{tmp_path / 'swap.sqlite'}"
    with FakeBinanceUsdm() as fake, a_live_daemon(url, fake) as (daemon, journal):
        assert (fake.margin_type["BTCUSDT"], fake.leverage["BTCUSDT"]) == ("ISOLATED", 3)
        daemon.executor.run_cycle(a_falling_minute(fake))
        orders = [o for o in journal.orders.all("bn-live") if o.protective_kind is None]
        sent = [o["clientOrderId"] for o in fake.orders]
        amt = fake.positions["BTCUSDT"]["amt"]
    assert len(orders) == 1 and orders[0].intent.side.value == "sell"
    assert sent == [orders[0].client_order_id]
    assert amt == pytest.approx(-0.01)  # a short at the exchange


def test_a_hedge_mode_account_never_starts(tmp_path: Path, always_long: object) -> None:
    url = f"sqlite:///{tmp_path / 'swap.sqlite'}"
    with FakeBinanceUsdm() as fake:
        fake.dual_side = True
        journal = cleared_journal(url, AlwaysLong.name)
        with pytest.raises(ConfigError, match="hedge position mode"):
            build_daemon(swap_settings(url, fake, AlwaysLong.name), journal)
        # The lease was released: a corrected start is not refused as a second daemon.
        fake.dual_side = False
        daemon = build_daemon(swap_settings(url, fake, AlwaysLong.name), journal)
        daemon.live.lease.release()
        journal.close()
    assert fake.orders == []


def test_the_stop_fires_at_the_exchange_and_the_daemon_journals_the_exit(
        tmp_path: Path, always_long: object) -> None:
    """Issue 19's acceptance: a short on the swap fake opens, gets its stop and target at
    the exchange (reduce-only conditional orders on the algo endpoint, each under its own
    id and journaled before it was sent), the stop fires at the fake, the next bar's fill
    poll journals the exit, and the target is cancelled (Binance leaves it standing: a
    reduce-only target left behind would close the next position)."""
    url = f"sqlite:///{tmp_path / 'swap.sqlite'}"
    with FakeBinanceUsdm() as fake, a_live_daemon(url, fake) as (daemon, journal):
        now = a_falling_minute(fake)
        daemon.executor.run_cycle(now)
        [entry, sl, tp] = journal.orders.all("bn-live")
        assert (entry.intent.side.value, entry.state.value) == ("sell", "filled")
        assert [(o.client_order_id, o.protective_kind, o.state.value) for o in (sl, tp)] == [
            (entry.client_order_id + "sl", "stop_loss", "accepted"),
            (entry.client_order_id + "tp", "take_profit", "accepted")]
        algo = {a["clientAlgoId"]: a for a in fake.algo_orders}
        assert {cid: (a["orderType"], a["side"], a["reduceOnly"], a["algoStatus"],
                      a["quantity"]) for cid, a in algo.items()} == {
            sl.client_order_id: ("STOP_MARKET", "BUY", True, "NEW", "0.010"),
            tp.client_order_id: ("TAKE_PROFIT_MARKET", "BUY", True, "NEW", "0.010")}
        # At the levels the entry carried, to BTCUSDT's 0.1 tick.
        assert float(algo[sl.client_order_id]["triggerPrice"]) == pytest.approx(
            entry.intent.stop_loss, abs=0.05)
        assert float(algo[tp.client_order_id]["triggerPrice"]) == pytest.approx(
            entry.intent.take_profit, abs=0.05)
        sent_first = journal.orders.sent_at(sl.client_order_id)
        assert sent_first is not None  # journaled submitting before the venue heard
        fake.set_price("BTCUSDT", entry.intent.stop_loss * 1.001)  # through the stop
        daemon.executor.run_cycle(now + timedelta(minutes=1))
        after = {o.client_order_id: o.state.value for o in journal.orders.all("bn-live")
                 if o.client_order_id.startswith(entry.client_order_id)}
    assert committed_fills(url, entry.client_order_id) == [
        ("entry", "sell", 0.01), ("stop_loss", "buy", 0.01)]
    assert after == {entry.client_order_id: "filled", sl.client_order_id: "filled",
                     tp.client_order_id: "cancelled"}
    assert {a["clientAlgoId"]: a["algoStatus"] for a in fake.algo_orders
            if a["clientAlgoId"] in (sl.client_order_id, tp.client_order_id)} == {
        sl.client_order_id: "FINISHED", tp.client_order_id: "CANCELED"}
    # The stop's market order went reduce-only: it could only close the short.
    [fired] = [o for o in fake.orders if o["clientOrderId"].startswith("algo-")]
    assert (fired["side"], fired["reduceOnly"]) == ("BUY", True)
