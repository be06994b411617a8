"""The figures a trader reads first (the report's header strip), and the run results and
trades as a person reads them: the same numbers as the exports, formatted by
``executor.reports.humanize``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from executor.reports.ab import ArmStats, DiffCI
from executor.reports.html import Figure
from executor.reports.humanize import count, money, pct, price, r_multiple, ratio
from executor.reports.metrics import RunMetrics, Trade

__all__ = ["ab_arms_shown", "ab_diffs_shown", "key_figures", "results_shown", "trades_shown"]


def _tone(v: float | None) -> str:
    return "" if v is None or v == 0 else "good" if v > 0 else "bad"


def key_figures(m: RunMetrics, currency: str) -> tuple[Figure, ...]:
    """Net PnL, return, max drawdown, Sharpe (daily, annualised; per trade when there is no
    daily figure), trades, win rate, profit factor, exposure. Sortino is not computed
    (docs/reports.md), so it is not shown."""
    ret = m.total_pnl / m.initial_balance if m.initial_balance else None
    sharpe, basis = ((m.sharpe_daily, "daily, annualised √252")
                     if m.sharpe_daily is not None else
                     (m.sharpe_per_trade, "per trade, not annualised"))
    return (
        Figure("net_pnl", "Net PnL", money(m.total_pnl, currency, signed=True),
               f"final equity {money(m.final_equity, currency)}", _tone(m.total_pnl)),
        Figure("return", "Return", pct(ret, digits=2, signed=True),
               f"on {money(m.initial_balance, currency)}", _tone(ret)),
        Figure("max_drawdown", "Max drawdown", money(-m.max_drawdown, currency),
               f"{pct(m.max_drawdown_pct / 100, digits=2)} of peak",
               "bad" if m.max_drawdown > 0 else ""),
        Figure("sharpe", "Sharpe", ratio(sharpe), basis if sharpe is not None
               else "fewer than two returns"),
        Figure("trades", "Trades", count(m.trades), f"{count(m.wins)} won, "
               f"{count(m.losses)} lost"),
        Figure("win_rate", "Win rate", pct(m.win_rate), "PnL > 0"),
        Figure("profit_factor", "Profit factor", ratio(m.profit_factor),
               "gross win / gross loss" if m.profit_factor is not None else "no losers"),
        Figure("exposure", "Exposure", pct(m.exposure), "of bars in a position"),
    )


def _formatters(currency: str) -> dict[str, Callable[[Any], str]]:
    cash = lambda v: money(v, currency)  # noqa: E731 - a table of one-liners
    return {
        **dict.fromkeys(("trades", "wins", "losses", "trades_with_r"), count),
        **dict.fromkeys(("win_rate", "exposure"), pct),
        **dict.fromkeys(("total_pnl", "initial_balance", "final_equity",
                         "expectancy_money", "max_drawdown"), cash),
        **dict.fromkeys(("avg_r", "median_r", "total_r", "avg_win_r", "avg_loss_r",
                         "expectancy_r"), r_multiple),
        **dict.fromkeys(("profit_factor", "sharpe_per_trade", "sharpe_daily"), ratio),
        "max_drawdown_pct": lambda v: pct(v / 100, digits=2),
    }


def results_shown(m: RunMetrics, labels: Sequence[str], currency: str
                  ) -> tuple[tuple[str, str], ...]:
    """The results table's cells, row for row with ``RunMetrics.as_dict()``."""
    fmt = _formatters(currency)
    return tuple((label, fmt.get(k, str)(v))
                 for label, (k, v) in zip(labels, m.as_dict().items(), strict=True))


def trades_shown(trades: Sequence[Trade], digits: int, currency: str
                 ) -> tuple[tuple[str, ...], ...]:
    """The closed-trades table's cells (its column order in ``replay_report``)."""
    def when(t: datetime) -> str:
        return f"{t:%Y-%m-%d %H:%M}"

    return tuple((
        when(t.entry_time), when(t.exit_time), t.symbol, t.side, f"{t.volume:g}",
        price(t.entry_price, digits), price(t.exit_price, digits),
        price(t.stop_loss, digits), t.exit_kind, money(t.pnl, currency, signed=True),
        money(t.fees, currency), money(t.funding, currency, signed=True),
        money(t.risk, currency), r_multiple(t.r_multiple),
        t.client_order_id, "–" if t.decision_id is None else str(t.decision_id))
        for t in trades)


def ab_arms_shown(arms: Sequence[ArmStats], columns: Sequence[str], currency: str
                  ) -> tuple[tuple[str, ...], ...]:
    """The A/B per-arm table's cells."""
    fmt = _formatters(currency)
    fmt.update({"mean_r": r_multiple, "total_r": r_multiple, "max_drawdown_r": r_multiple,
                "mean_pnl": fmt["total_pnl"], "max_drawdown_money": fmt["total_pnl"],
                "batches": count, "proposals": count})
    return tuple(tuple(fmt.get(c, str)(s.as_dict()[c]) for c in columns) for s in arms)


def ab_diffs_shown(diffs: Sequence[DiffCI], columns: Sequence[str]
                   ) -> tuple[tuple[str, ...], ...]:
    """The A/B differences table's cells: a win-rate difference in percentage points."""
    def value(metric: str, v: float | None) -> str:
        if metric == "win_rate":
            return pct(v, signed=True).replace(" %", " pts")
        return r_multiple(v) if metric.endswith("_r") else ratio(v, digits=3)

    out = []
    for d in diffs:
        cells = {"metric": d.metric, "estimate": value(d.metric, d.estimate),
                 "low": value(d.metric, d.low), "high": value(d.metric, d.high),
                 "resamples_used": count(d.resamples_used),
                 "share_positive": pct(d.share_positive)}
        out.append(tuple(cells.get(c, str(d.as_dict()[c])) for c in columns))
    return tuple(out)
