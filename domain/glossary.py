"""Smart Money Concepts vocabulary: one definition per term, one closed set of tags.

Strategies tag proposals and LLM providers tag their rationales with these values, so the
journal, `dta trace` and scoring can group by concept. A tag outside this set from an LLM
is a parsing failure to surface, not a new concept to store: `validate_tag` enforces that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from types import MappingProxyType


class Tag(StrEnum):
    """Every tag value a proposal or provider signal may carry."""

    SWING_HIGH = "swing_high"
    SWING_LOW = "swing_low"
    TREND_BULLISH = "trend_bullish"
    TREND_BEARISH = "trend_bearish"
    BOS_BULLISH = "bos_bullish"
    BOS_BEARISH = "bos_bearish"
    CHOCH_BULLISH = "choch_bullish"
    CHOCH_BEARISH = "choch_bearish"
    LIQUIDITY_POOL_BUYSIDE = "liquidity_pool_buyside"
    LIQUIDITY_POOL_SELLSIDE = "liquidity_pool_sellside"
    LIQUIDITY_SWEEP_BUYSIDE = "liquidity_sweep_buyside"
    LIQUIDITY_SWEEP_SELLSIDE = "liquidity_sweep_sellside"
    ORDER_BLOCK_BULLISH = "order_block_bullish"
    ORDER_BLOCK_BEARISH = "order_block_bearish"
    MITIGATION_BLOCK_BULLISH = "mitigation_block_bullish"
    MITIGATION_BLOCK_BEARISH = "mitigation_block_bearish"
    FVG_BULLISH = "fvg_bullish"
    FVG_BEARISH = "fvg_bearish"
    PREMIUM = "premium"
    DISCOUNT = "discount"
    EQUILIBRIUM = "equilibrium"
    SESSION_ASIA = "session_asia"
    SESSION_LONDON = "session_london"
    SESSION_NEW_YORK = "session_new_york"


_TERMS: dict[str, str] = {
    "swing high": "A bar whose high is the highest of the bars around it; confirmed only "
    "after the bars to its right have closed (swing_length bars).",
    "swing low": "A bar whose low is the lowest of the bars around it; confirmed like a "
    "swing high.",
    "market structure": "The alternating sequence of swing highs and lows; higher highs and "
    "higher lows are bullish, lower highs and lower lows bearish.",
    "break of structure (BOS)": "A close beyond the latest swing in the direction the "
    "structure already runs (the pull-back held): continuation.",
    "change of character (CHoCH)": "A close beyond the latest swing after the pull-back "
    "broke the prior opposite swing: the first sign the other side has taken control.",
    "liquidity": "Resting stop and breakout orders, clustered just beyond obvious swing "
    "highs (buy-side) and swing lows (sell-side).",
    "liquidity pool": "Two or more swing highs (equal highs, buy-side) or lows (equal lows, "
    "sell-side) within a small tolerance: a magnet for price.",
    "liquidity sweep": "A wick beyond a pool or swing that closes back inside: the stops "
    "were taken and the move rejected. Buy-side sweeps (above highs) are bearish.",
    "order block": "The last opposing candle before the displacement that broke structure "
    "(for a bullish block, the candle that made the pull-back low); price often returns to it.",
    "mitigation block": "An order block price has come back into after it formed, and that "
    "has not yet been closed through; where a retest entry is taken.",
    "fair value gap (FVG)": "A three-candle imbalance: the first candle's high is below the "
    "third's low (bullish) or its low above the third's high (bearish).",
    "dealing range": "The range between the latest structural swing low and swing high.",
    "premium": "The upper part of the dealing range, above equilibrium: where smart money "
    "sells.",
    "discount": "The lower part of the dealing range, below equilibrium: where smart money "
    "buys.",
    "equilibrium": "The middle (50%) of the dealing range, within a small band.",
    "session": "Asia (00-07 UTC), London (07-12 UTC), New York (12-21 UTC).",
}

TERMS: MappingProxyType[str, str] = MappingProxyType(_TERMS)
"""Term -> definition, for prompts and documentation."""

TAG_VALUES: frozenset[str] = frozenset(t.value for t in Tag)

_SEPARATORS = re.compile(r"[\s\-./]+")


def validate_tag(tag: str) -> Tag:
    """The canonical tag for ``tag``, or ``ValueError`` naming the offending value.

    Case, surrounding space and separators are normalised ("BOS Bullish", "bos-bullish"
    -> ``bos_bullish``) because LLMs vary those freely; the words themselves must match.
    """
    if not isinstance(tag, str):
        raise ValueError(f"tag must be a string, got {type(tag).__name__}")
    key = _SEPARATORS.sub("_", tag.strip().lower()).strip("_")
    try:
        return Tag(key)
    except ValueError:
        raise ValueError(
            f"unknown SMC tag {tag!r}: expected one of {', '.join(sorted(TAG_VALUES))}"
        ) from None


def validate_tags(tags: Iterable[str]) -> tuple[Tag, ...]:
    """All of ``tags`` validated, duplicates dropped, first occurrence order kept."""
    seen: dict[Tag, None] = {}
    for t in tags:
        seen.setdefault(validate_tag(t), None)
    return tuple(seen)


def is_valid_tag(tag: str) -> bool:
    try:
        validate_tag(tag)
    except ValueError:
        return False
    return True
