"""The provider matrix: provider analytics (``executor/reports/provider_analytics.py``)
read from the journal over a window, and its exports: CSV and JSON for people and
spreadsheets, and a PostgreSQL table for shared analytics (each export appends one
snapshot, keyed by its time). The CLI (`dta providers matrix`) and the console's
Providers page both call ``load_matrix`` and the exporters here."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from domain.errors import ConfigError
from executor.provider_state import breaker_state, configured_providers
from executor.reports.provider_analytics import (
    DEFAULT_HORIZON_BARS,
    Health,
    ProviderAnalytics,
    Window,
    next_moves,
    provider_analytics,
)

if TYPE_CHECKING:
    from executor.journal.read_models import DecisionRecord, ProposalRecord
    from executor.journal.store import Journal
    from executor.settings import Settings

__all__ = ["DEFAULT_TABLE", "Matrix", "MatrixSource", "load_matrix", "read_source", "to_csv",
           "to_json", "to_postgres"]

DEFAULT_TABLE = "dta_provider_matrix"
_IDENTIFIER = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,62}\.)?[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class Matrix:
    account: str
    window: Window
    horizon_bars: int
    rows: tuple[ProviderAnalytics, ...]

    def others(self) -> list[str]:
        """Every provider named in an agreement column, in row order."""
        names = [r.provider for r in self.rows]
        extra = sorted({o for r in self.rows for o in r.agreement} - set(names))
        return names + extra


@dataclass(frozen=True)
class MatrixSource:
    """What the analytics read from the journal, read once: one matrix or many windows
    (the console's comparison charts) are computed from it."""

    account: str
    calls: Sequence[Mapping[str, Any]]
    decisions: Sequence[DecisionRecord]
    proposals: Sequence[ProposalRecord]
    closes: Mapping[tuple[str, str], Sequence[tuple[Any, float]]]  # stored time, close
    time_key: Callable[[datetime], Any]  # a bar time as the journal stores it
    configured: Sequence[str]
    health: Mapping[str, Health]
    oldest: datetime | None  # market time of the first and last call or decision
    newest: datetime | None
    _moves: dict[int, dict[int, float]] = field(default_factory=dict)

    def moves(self, horizon_bars: int) -> dict[int, float]:
        if horizon_bars not in self._moves:
            self._moves[horizon_bars] = next_moves(self.decisions, self.proposals,
                                                   self.closes, horizon_bars, self.time_key)
        return self._moves[horizon_bars]

    def matrix(self, window: Window, horizon_bars: int = DEFAULT_HORIZON_BARS) -> Matrix:
        return Matrix(self.account, window, horizon_bars, tuple(provider_analytics(
            calls=self.calls, decisions=self.decisions, proposals=self.proposals,
            moves=self.moves(horizon_bars), window=window, configured=self.configured,
            health=self.health)))

    def window(self, days: float | None = None, since: datetime | None = None,
               until: datetime | None = None) -> Window:
        """[since, until], or the last ``days`` of market time before the newest."""
        return Window.last_days(days, self.newest) if days is not None else Window(since,
                                                                                   until)


def read_source(journal: Journal, settings: Settings,
                now: datetime | None = None) -> MatrixSource:
    proposals, decisions, calls = journal.queries.decision_rows()
    times = [*(p.bar_time for p in proposals),
             *(c["at"] for c in calls if c.get("decision_id") is None)]
    streams = sorted({(p.symbol, p.timeframe) for p in proposals})
    configured = list(configured_providers(journal, settings))
    return MatrixSource(
        settings.account, calls, decisions, proposals,
        {s: journal.queries.stored_closes(*s) for s in streams}, journal.uow.bind_time,
        configured, _health(journal, settings, configured, now or datetime.now(UTC)),
        min(times, default=None), max(times, default=None))


def load_matrix(journal: Journal, settings: Settings, *, days: float | None = None,
                since: datetime | None = None, until: datetime | None = None,
                horizon_bars: int = DEFAULT_HORIZON_BARS,
                now: datetime | None = None) -> Matrix:
    """The matrix over [since, until], or the last ``days`` of market time before the
    journal's newest (module docstring of provider_analytics)."""
    source = read_source(journal, settings, now)
    return source.matrix(source.window(days, since, until), horizon_bars)


def _health(journal: Journal, settings: Settings, names: Sequence[str],
            now: datetime) -> dict[str, Health]:
    disabled = journal.provider_calls.disabled_providers()
    breakers = journal.provider_calls.breaker_events()
    cooldown = settings.ensemble.breaker.cooldown_s
    return {n: Health(n not in disabled, breaker_state(
        breakers[n].action if n in breakers else None,
        breakers[n].at if n in breakers else None, cooldown, now)) for n in names}


# ---------------------------------------------------------------------------- exports

_SCALARS = [f.name for f in fields(ProviderAnalytics) if f.name not in ("agreement",
                                                                        "agreement_n")]


def flat_row(matrix: Matrix, row: ProviderAnalytics) -> dict[str, Any]:
    """One provider as flat columns: the figures, then ``agree_<other>`` per provider."""
    out: dict[str, Any] = {name: getattr(row, name) for name in _SCALARS}
    for other in matrix.others():
        if other != row.provider:
            out[f"agree_{other}"] = row.agreement.get(other)
    return out


def to_csv(matrix: Matrix) -> str:
    buffer = io.StringIO()
    header = ["window_start", "window_end", "horizon_bars", *_SCALARS,
              *(f"agree_{o}" for o in matrix.others())]
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="raise", restval="",
                            lineterminator="\n")
    writer.writeheader()
    for row in matrix.rows:
        writer.writerow({"window_start": _iso(matrix.window.start),
                         "window_end": _iso(matrix.window.end),
                         "horizon_bars": matrix.horizon_bars,
                         **{k: "" if v is None else v for k, v in flat_row(matrix, row).items()}})
    return buffer.getvalue()


