"""Per-account trading lease: one daemon per broker account, ever.

Two daemons on one account would both resolve, reconcile and trade, and a restart race
(systemd restarting one while an operator starts another) would double every order. So a
live daemon takes a lease before it touches the broker.

The lease is keyed on the *broker* account (``venue_account``: the MT5 server and login,
the ccxt exchange and a hash of the API key), not on our account label or the journal: two
journals (a restored copy, a second config) pointing at one real account must not both get
it. Two locks, both taken:
- always, an exclusive ``flock`` on a lock file in one machine-wide directory
  (``$DTA_LEASE_DIR``, else systemd's ``$RUNTIME_DIRECTORY``, ``/run/dta``,
  ``$XDG_RUNTIME_DIR``, or ``/tmp/dta-leases``), released by the kernel when the process
  dies: it catches two journals of any kind on this machine;
- with a PostgreSQL journal, also ``pg_try_advisory_lock(key)`` on a dedicated connection
  held for the daemon's life (the lock dies with the session): it catches daemons on
  other machines sharing that database. ``key`` is a stable signed 64-bit hash of the
  broker account. Advisory locks are per database: two machines with two databases
  trading one account are outside what a lease can see (reconciliation's surplus-fill
  incident is the backstop).
A second daemon gets ``LeaseError`` naming the holder (pid) where it can be known.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Any

import structlog

from domain.errors import LeaseError

log = structlog.get_logger("dta.lease")


def advisory_key(account: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock`` (bigint)."""
    digest = hashlib.sha256(f"dta-account-lease:{account}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def venue_account(settings: Any) -> str:
    """The broker account a live daemon trades, as a lease key: what the venue itself
    would call the same account. Our ``account`` label only where the venue names none."""
    b = settings.broker
    if b.kind == "mt5" and b.mt5.login is not None:
        return f"mt5:{b.mt5.server or '?'}:{b.mt5.login}"
    key = getattr(settings, "exchange_api_key", None)
    if b.kind == "ccxt" and key is not None:
        secret = key.get_secret_value() if hasattr(key, "get_secret_value") else str(key)
        digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
        return f"ccxt:{b.ccxt.exchange}:{'sandbox' if b.ccxt.sandbox else 'live'}:{digest}"
    return str(settings.account)


def lease_dir() -> Path:
    """The machine-wide directory of lease files (see the module docstring)."""
    for name in ("DTA_LEASE_DIR", "RUNTIME_DIRECTORY"):
        value = os.environ.get(name)
        if value:
            return Path(value.split(":")[0])
    run = Path("/run/dta")
    if run.is_dir() and os.access(run, os.W_OK):
        return run
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) if runtime else Path("/tmp/dta-leases")


