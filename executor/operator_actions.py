"""The operator's acts on trading, one function each, called by the CLI and the console
alike so the two cannot disagree on a rule: who may act, what needs a reason, what is
refused. Each act is journaled with the person who took it.

- ``change_trading_state``: ACTIVE / REDUCING / HALTED. Making trading safer (halt, reduce
  from ACTIVE) is never refused and records whoever is named (the CLI falls back to the
  login name); relaxing it (activate, reduce from HALTED) needs an identified person who,
  with [governance.people], holds the ``operator`` role.
- ``decide_approval``: an analyst's verdict on a queued request (``executor.approvals``),
  by a person identified the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.errors import ConfigError, OperatorRefusal
from executor.approvals import ApprovalOutcome, decide
from executor.governance import refusal
from executor.journal.store import Journal
from executor.settings import OPERATOR_ROLE, GovernanceSettings, WeightFeedbackSettings


def identified_person(gov: GovernanceSettings, person: str | None,
                      role: str = OPERATOR_ROLE) -> str:
    """``person``, stripped, when they may act in ``role``: ConfigError (exit 2) when
    nobody is named, OperatorRefusal (exit 5) when the named person is not entitled."""
    why = refusal(gov, person, role)
    if why is None:
        return (person or "").strip()
    if not (person or "").strip():
        raise ConfigError(why)
    raise OperatorRefusal(why)


@dataclass(frozen=True, slots=True)
class StateChange:
    before: str
    state: str
    person: str
    reason: str


def change_trading_state(journal: Journal, gov: GovernanceSettings, target: str, *,
                         person: str | None, reason: str,
                         fallback_person: str = "unknown") -> StateChange:
    """Move the trading state to ``target`` (ACTIVE, REDUCING, HALTED) for ``reason``;
    OperatorRefusal when it is already there."""
    from guardrails.state import TradingState, current_state, relaxes, set_state

    try:
        state = TradingState(target)
    except ValueError:
        raise ConfigError(f"unknown trading state {target!r} (ACTIVE, REDUCING, HALTED)"
                          ) from None
    why = reason.strip()
    if not why:
        raise ConfigError("a trading-state change needs a reason")
    store = journal.trading_state
    before = current_state(store, fresh=True)
    if state is TradingState.ACTIVE or relaxes(before, state):
        who = identified_person(gov, person)
    else:
        who = (person or "").strip() or fallback_person
    if not set_state(store, state, operator=who, reason=why):
        raise OperatorRefusal(f"trading state is already {current_state(store).value}")
    return StateChange(before.value, state.value, who, why)


def decide_approval(journal: Journal, gov: GovernanceSettings,
                    feedback: WeightFeedbackSettings, approval_id: int, *, approve: bool,
                    person: str | None, note: str, now: datetime) -> ApprovalOutcome:
    """Approve or reject request ``approval_id`` as ``person`` with ``note``."""
    who = identified_person(gov, person)
    return decide(journal, approval_id, approve=approve, operator=who, note=note, now=now,
                  feedback=feedback)
