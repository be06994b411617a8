"""The journal's costs (funding payments), on SQLite and PostgreSQL: recorded once each by
the exchange's id whatever reads them again, migration 0011 up and down, and the table
as the migration makes it equal to the model the code reads through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from executor.journal import migrate
from executor.journal.costs import FUNDING, Cost
from executor.journal.store import Journal, make_engine
from executor.journal.tables import COSTS

T = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)


def cost(n: int, at: datetime, amount: float) -> Cost:
    return Cost(f"binanceusdm:funding:{n}", FUNDING, "BTC/USDT:USDT", at, amount, "USDT")


def test_a_payment_is_recorded_once_whoever_reads_it_again(journal_url: str) -> None:
    j = Journal.open(journal_url)
    try:
        first = j.costs.record_costs("a", [cost(1, T, -0.03), cost(1, T, -0.03)])
        j.commit()
        again = j.costs.record_costs("a", [cost(1, T, -0.03), cost(2, T + timedelta(hours=8),
                                                                    0.06)])
        other = j.costs.record_costs("b", [cost(1, T, -0.5)])  # another account's own
        j.commit()
    finally:
        j.close()
    assert [c.cost_id for c in first] == ["binanceusdm:funding:1"]
    assert [c.cost_id for c in again] == ["binanceusdm:funding:2"]
    assert len(other) == 1
    reader = Journal.open(journal_url)
    try:
        rows = reader.costs.costs("a")
        assert [(c.amount, c.time) for c in rows] == [(-0.03, T), (0.06, T + timedelta(hours=8))]
        assert reader.costs.last_time("a", FUNDING) == T + timedelta(hours=8)
        assert reader.costs.costs("a", since=T + timedelta(hours=1)) == rows[1:]
        assert reader.costs.costs("a", until=T + timedelta(hours=1)) == rows[:1]
        assert reader.costs.last_time("c", FUNDING) is None
    finally:
        reader.close()


def test_migration_0011_up_and_down_and_the_model_agrees(journal_url: str) -> None:
    engine = make_engine(journal_url)
    try:
        migrate.upgrade(engine, "0010")
        assert "costs" not in sa.inspect(engine).get_table_names()
        migrate.upgrade(engine)
        assert "costs" in sa.inspect(engine).get_table_names()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), COSTS.metadata)
        assert [d for d in diff if "costs" in repr(d)] == []
        cfg = migrate.alembic_config(engine)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0010")
        assert "costs" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_the_days_figures_count_funding_beside_fees(journal_url: str) -> None:
    """The daily summary's PnL line: the day's funding (paid: negative) with realised PnL
    and fees in the net; another day's and another account's payments are not in it."""
    from executor.journal.day_figures import day_figures
    from executor.notify.summary import summary_notice

    j = Journal.open(journal_url)
    try:
        j.costs.record_costs("a", [cost(1, T, -0.15), cost(2, T + timedelta(hours=8), 0.05),
                                   cost(3, T + timedelta(days=1), -9.0)])
        j.costs.record_costs("b", [cost(4, T, -7.0)])
        j.commit()
        day = T.replace(hour=0)
        figures = day_figures(j.uow, "a", day, day + timedelta(days=1))
    finally:
        j.close()
    assert figures.funding == pytest.approx(-0.1)
    assert figures.net_pnl == pytest.approx(-0.1)
    body = summary_notice("a", figures, "").body
    assert "fees 0.00, funding -0.10, net -0.10 over 0 fill(s)" in body
