"""The one market moment the ensemble tests put to their providers: EURUSD M15 at
2024-03-04 10:00 UTC, a bullish CHoCH retest long from 1.0852, stop 1.0838, target 1.0880,
ATR 0.0010.

The fake LLM servers' canned answers (entry, stop, target, the price band validation
allows) are written against these numbers, so they live in one place: a test that needs
another moment builds it with ``support.builders``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from domain import Direction, Proposal, Trend
from support.builders import a_bar, a_proposal, a_snapshot

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
BAR = a_bar(symbol="EURUSD", timeframe="M15", time=T0, open=1.0850, high=1.0856, low=1.0846,
            close=1.0852, volume=100, spread=0.00002)
SNAP = a_snapshot(symbol="EURUSD", timeframe="M15", index=500, bar=BAR, bars=(BAR,),
                  atr=0.0010, trend=Trend.BULLISH)
RETEST_TAGS = ("choch_bullish",)
BLOCK_RETEST_TAGS = ("choch_bullish", "order_block_bullish")


def retest_proposal(*, bar_time: datetime = T0,
                    tags: Sequence[str] = RETEST_TAGS) -> Proposal:
    """The strategy's long on the retest; ``bar_time`` moves it to another bar (a new
    decision key) with the same prices."""
    return a_proposal(strategy="smc_ob_retest", symbol="EURUSD", timeframe="M15",
                      bar_time=bar_time, direction=Direction.LONG, entry=1.0852, stop=1.0838,
                      target=1.0880, reason="bullish choch retest", tags=tags)


PROP = retest_proposal()
