"""Premium / discount relative to the current dealing range."""

from __future__ import annotations


def premium_discount(price: float, low: float, high: float, band: float) -> str:
    """``premium`` above the range's midpoint, ``discount`` below, ``equilibrium`` within
    ``band`` (a fraction of the range) of it.

    The band exists because a price a hair above the 50% line is not meaningfully "premium";
    strategies that buy discount / sell premium should not flip on noise around the midpoint.
    """
    span = high - low
    if span <= 0.0:
        return "equilibrium"
    pos = (price - low) / span
    if pos > 0.5 + band:
        return "premium"
    if pos < 0.5 - band:
        return "discount"
    return "equilibrium"
