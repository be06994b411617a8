"""Runs and the bars they processed: the run rows, the per-bar rows (buffered in the unit
of work, written with its next commit), rejected bars, and the content-addressed
parameter sets a run, a parameter version or an order names by hash."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update

from domain import Bar, ParameterSet
from domain.errors import JournalError
from executor import lazy_log as structlog  # structlog itself on the first log call
from executor.journal.models import BarRow, ParameterSetRow, RunRow
from executor.journal.tables import BARS
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import aware, storable_text, utcnow

log = structlog.get_logger("dta.journal")


class RunRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def start_run(self, mode: str, account: str, settings_hash: str, params: ParameterSet,
                  *, sole_daemon: bool = False) -> int:
        """A new run row. ``sole_daemon``: the caller holds the account's lease, so a run of
        the account still marked ``running`` belongs to a process that died without
        ending it (SIGKILL, power loss): it is marked ``died``, so `dta status` does not
        show a daemon that is not there."""
        uow = self._uow
        with uow.lock:
            if sole_daemon:
                result: Any = uow.session.execute(
                    update(RunRow).where(RunRow.account == account,  # type: ignore[arg-type]
                                         RunRow.status == "running")  # type: ignore[arg-type]
                    .values(status="died"))
                orphans = int(result.rowcount)
                if orphans:
                    log.warning("runs_marked_died", account=account, runs=orphans)
            self.save_parameter_set(params)
            row = RunRow(started_at=utcnow(), mode=mode, account=account,
                         settings_hash=settings_hash, params_hash=params.content_hash)
            uow.session.add(row)
            uow.session.flush()
            assert row.id is not None
            uow.run_id = row.id
            uow.commit(durable=True)
            return row.id

    def end_run(self, status: str, summary: dict[str, Any]) -> None:
        uow = self._uow
        with uow.lock:
            if uow.run_id is None:
                return
            uow.session.execute(
                update(RunRow).where(RunRow.id == uow.run_id)  # type: ignore[arg-type]
                .values(ended_at=utcnow(), status=status, summary=summary)
            )
            uow.commit(durable=True)

    def save_parameter_set(self, params: ParameterSet) -> None:
        session = self._uow.session
        if session.get(ParameterSetRow, params.content_hash) is None:
            session.add(ParameterSetRow(hash=params.content_hash, created_at=utcnow(),
                                        content=params.values))
            session.flush()

    # ------------------------------------------------------------------ bars

    def record_bar(self, bar: Bar, gap_bars: int = 0) -> None:
        """Buffer a processed bar's row (written with the next commit). Kept as a tuple in
        ``BAR_KEYS`` order with its time already bound: a replay buffers one per bar.
        Prices go as they are: the validator passed only floats and plain ints, and the
        FLOAT columns store both as REAL."""
        uow = self._uow
        try:
            at = uow.bind_time(bar.time)
        except (ValueError, TypeError, OverflowError) as exc:  # as a refused statement
            raise JournalError(f"journal statement failed: {exc.__class__.__name__}: "
                               f"{exc}") from None
        uow.pending_bars.append((
            uow.run_id, bar.symbol, bar.timeframe, at, bar.open, bar.high, bar.low,
            bar.close, bar.volume, bar.spread, gap_bars))

    def record_rejection(self, bar: Bar | None, symbol: str, timeframe: str, reason: str,
                         detail: str) -> None:
        """A rejected bar's row. Its time is kept only when it is an aware datetime (the
        column's type): a bar rejected for its time carries it in ``detail`` instead, so
        bad input can never make the journal's commit fail."""
        t = bar.time if bar is not None else None
        try:
            t = t.astimezone(UTC) if isinstance(t, datetime) and t.utcoffset() is not None \
                else None
        except (OverflowError, ValueError):  # at the edge of datetime's range
            t = None
        self._uow.pending_rejects.append({
            "run_id": self._uow.run_id, "symbol": symbol, "timeframe": timeframe,
            "time": t, "reason": reason, "detail": storable_text(detail),
        })

    def last_bar_time(self, symbol: str, timeframe: str) -> datetime | None:
        """The resume point: the newest bar journaled as processed for this stream."""
        self._uow.flush()
        stmt = select(func.max(BARS.c.time)).where(
            BARS.c.symbol == symbol, BARS.c.timeframe == timeframe)
        return aware(self._uow.session.scalar(stmt))

    def bars_until(self, symbol: str, timeframe: str, until: datetime,
                   limit: int) -> list[Bar]:
        """The last ``limit`` processed bars of a stream up to ``until`` (a chart of what
        a person deciding on the bar at ``until`` saw), oldest first."""
        stmt = (select(BarRow).where(BARS.c.symbol == symbol, BARS.c.timeframe == timeframe,
                                     BARS.c.time <= until)
                .order_by(BarRow.time.desc()).limit(limit))  # type: ignore[attr-defined]
        rows = list(self._uow.session.scalars(stmt))[::-1]
        return [Bar(r.symbol, r.timeframe, r.time, r.open, r.high, r.low, r.close, r.volume,
                    r.spread) for r in rows]

    def iter_bars(self, symbol: str, timeframe: str, limit: int | None = None) -> Iterator[Bar]:
        """Processed bars in time order (the last ``limit`` when given), to warm a snapshot
        builder after a restart without re-running the strategy on them."""
        self._uow.flush()
        session = self._uow.session
        stmt = select(BarRow).where(BARS.c.symbol == symbol, BARS.c.timeframe == timeframe)
        if limit is not None:
            stmt = stmt.order_by(BarRow.time.desc()).limit(limit)  # type: ignore[attr-defined]
            rows = list(session.scalars(stmt))[::-1]
        else:
            rows = list(session.scalars(stmt.order_by(BarRow.time)))  # type: ignore[arg-type]
        for r in rows:
            yield Bar(r.symbol, r.timeframe, r.time, r.open, r.high, r.low, r.close,
                      r.volume, r.spread)
