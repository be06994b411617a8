"""The sections of a replay (and A/B) report, built from a ``RunAnalysis``.

``build_report`` assembles the header's key figures and the standard sections (price
panel, results, providers, A/B, SMC scores, reproducibility) and appends any
``extra_sections`` a caller builds, which is how a shadow pairing table (MT5 bridge) joins
the same page without this module knowing about it.

No empty charts: a chart without data is left out, and the section says in one line why.
Money is in the symbol's quote currency (the paper broker books price moves times volume
times contract size), prices at the symbol's digits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from executor.reports.ab import ABResult
from executor.reports.ab_verdict import metric_verdict, verdict
from executor.reports.analysis import RunAnalysis
from executor.reports.html import Badge, Report, Section, Table
from executor.reports.humanize import price_digits, quote_currency
from executor.reports.key_figures import (
    ab_arms_shown,
    ab_diffs_shown,
    key_figures,
    results_shown,
    trades_shown,
)
from executor.reports.metrics import RunMetrics
from executor.reports.price_panel import price_section
from executor.reports.smc_scoring import DetectionScore
from executor.reports.svg import PALETTE, Series, bar_chart, interval_chart, line_chart

__all__ = ["build_report", "flatten", "results_rows"]

_LABELS = {
    "trades": "closed trades", "wins": "winners", "losses": "losers (PnL <= 0)",
    "win_rate": "win rate", "total_pnl": "total PnL", "initial_balance": "initial balance",
    "final_equity": "final realised equity", "trades_with_r": "trades with an R (had a stop)",
    "avg_r": "average R", "median_r": "median R", "total_r": "total R",
    "avg_win_r": "average winner (R)", "avg_loss_r": "average loser (R, positive)",
    "expectancy_r": "expectancy (R per trade)", "expectancy_money": "expectancy (money/trade)",
    "profit_factor": "profit factor", "max_drawdown": "max drawdown (money)",
    "max_drawdown_pct": "max drawdown (% of peak)", "exposure": "exposure (share of bars)",
    "sharpe_per_trade": "Sharpe per trade (not annualised)",
    "sharpe_daily": "Sharpe daily (annualised sqrt 252)",
}


def results_rows(m: RunMetrics) -> list[tuple[str, Any]]:
    return [(_LABELS.get(k, k), v) for k, v in m.as_dict().items()]


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as dotted keys (the reproducibility table)."""
    if isinstance(value, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list | tuple):
        return [(prefix, ", ".join(str(v) for v in value))]
    return [(prefix, "" if value is None else str(value))]