def to_json(matrix: Matrix) -> str:
    return json.dumps({
        "account": matrix.account,
        "window": {"start": _iso(matrix.window.start), "end": _iso(matrix.window.end)},
        "horizon_bars": matrix.horizon_bars,
        "providers": [asdict(r) for r in matrix.rows]}, indent=2, sort_keys=True)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def to_postgres(matrix: Matrix, url: str, *, table: str = DEFAULT_TABLE,
                exported_at: datetime | None = None) -> int:
    """Append the matrix to ``table`` (``schema.table`` allowed; created when missing) in
    the PostgreSQL database at ``url``; returns the rows written. One transaction: a
    failed export leaves nothing half-written."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    if not url.startswith("postgresql"):
        raise ConfigError("--to-postgres needs a PostgreSQL URL (postgresql+psycopg://...)")
    if not _IDENTIFIER.match(table):
        raise ConfigError(f"table {table!r}: letters, digits and _ only, optionally "
                          "schema.table")
    schema, _, name = table.rpartition(".")
    target = _matrix_table(name, schema or None)
    at = exported_at or datetime.now(UTC)
    values = [{"exported_at": at, "account": matrix.account,
               "window_start": matrix.window.start, "window_end": matrix.window.end,
               "horizon_bars": matrix.horizon_bars,
               **{k: getattr(r, k) for k in _SCALARS},
               "agreement": {"share": r.agreement, "n": r.agreement_n}} for r in matrix.rows]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            target.metadata.create_all(conn, checkfirst=True)
            if values:
                conn.execute(target.insert(), values)
    except SQLAlchemyError as exc:
        from domain.errors import JournalError

        raise JournalError(f"export to {table} failed: {exc.__class__.__name__}: "
                           f"{str(exc).splitlines()[0]}") from None
    finally:
        engine.dispose()
    return len(values)


def _matrix_table(name: str, schema: str | None) -> Any:
    from sqlalchemy import (
        JSON,
        BigInteger,
        Boolean,
        Column,
        DateTime,
        Float,
        Integer,
        MetaData,
        Table,
        Text,
    )

    hints = {f.name: f.type for f in fields(ProviderAnalytics)}
    columns = []
    for key in _SCALARS:
        hint = str(hints[key])
        kind = (BigInteger if key.startswith("tokens") else Float if "float" in hint
                else Boolean if "bool" in hint else Integer if "int" in hint else Text)
        columns.append(Column(key, kind))
    return Table(name, MetaData(schema=schema),
                 Column("exported_at", DateTime(timezone=True), nullable=False, index=True),
                 Column("account", Text, nullable=False),
                 Column("window_start", DateTime(timezone=True)),
                 Column("window_end", DateTime(timezone=True)),
                 Column("horizon_bars", Integer, nullable=False), *columns,
                 Column("agreement", JSON))
