"""Per-account trading lease: one daemon per account, ever.

Two daemons on one account would both resolve, reconcile and trade, and a restart race
(systemd restarting one while an operator starts another) would double every order. So a
live daemon takes a lease before it touches the broker:
- journal on PostgreSQL: ``pg_try_advisory_lock(key)`` on a dedicated connection held for
  the daemon's life (the lock dies with the session, so a killed daemon frees it at once);
  ``key`` is a stable signed 64-bit hash of the account;
- otherwise (SQLite journal): an exclusive ``flock`` on a lock file next to the journal
  (``<journal>.<account>.lease``), released by the kernel when the process dies.
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

from executor.errors import LeaseError

log = structlog.get_logger("dta.lease")


def advisory_key(account: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock`` (bigint)."""
    digest = hashlib.sha256(f"dta-account-lease:{account}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock_path(account: str, journal_url: str, lock_dir: Path | None) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", account) or "_"
    if lock_dir is not None:
        return lock_dir / f"dta-{safe}.lease"
    if journal_url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        db = make_url(journal_url).database
        if db and db != ":memory:":
            return Path(f"{db}.{safe}.lease")
    runtime = os.environ.get("RUNTIME_DIRECTORY") or os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(runtime) / f"dta-{safe}.lease"


class AccountLease:
    """``acquire()`` or ``LeaseError``; ``release()`` (or process exit) gives it back."""

    def __init__(self, account: str, journal_url: str, *, lock_dir: Path | None = None) -> None:
        self.account = account
        self.journal_url = journal_url
        self.lock_dir = lock_dir
        self.kind = "postgresql" if journal_url.startswith("postgresql") else "file"
        self.path: Path | None = None
        self._fd: int | None = None
        self._engine: Any = None
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._conn is not None

    def acquire(self) -> AccountLease:
        if self.held:
            return self
        if self.kind == "postgresql":
            self._acquire_pg()
        else:
            self._acquire_file()
        log.info("lease_acquired", account=self.account, kind=self.kind,
                 path=str(self.path) if self.path else None)
        return self

    def _acquire_pg(self) -> None:
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        key = advisory_key(self.account)
        # The session is the lease: named for operators (pg_stat_activity, and a refused
        # daemon's message), and with TCP keepalives so a dead network fails the per-cycle
        # check in seconds instead of hanging the cycle until the watchdog.
        me = f"dta {self.account} pid {os.getpid()} on {socket.gethostname()}"[:63]
        engine = create_engine(self.journal_url, poolclass=NullPool, connect_args={
            "application_name": me, "keepalives": 1, "keepalives_idle": 5,
            "keepalives_interval": 2, "keepalives_count": 3})
        conn = engine.connect()
        try:
            conn.execute(text("SET statement_timeout = 5000"))  # check() never hangs long
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()  # the session lock outlives the transaction; do not hold one open
            if not got:
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
        except BaseException:
            conn.close()
            engine.dispose()
            raise
        self._engine, self._conn = engine, conn

    def _acquire_file(self) -> None:
        path = _lock_path(self.account, self.journal_url, self.lock_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LeaseError(
                f"account {self.account!r} is leased by another daemon (lock file {path}"
                + (f", held by {holder}" if holder else "") + "): refusing to trade it twice"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd, self.path = fd, path

    def check(self) -> bool:
        """Is the lease still ours? (The PostgreSQL session can die under us: if it did,
        the lock is gone and the daemon must stop trading.)"""
        if self._fd is not None:
            return True
        if self._conn is None:
            return False
        from sqlalchemy import text

        try:
            self._conn.execute(text("SELECT 1")).scalar()
            self._conn.commit()
            return True
        except Exception:  # any failure means the session (and lock) is gone
            return False

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
        if self._conn is not None:
            from sqlalchemy import text

            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"),
                                   {"k": advisory_key(self.account)})
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
        log.info("lease_released", account=self.account, kind=self.kind)

    def __enter__(self) -> AccountLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_lease(account: str, journal_url: str, *,
                  lock_dir: Path | None = None) -> AccountLease:
    """Take the account's lease or raise ``LeaseError``."""
    return AccountLease(account, journal_url, lock_dir=lock_dir).acquire()
