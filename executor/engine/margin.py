"""The margin terms a decision's guardrails see: asked of a broker that trades on margin
(a perpetual-swap account: ``margin_terms(symbol)``), absent for every other."""

from __future__ import annotations

import structlog

from domain.errors import VenueError
from domain.margin import UNKNOWN_TERMS, MarginTerms
from executor.brokers.base import Broker

log = structlog.get_logger("dta.executor")


def margin_terms(broker: Broker, symbol: str) -> MarginTerms | None:
    """``symbol``'s terms; None for a broker without margin. A venue that cannot tell
    gives ``UNKNOWN_TERMS``, which the stop-to-liquidation guardrail vetoes (fail closed:
    an unknown liquidation price is no reason to believe the stop comes first)."""
    ask = getattr(broker, "margin_terms", None)
    if not callable(ask):
        return None
    try:
        terms = ask(symbol)
    except VenueError as exc:
        log.error("margin_terms_read_failed", symbol=symbol, error=str(exc)[:200])
        return UNKNOWN_TERMS
    return terms if isinstance(terms, MarginTerms) else None
