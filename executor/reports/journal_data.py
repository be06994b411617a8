"""Everything a report reads from a journal, in one read-only pass.

Orders and fills come from the journal's order repository, funding payments from its
costs (``journal.costs``), the bars of the stream with
the most bars (the report's price panel) from its run repository, the rest (bar times,
proposals,
decisions with their verdicts, provider calls, runs) from its read models
(``JournalQueries.report_rows``). A table an older schema lacks reads as empty, so a
report of an old journal degrades instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain import Bar, Order
from executor.journal.costs import Cost
from executor.journal.models import FillRow
from executor.journal.read_models import DecisionRecord, ProposalRecord
from executor.journal.store import Journal

__all__ = ["DecisionRecord", "ProposalRecord", "RunData", "load_run_data"]


@dataclass(frozen=True)
class RunData:
    orders: list[Order]
    fills: list[FillRow]
    bar_times: list[datetime]
    proposals: list[ProposalRecord]
    decisions: list[DecisionRecord]
    provider_calls: list[dict[str, Any]]
    runs: list[dict[str, Any]] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)  # one stream's, in time order
    costs: list[Cost] = field(default_factory=list)  # funding payments, in time order

    def proposals_of_run(self, run_id: int | None) -> list[ProposalRecord]:
        return [p for p in self.proposals if run_id is None or p.run_id == run_id]


def load_run_data(journal: Journal) -> RunData:
    """Read a journal for a report (after the run's last commit)."""
    journal.commit()
    orders = journal.orders.all()
    fills = journal.orders.fills()
    rows = journal.queries.report_rows()
    return RunData(orders, fills, rows.bar_times, rows.proposals, rows.decisions,
                   rows.provider_calls, rows.runs, _main_stream_bars(journal),
                   journal.costs.costs())


def _main_stream_bars(journal: Journal) -> list[Bar]:
    """The bars of the stream with the most bars (a replay has one)."""
    counts = journal.queries.bar_counts()["processed"]
    if not counts:
        return []
    stream = max(counts, key=lambda k: (counts[k]["count"], k))
    symbol, timeframe = stream.rsplit("/", 1)  # a ccxt symbol has its own slash
    return list(journal.runs.iter_bars(symbol, timeframe))