def _lock_path(account: str, key: str, lock_dir: Path | None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", account)[:40] or "_"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return (lock_dir or lease_dir()) / f"dta-{safe}-{digest}.lease"


class AccountLease:
    """``acquire()`` or ``LeaseError``; ``release()`` (or process exit) gives it back.

    Keyed twice: on our ``account`` label (a second daemon with the same label is refused
    whatever its API key: one exchange account can have several keys) and on ``venue``,
    the broker account (a second daemon with another label on the same key or login is
    refused too). Each key is a lock file and, on PostgreSQL, an advisory lock."""

    def __init__(self, account: str, journal_url: str, *, lock_dir: Path | None = None,
                 venue: str | None = None) -> None:
        self.account = account
        self.journal_url = journal_url
        self.lock_dir = lock_dir
        self.venue = venue or account
        self.keys = tuple(dict.fromkeys((account, self.venue)))  # what the lease is keyed on
        self.kind = "postgresql" if journal_url.startswith("postgresql") else "file"
        self.path: Path | None = None  # the first lock file (our label's)
        self._fds: list[int] = []
        self._engine: Any = None
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return bool(self._fds) or self._conn is not None

    def acquire(self) -> AccountLease:
        if self.held:
            return self
        try:
            if self.kind == "postgresql":  # first: its refusal names the holder's session
                self._acquire_pg()
            for key in self.keys:
                self._acquire_file(key)
        except BaseException:
            self._release_file()
            self._release_pg()
            raise
        log.info("lease_acquired", account=self.account, kind=self.kind,
                 path=str(self.path) if self.path else None)
        return self

    def _acquire_pg(self) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        # The session is the lease: named for operators (pg_stat_activity, and a refused
        # daemon's message), and with TCP keepalives so a dead network fails the per-cycle
        # check in seconds instead of hanging the cycle until the watchdog.
        me = f"dta {self.account} pid {os.getpid()} on {socket.gethostname()}"[:63]
        engine = create_engine(self.journal_url, poolclass=NullPool, connect_args={
            "application_name": me, "keepalives": 1, "keepalives_idle": 5,
            "keepalives_interval": 2, "keepalives_count": 3})
        conn = engine.connect()
        self._engine, self._conn = engine, conn
        from sqlalchemy import text

        conn.execute(text("SET statement_timeout = 5000"))  # check() never hangs long
        for name in self.keys:
            self._try_advisory(conn, advisory_key(name))

    def _try_advisory(self, conn: Any, key: int) -> None:
        from sqlalchemy import text

        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()  # the session lock outlives the transaction; do not hold one open
        if got:
            return
        holder = conn.execute(text(
            "SELECT l.pid, a.application_name FROM pg_locks l LEFT JOIN "
            "pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = :k"),
            {"k": key}).first()
        conn.commit()
        who = ""
        if holder is not None:
            who = f", backend pid {holder[0]}" + (f": {holder[1]}" if holder[1] else "")
        raise LeaseError(
            f"account {self.account!r} is leased by another daemon (PostgreSQL "
            f"advisory lock {key}{who}): refusing to trade it twice")

    def _acquire_file(self, key: str) -> None:
        path = _lock_path(self.account if key == self.account else "venue", key,
                          self.lock_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            what = "" if key == self.account else f" on broker account {key}"
            raise LeaseError(
                f"account {self.account!r} is leased by another daemon{what} (lock file "
                f"{path}" + (f", held by {holder}" if holder else "")
                + "): refusing to trade it twice") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} as "
                      f"{self.account}\n".encode(), 0)
        self._fds.append(fd)
        if self.path is None:
            self.path = path

    def check(self) -> bool:
        """Is the lease still ours? (The PostgreSQL session can die under us: if it did,
        the lock is gone and the daemon must stop trading.)"""
        if self._conn is None:
            return bool(self._fds)
        from sqlalchemy import text

        try:
            self._conn.execute(text("SELECT 1")).scalar()
            self._conn.commit()
            return True
        except Exception:  # any failure means the session (and lock) is gone
            return False

    def _release_file(self) -> None:
        while self._fds:
            fd = self._fds.pop()
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self.path = None

    def release(self) -> None:
        self._release_file()
        self._release_pg()
        log.info("lease_released", account=self.account, kind=self.kind)

    def _release_pg(self) -> None:
        if self._conn is None:
            return
        from sqlalchemy import text

        try:
            for name in self.keys:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"),
                                   {"k": advisory_key(name)})
            self._conn.commit()
        except Exception:  # closing the session releases it anyway
            pass
        finally:
            try:
                self._conn.close()
            except Exception as exc:
                # The session is already gone (terminated, failover, network): so is
                # the lock. Close cannot roll back on it; drop the connection instead.
                log.warning("lease_session_gone", account=self.account, error=str(exc))
                with contextlib.suppress(Exception):
                    self._conn.invalidate()
            self._engine.dispose()
            self._conn = self._engine = None

    def __enter__(self) -> AccountLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_lease(account: str, journal_url: str, *, lock_dir: Path | None = None,
                  venue: str | None = None) -> AccountLease:
    """Take the lease on ``venue`` (the broker account; ``account`` when not given) or
    raise ``LeaseError``."""
    return AccountLease(account, journal_url, lock_dir=lock_dir, venue=venue).acquire()