def _charts(*candidates: tuple[str, bool, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(charts with data, one line per chart left out). Each candidate is (chart, has
    data, why it has none)."""
    return (tuple(c for c, ok, _ in candidates if ok),
            tuple(why for _, ok, why in candidates if not ok))


def _results_section(a: RunAnalysis, digits: int, currency: str) -> Section:
    m = a.metrics
    curve = m.equity_curve
    equity = [(p.time.timestamp(), p.equity) for p in curve]
    dd = [(p.time.timestamp(), -p.drawdown) for p in curve]
    hist = m.r_histogram
    unit = f" ({currency})" if currency else " (money)"
    charts, left_out = _charts(
        (line_chart("equity", f"Realised equity{unit}",
                    [Series("equity", equity, PALETTE[0])]), m.trades > 0,
         "Equity and drawdown charts left out: no trade closed, so realised equity never "
         "moved."),
        (line_chart("drawdown", f"Drawdown from the running peak{unit}",
                    [Series("drawdown", dd, PALETTE[1], fill=True)], height=200),
         m.trades > 0, ""),
        (bar_chart("r_histogram", "R-multiple distribution (trades per bin)",
                   [f"{b.low:g}" for b in hist], [float(b.count) for b in hist], width=1100,
                   colors=[PALETTE[3] if b.low >= 0 else PALETTE[1] for b in hist]),
         bool(hist), "R histogram left out: no closed trade had a stop, so none has an R."),
    )
    trades = Table(
        "trades", "Closed trades",
        ("entry_time", "exit_time", "symbol", "side", "volume", "entry_price", "exit_price",
         "stop_loss", "exit_kind", "pnl", "fees", "funding", "risk", "r_multiple",
         "client_order_id", "decision_id"),
        tuple((t.entry_time, t.exit_time, t.symbol, t.side, t.volume, t.entry_price,
               t.exit_price, t.stop_loss, t.exit_kind, t.pnl, t.fees, t.funding, t.risk,
               t.r_multiple, t.client_order_id, t.decision_id) for t in a.book.closed),
        shown=trades_shown(a.book.closed, digits, currency))
    rows = tuple(results_rows(m))
    tables = [
        Table("results", "Run results", ("metric", "value"), rows,
              shown=results_shown(m, [label for label, _ in rows], currency)),
        trades,
        Table("equity_curve", "Equity curve (realised, after each closed trade)",
              ("time", "equity", "drawdown", "drawdown_pct"),
              tuple((p.time, p.equity, p.drawdown, p.drawdown_pct) for p in curve)),
        Table("r_histogram", "R-multiple histogram", ("low", "high", "count"),
              tuple((b.low, b.high, b.count) for b in hist)),
    ]
    if a.book.still_open:
        tables.append(Table(
            "open_positions", "Positions still open at the end (not counted as trades)",
            ("entry_time", "symbol", "side", "volume", "entry_price", "client_order_id"),
            tuple((t.entry_time, t.symbol, t.side, t.volume, t.entry_price, t.client_order_id)
                  for t in a.book.still_open)))
    return Section("results", "Results", notes=(
        "Trades are rebuilt from the journal's orders and fills; R = PnL / (|entry - stop| x "
        "volume x contract size). Equity and drawdown are realised (they move when a trade "
        "closes). Definitions: docs/reports.md.", *[w for w in left_out if w]),
        charts=charts, tables=tuple(tables))


def _providers_section(a: RunAnalysis) -> Section:
    ps = a.providers
    columns = ("provider", "provider_class", "model", "status", "calls", "failures", "invalid",
               "abstentions", "votes", "agreement", "hit_rate", "hit_votes", "latency_p50_ms",
               "latency_p95_ms", "cost", "tokens_in", "tokens_out")
    table = Table("providers", "Providers", columns,
                  tuple(tuple(p.as_dict()[c] for c in columns) for p in ps))
    if not ps:
        return Section("providers", "Providers", notes=(
            "No provider calls or signals were journaled (an A/B baseline-only run, or a "
            "journal from before provider telemetry).",), tables=(table,))
    names = [p.provider for p in ps]

    def pct(v: float | None) -> float | None:
        return None if v is None else v * 100

    def some(values: Sequence[float | None]) -> bool:
        return any(values)  # None and zero draw no bar

    agreement, hits = [pct(p.agreement) for p in ps], [pct(p.hit_rate) for p in ps]
    latency, cost = [p.latency_p95_ms for p in ps], [p.cost for p in ps]
    charts, left_out = _charts(
        (bar_chart("provider_agreement", "Agreement with the decision (%)", names,
                   agreement, color=PALETTE[0], unit="%"), some(agreement),
         "Agreement chart left out: no provider voted with a decision that was not flat."),
        (bar_chart("provider_hit_rate", "Hit rate on traded decisions (%)", names,
                   hits, color=PALETTE[3], unit="%"), some(hits),
         "Hit-rate chart left out: no provider's vote was right on a decision that became "
         "a closed trade (or none became one)."),
        (bar_chart("provider_latency", "Latency p95 (ms)", names, latency,
                   color=PALETTE[4]), some(latency),
         "Latency chart left out: no answered call has a latency journaled."),
        (bar_chart("provider_cost", "Cost (sum of calls)", names, cost, color=PALETTE[2]),
         some(cost), "Cost chart left out: every call cost nothing (local providers, or "
                     "no pinned price)."),
    )
    badges = tuple(Badge(p.provider, p.status,
                         f"{p.calls} calls, {p.failures} failed, {p.abstentions} abstained")
                   for p in ps)
    return Section("providers", "Providers", notes=(
        "Agreement: share of a provider's votes in the direction the ensemble decided. Hit "
        "rate: share of its votes on decisions that became closed trades that were right "
        "(with the trade and it won, or against it and it lost). Status: down when its last "
        "5 calls failed, degraded at 10 % failed or invalid calls.", *left_out),
        badges=badges, charts=charts, tables=(table,))


def _ab_section(ab: ABResult, currency: str) -> Section:
    d = ab.design
    arm_cols = ("arm", "batches", "proposals", "trades", "wins", "win_rate", "mean_r",
                "total_r", "max_drawdown_r", "total_pnl", "mean_pnl", "max_drawdown_money")
    arms = Table("ab_arms", "Per arm", arm_cols,
                 tuple(tuple(s.as_dict()[c] for c in arm_cols) for s in ab.arms.values()),
                 shown=ab_arms_shown(list(ab.arms.values()), arm_cols, currency))
    diff_cols = ("metric", "estimate", "low", "high", "resamples_used", "share_positive")
    diffs = Table("ab_differences",
                  f"Differences enhanced - baseline, {d.confidence:.0%} bootstrap intervals",
                  diff_cols, tuple(tuple(x.as_dict()[c] for c in diff_cols) for x in ab.diffs),
                  shown=ab_diffs_shown(ab.diffs, diff_cols))
    assignment = Table("ab_assignment", "Batch assignment", ("batch", "arm", "proposals",
                                                             "trades"),
                       tuple((b.key, b.arm, b.proposals, len(b.trades)) for b in ab.batches))
    arm_names = list(ab.arms)
    mean_r = [ab.arms[k].mean_r for k in arm_names]
    win = [None if ab.arms[k].win_rate is None else (ab.arms[k].win_rate or 0) * 100
           for k in arm_names]
    charts, left_out = _charts(
        (interval_chart("ab_intervals", "Enhanced - baseline (point estimate and interval)",
                        [(x.metric, x.estimate, x.low, x.high) for x in ab.diffs]),
         any(x.low is not None for x in ab.diffs),
         "Interval chart left out: neither arm has enough trades for an interval."),
        (bar_chart("ab_mean_r", "Mean R by arm", arm_names, mean_r,
                   colors=[PALETTE[6], PALETTE[0]]), any(mean_r),
         "Mean-R chart left out: no arm has a trade with an R."),
        (bar_chart("ab_win_rate", "Win rate by arm (%)", arm_names, win,
                   colors=[PALETTE[6], PALETTE[0]], unit="%"), any(win),
         "Win-rate chart left out: no arm has a winning trade."),
    )
    others = "; ".join(metric_verdict(x, d.confidence) for x in ab.diffs
                       if x.metric != "mean_r")
    return Section("ab", "A/B: ensemble vs rules only", verdict=verdict(ab), notes=(
        f"Seed {d.seed}; batches of {'one UTC day' if d.batch == 'day' else f'{d.batch} proposals'}"
        f" assigned in seeded pairs; baseline = the strategy's proposals through the "
        f"guardrails without the ensemble vote; {d.resamples} bootstrap resamples of "
        f"{d.unit}es, percentile intervals: a variant wins on a metric when the interval "
        f"of the difference lies wholly on its side of zero.", f"Other metrics: {others}.",
        *left_out), charts=charts, tables=(arms, diffs, assignment))


def _smc_section(scores: Sequence[DetectionScore], note: str) -> Section:
    cols = ("kind", "ours", "reference", "matched", "precision", "recall", "f1",
            "tolerance_bars")
    table = Table("smc_scores", "SMC detections against the reference labels", cols,
                  tuple(tuple(s.as_dict()[c] for c in cols) for s in scores))
    kinds = [s.kind for s in scores]
    charts = (
        bar_chart("smc_precision", "Precision", kinds, [s.precision for s in scores],
                  color=PALETTE[0]),
        bar_chart("smc_recall", "Recall", kinds, [s.recall for s in scores], color=PALETTE[5]),
    )
    return Section("smc", "SMC detection scores", notes=(note,), charts=charts,
                   tables=(table,))


def build_report(analysis: RunAnalysis, *, title: str, run_info: Mapping[str, Any],
                 meta: Sequence[tuple[str, str]] = (),
                 smc_scores: Sequence[DetectionScore] | None = None, smc_note: str = "",
                 extra_sections: Sequence[Section] = (), currency: str | None = None,
                 point: float | None = None,
                 snapshot_params: Mapping[str, Any] | None = None) -> Report:
    """The report. ``currency`` defaults to the symbol's quote currency, the price digits
    to ``point``'s (else the prices' own decimals); ``snapshot_params`` are the run's SMC
    builder parameters, for the price panel's events."""
    bars = analysis.data.bars
    symbol = bars[0].symbol if bars else next(
        (t.symbol for t in analysis.book.closed), "")
    cur = quote_currency(symbol) if currency is None else currency
    digits = price_digits((b.close for b in bars), point=point) if bars else 5
    sections = [price_section(bars, analysis.book, analysis.data.orders, digits=digits,
                              currency=cur, snapshot_params=snapshot_params or {}),
                _results_section(analysis, digits, cur), _providers_section(analysis)]
    if analysis.ab is not None:
        sections.append(_ab_section(analysis.ab, cur))
    if smc_scores:
        sections.append(_smc_section(smc_scores, smc_note))
    sections += list(extra_sections)
    sections.append(Section("run", "Reproducibility", notes=(
        "Everything needed to re-run this replay: the data file's SHA-256, the range, the "
        "parameter set (hash and version) and the provider mix; also in the journal's runs "
        "table (summary.replay) and run.json.",),
        tables=(Table("run_info", "Run", ("key", "value"), tuple(flatten(run_info))),)))
    return Report(title, tuple(meta), tuple(sections),
                  figures=key_figures(analysis.metrics, cur))
