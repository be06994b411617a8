"""A provider's state as the journal tells it, for the CLI, the status view and the
console: the circuit breaker lives in the daemon's process, so its state is read from the
newest transition the daemon journaled (``breaker_<state>`` provider events); which
providers there are, from the active parameter version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from executor.journal.store import Journal
    from executor.settings import Settings


def breaker_state(action: str | None, at: datetime | None, cooldown_s: float,
                  now: datetime) -> str:
    """The breaker's state from its newest journaled transition (``action`` at ``at``). An
    open breaker whose cooldown is over is half-open: that is what the breaker itself
    reports from then on, and its next call is the probe (the daemon journals the
    transition when it asks the breaker again, at its next decision)."""
    if action is None or at is None:
        return "closed"  # never journaled: no daemon has built it, or it never changed
    state = action.removeprefix("breaker_")
    moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    if state == "open" and (now - moment).total_seconds() >= cooldown_s:
        return "half_open"
    return state


def configured_providers(journal: Journal, settings: Settings) -> dict[str, Any]:
    """The providers of the active parameter version (the settings' set before any
    version is active), each with its configuration."""
    from guardrails.params import active_version

    active = active_version(journal.params)
    content = active.content if active else settings.parameter_set().values
    return dict(content.get("ensemble", {}).get("providers", {}))
