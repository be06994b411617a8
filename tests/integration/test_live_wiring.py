"""`live` mode wired end to end against the fake Binance on 127.0.0.1: the lease, start-up
reconciliation, the real ccxt client, stale catch-up bars never traded, one live order for
the newest bar, and the order-in-doubt resolver on every cycle."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes.binance_fake import FakeBinance
from support.daemon_helpers import FUNDED, a_rising_minute, cleared_journal, live_settings
from support.doubles import AlwaysLong

from domain.errors import LeaseError
from executor.engine.startup import start_live
from executor.wiring import build_daemon, build_live_parts
from strategies.registry import STRATEGIES


@pytest.fixture
def always_long() -> object:
    STRATEGIES[AlwaysLong.name] = AlwaysLong
    yield AlwaysLong
    STRATEGIES.pop(AlwaysLong.name, None)


def test_live_mode_with_ccxt(tmp_path: Path, always_long: object,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    with FakeBinance(balances=FUNDED) as fake:
        settings = live_settings(url, fake, AlwaysLong.name)
        journal = cleared_journal(url, AlwaysLong.name)
        daemon = build_daemon(settings, journal)
        try:
            with pytest.raises(LeaseError):  # a second daemon on the same account
                build_live_parts(settings, journal)
            executor = daemon.executor
            executor.start()
            start_live(settings, daemon, journal)
            now = a_rising_minute(fake)  # momentum says long: spot can only buy
            handled = executor.run_cycle(now)
            summary = executor.stop()
        finally:
            daemon.live.lease.release()
        orders = journal.orders.all("bn-live")
        journal.close()
        exchange_ids = {o["clientOrderId"] for o in fake.orders}
    assert handled >= 100  # the catch-up history, closed bars only
    assert summary["vetoes"].get("stale_data", 0) >= handled - 2  # history never traded
    [entry] = [o for o in orders if o.protective_kind is None]
    assert entry.state.value in ("filled", "accepted")
    # its stop and target: one sell OCO at the exchange, each leg journaled
    assert sorted((o.protective_kind, o.state.value) for o in orders if o is not entry) == [
        ("stop_loss", "accepted"), ("take_profit", "accepted")]
    assert exchange_ids == {o.client_order_id for o in orders}
    assert summary["journal_orders_by_state"]


def test_a_daemon_that_lost_its_lease_stops_before_trading_again(
        always_long: object, pg_journal_url: str) -> None:
    """The lease's PostgreSQL session can die under a running daemon (failover, a DBA,
    idle_session_timeout): the advisory lock is gone and another daemon may take the
    account. The next cycle (or housekeeping second) must stop trading, not send. The
    session is really terminated here (pg_terminate_backend), as a DBA would."""
    from sqlalchemy import create_engine, text

    from executor.lease import advisory_key

    url = pg_journal_url
    with FakeBinance(balances=FUNDED) as fake:
        settings = live_settings(url, fake, AlwaysLong.name)
        journal = cleared_journal(url, AlwaysLong.name)
        alerts: list[str] = []
        journal.incidents.listeners.append(lambda _i, _s, kind, _m: alerts.append(kind))
        daemon = build_daemon(settings, journal)
        executor = daemon.executor
        admin = create_engine(url)
        try:
            assert executor.lease is daemon.live.lease and executor.lease.check()
            executor.start()
            start_live(settings, daemon, journal)
            with admin.connect() as conn:
                killed = conn.execute(text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = "
                    "'advisory' AND granted AND ((classid::bigint << 32) | objid::bigint)"
                    " = :k"), {"k": advisory_key(settings.account)}).scalars().all()
                conn.commit()
            assert killed == [True]
            handled = executor.run_cycle(datetime.now(UTC))
            executor.housekeeping()  # no second incident, nothing else runs
        finally:
            daemon.live.lease.release()
            admin.dispose()
        incidents = [i.kind for i in journal.incidents.all()]
        executor.stop("failed")
        journal.close()
        assert handled == 0 and fake.orders == []  # not one bar, not one order
    assert isinstance(executor.fatal_error, LeaseError)
    assert "lease on account 'bn-live' lost" in str(executor.fatal_error)
    assert executor.stop_requested.is_set()
    assert incidents.count("halted:lease_lost") == 1 and alerts.count("halted:lease_lost") == 1


def test_a_live_start_marks_the_run_of_a_daemon_that_died(tmp_path: Path,
                                                           always_long: object) -> None:
    """A SIGKILLed daemon never ends its run row. The next live daemon holds the account's
    lease, so no other daemon of the account is running: the row says ``died``, and
    another account's running run is left alone."""
    from domain import ParameterSet

    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    with FakeBinance(balances=FUNDED) as fake:
        journal = cleared_journal(url, AlwaysLong.name)
        params = ParameterSet({"any": 1})
        dead = journal.runs.start_run("live", "bn-live", "h", params)
        other = journal.runs.start_run("live", "another-account", "h", params)
        daemon = build_daemon(live_settings(url, fake, AlwaysLong.name), journal)
        try:
            daemon.executor.start()
            daemon.executor.stop("stopped")
        finally:
            daemon.live.lease.release()
        status = {r.id: r.status for r in journal.queries.runs()}
        journal.close()
    assert status[dead] == "died" and status[other] == "running"
    assert status[max(status)] == "stopped"


def test_dta_reconcile_against_the_fake_exchange(tmp_path: Path) -> None:
    from support.daemon_helpers import EXAMPLE
    from typer.testing import CliRunner

    from runbooks.cli import app

    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    with FakeBinance(balances=FUNDED) as fake:
        toml = tmp_path / "live.toml"
        urls = ", ".join(f'{k} = "{v}"' for k, v in fake.api_urls().items())
        toml.write_text(Path(EXAMPLE).read_text() + (
            '\n[broker]\nkind = "ccxt"\nsymbols = ["BTC/USDT"]\ntimeframe = "1m"\n'
            f"ccxt_api_urls = {{ {urls} }}\n"
            '[broker.ccxt]\ntimeout_ms = 2000\nrate_limit_ms = 1\n'))
        env = {"DTA_EXCHANGE_API_KEY": fake.api_key, "DTA_EXCHANGE_API_SECRET": fake.secret}
        runner = CliRunner()
        assert runner.invoke(app, ["db", "upgrade", "--config", str(toml), "--journal-url",
                                   url]).exit_code == 0
        r = runner.invoke(app, ["reconcile", "--json", "--config", str(toml), "--journal-url",
                                url], env=env)
        assert r.exit_code == 0, r.output
        assert '"refuse_to_trade": false' in r.stdout
