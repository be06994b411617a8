"""The A/B test's answer in one sentence: which variant wins, or that there is no
difference at the test's confidence, with the interval that says so.

The decision rule is the interval's: a difference (enhanced - baseline) whose percentile
bootstrap interval (``executor.reports.ab``) lies wholly on one side of zero is a win for
the variant it favours; an interval that covers zero is "no difference". Mean R is the
primary metric (the expectancy per trade, independent of position size); the others are
reported beside it. For the drawdown a smaller value is the better one.
"""

from __future__ import annotations

from executor.reports.ab import BASELINE, ENHANCED, ABResult, DiffCI
from executor.reports.humanize import pct, ratio

__all__ = ["PRIMARY", "metric_verdict", "verdict"]

PRIMARY = "mean_r"
_LOWER_IS_BETTER = {"max_drawdown_r"}
_NAMES = {"mean_r": "mean R", "win_rate": "win rate", "max_drawdown_r": "max drawdown (R)",
          "mean_pnl": "mean PnL per trade"}


def _value(metric: str, v: float) -> str:
    if metric == "win_rate":
        return pct(v, signed=True).replace(" %", " pts")
    return ratio(v, digits=3) if v <= 0 else "+" + ratio(v, digits=3)


def metric_verdict(d: DiffCI, confidence: float) -> str:
    """"enhanced wins on mean R at 95 %: enhanced - baseline +0.120, 95 % interval
    [+0.030, +0.210]", "no difference at 95 % on ...", or why there is no answer."""
    name = _NAMES.get(d.metric, d.metric)
    level = pct(confidence, digits=0)
    if d.estimate is None or d.low is None or d.high is None:
        return (f"no verdict on {name}: not enough trades in both arms for a "
                f"{level} interval")
    interval = (f"enhanced - baseline {_value(d.metric, d.estimate)}, {level} interval "
                f"[{_value(d.metric, d.low)}, {_value(d.metric, d.high)}]")
    if d.low <= 0 <= d.high:
        return f"no difference at {level} on {name}: {interval}"
    favours_enhanced = (d.low > 0) != (d.metric in _LOWER_IS_BETTER)
    winner = ENHANCED if favours_enhanced else BASELINE
    return f"{winner} wins on {name} at {level}: {interval}"


def verdict(ab: ABResult) -> str:
    """The primary metric's verdict, naming the variants (enhanced = the ensemble,
    baseline = rules only)."""
    d = ab.diff(PRIMARY)
    text = metric_verdict(d, ab.design.confidence)
    return (text[0].upper() + text[1:]).replace(
        "Enhanced wins", "Enhanced (the ensemble) wins").replace(
        "Baseline wins", "Baseline (rules only) wins") + "."
