"""One daemon per account: a second one (another process, or the same one by mistake) gets
a clear LeaseError; the lease is free again once the holder releases it or dies."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from domain.errors import LeaseError
from executor.lease import AccountLease, acquire_lease, advisory_key, lease_dir, venue_account

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("DTA_TEST_DATABASE_URL")

HOLDER = textwrap.dedent("""
    import sys, time
    from executor.lease import acquire_lease
    lease = acquire_lease(sys.argv[1], sys.argv[2])
    print("held", flush=True)
    sys.stdin.readline()   # hold until the test says so (or kills us)
""")




@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Advisory locks need no schema, so unlike ``journal_url`` nothing is dropped here."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.sqlite'}"
    if not PG_URL:
        pytest.skip("PostgreSQL lease tests need DTA_TEST_DATABASE_URL")
    return PG_URL


def test_a_second_daemon_on_the_same_account_refuses(url: str) -> None:
    first = acquire_lease("acct-1", url)
    try:
        with pytest.raises(LeaseError, match="leased by another daemon") as refused:
            acquire_lease("acct-1", url)
        if url.startswith("postgresql"):  # the holder names itself to operators
            assert f"dta acct-1 pid {os.getpid()} on " in str(refused.value)
        other = acquire_lease("acct-2", url)  # another account is independent
        other.release()
    finally:
        first.release()
    again = acquire_lease("acct-1", url)  # released: free again
    assert again.held and again.check()
    again.release()
    assert not again.held


def test_a_second_process_refuses_and_the_lease_dies_with_its_holder(url: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "acct-9", url], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        while (line := holder.stdout.readline()) and line.strip() != "held":
            pass  # structlog's lines come first
        assert line.strip() == "held"
        with pytest.raises(LeaseError) as info:
            acquire_lease("acct-9", url)
        message = str(info.value)
        assert "acct-9" in message and "refusing to trade it twice" in message
        if url.startswith("sqlite"):
            assert f"pid {holder.pid}" in message
    finally:
        holder.kill()  # SIGKILL: no clean release
        holder.wait(timeout=10)
    with AccountLease("acct-9", url) as lease:  # the kernel / PostgreSQL freed it
        assert lease.held


def test_lock_file_is_keyed_on_the_broker_account_not_the_journal(tmp_path: Path) -> None:
    """Issue 15, defect 11: two journals (a restored copy, a second config) on one broker
    account both got the lease, as the lock file sat next to each journal."""
    first_url = f"sqlite:///{tmp_path / 'a.sqlite'}"
    second_url = f"sqlite:///{tmp_path / 'b' / 'restored-copy.sqlite'}"
    venue = "ccxt:binance:live:0123456789abcdef"
    with AccountLease("acct/with spaces", first_url, venue=venue) as lease:
        assert lease.kind == "file" and lease.path is not None
        assert lease.path.parent == lease_dir()
        assert f"pid {os.getpid()}" in lease.path.read_text()
        with pytest.raises(LeaseError, match="refusing to trade it twice"):
            acquire_lease("acct/with spaces", second_url, venue=venue)
        with pytest.raises(LeaseError):  # another label for the same broker account
            acquire_lease("desk-2", second_url, venue=venue)
        with pytest.raises(LeaseError):  # the same label, whatever its API key
            acquire_lease("acct/with spaces", second_url, venue="ccxt:binance:live:ff")
        other = acquire_lease("desk-3", second_url, venue="ccxt:binance:live:ff")
        other.release()


def test_venue_account_names_the_broker_account() -> None:
    from executor.settings import load_settings

    example = ROOT.parent / "config" / "dta.example.toml"
    ccxt = load_settings(example, account="label-1", exchange_api_key="lease-key-A",
                         broker={"kind": "ccxt"})
    same = load_settings(example, account="label-2", exchange_api_key="lease-key-A",
                         broker={"kind": "ccxt"})
    other = load_settings(example, account="label-1", exchange_api_key="lease-key-B",
                          broker={"kind": "ccxt"})
    assert venue_account(ccxt) == venue_account(same) != venue_account(other)
    assert "lease-key-A" not in venue_account(ccxt)  # a hash, never the key
    mt5 = load_settings(example, broker={"kind": "mt5", "mt5": {"login": 51234567,
                                                                "server": "Broker-Live"}})
    assert venue_account(mt5) == "mt5:Broker-Live:51234567"
    paper = load_settings(example, account="paper-1")
    assert venue_account(paper) == "paper-1"


def test_advisory_key_is_stable_and_signed_64_bit() -> None:
    key = advisory_key("acct-1")
    assert key == advisory_key("acct-1") != advisory_key("acct-2")
    assert -(2**63) <= key < 2**63


def test_a_lease_whose_postgresql_session_died_reports_itself_lost(tmp_path: Path) -> None:
    """The daemon checks ``lease.check()`` every cycle (tests/integration/test_live_wiring.py shows
    what it does then); here the loss is real: the backend holding the advisory lock is
    terminated, as a failover or a DBA would, and a second daemon can take the account."""
    if not PG_URL:
        pytest.skip("PostgreSQL lease tests need DTA_TEST_DATABASE_URL")
    from sqlalchemy import create_engine, text

    lease = acquire_lease("acct-lost", PG_URL)
    engine = create_engine(PG_URL)
    try:
        assert lease.check()
        with engine.connect() as conn:
            killed = conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND ((classid::bigint << 32) | objid::bigint) = :k"),
                {"k": advisory_key("acct-lost")}).scalars().all()
            conn.commit()
        assert killed == [True]
        assert not lease.check()
        # The account is free for a daemon on another machine (this process still holds
        # its machine's lock file until it exits, as a stopping daemon would).
        other = acquire_lease("acct-lost", PG_URL, lock_dir=tmp_path / "other-host")
        other.release()
    finally:
        lease.release()
        engine.dispose()


def test_releasing_a_lease_whose_session_died_does_not_raise() -> None:
    """Once the PostgreSQL session is gone, closing its connection cannot roll back (psycopg
    raises "terminating connection due to administrator command"): the lock went with the
    session, so release drops the connection and carries on, never raising into the
    daemon's shutdown. Deterministic: the dead session is a stand-in that fails as psycopg
    does (the real one in the test above fails at close only when the client noticed)."""
    from sqlalchemy.exc import OperationalError

    dead = OperationalError("ROLLBACK", None, Exception("terminating connection due to "
                                                        "administrator command"))

    class DeadConnection:
        invalidated = False

        def execute(self, *_a: object, **_k: object) -> None:
            raise dead

        def commit(self) -> None:
            raise dead

        def close(self) -> None:
            raise dead

        def invalidate(self) -> None:
            self.invalidated = True

    class Engine:
        disposed = False

        def dispose(self) -> None:
            self.disposed = True

    lease = AccountLease("acct-dead", "postgresql+psycopg://unused/db")
    conn, engine = DeadConnection(), Engine()
    lease._conn, lease._engine = conn, engine
    lease.release()
    assert conn.invalidated and engine.disposed
    assert lease._conn is None and not lease.check()
