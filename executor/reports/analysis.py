"""One place that turns a journal into every result a report or the CLI shows."""

from __future__ import annotations

from dataclasses import dataclass

from executor.reports.ab import ABDesign, ABResult, analyze, batches_from_proposals
from executor.reports.journal_data import RunData
from executor.reports.metrics import RunMetrics, TradeBook, compute_metrics, reconstruct_trades
from executor.reports.providers import ProviderStats, provider_stats

__all__ = ["RunAnalysis", "analyze_run"]


@dataclass(frozen=True)
class RunAnalysis:
    data: RunData
    book: TradeBook
    metrics: RunMetrics
    providers: list[ProviderStats]
    ab: ABResult | None = None


def analyze_run(data: RunData, *, contract_size: float, initial_balance: float,
                ab_design: ABDesign | None = None, ab_run_id: int | None = None,
                histogram_width: float = 0.5) -> RunAnalysis:
    """Trades, run metrics and provider statistics of the whole journal; with an A/B
    design, the A/B analysis of the proposals of ``ab_run_id`` (all runs when ``None``)."""
    book = reconstruct_trades(data.orders, data.fills, contract_size, data.costs)
    metrics = compute_metrics(book.closed, initial_balance=initial_balance,
                              bar_times=data.bar_times,
                              open_since=[t.entry_time for t in book.still_open],
                              histogram_width=histogram_width)
    providers = provider_stats(data.decisions, data.provider_calls, book.closed)
    ab = None
    if ab_design is not None:
        proposals = data.proposals_of_run(ab_run_id)
        decision_of = {d.proposal_id: d.id for d in data.decisions}
        batches = batches_from_proposals(ab_design, [(p.id, p.bar_time) for p in proposals],
                                         book.closed, decision_of)
        ab = analyze(batches, ab_design)
    return RunAnalysis(data, book, metrics, providers, ab)
