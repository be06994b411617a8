"""Trading state: ACTIVE, REDUCING (only exposure-reducing orders) or HALTED.

The state is the newest event in the journal (``trading_state_events``), so it survives
restarts and an operator's command in another process reaches a running daemon at its next
decision. Leaving HALTED or REDUCING needs an operator and a reason (enforced by the CLI
and here).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol

from domain import CheckResult, Decision
from guardrails.base import AccountState


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class StateView(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def operator(self) -> str | None: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def since(self) -> datetime | None: ...

    @property
    def trigger(self) -> str | None: ...


class StateStore(Protocol):
    def trading_state(self, scope: str = "global", *, fresh: bool = False) -> StateView: ...

    def record_trading_state(self, state: str, operator: str, reason: str,
                             trigger: str = "manual", scope: str = "global") -> None: ...


def state_of(view: StateView) -> TradingState:
    """The state a journal row names; a name this version does not know halts (fail
    closed), it never reads as ACTIVE."""
    try:
        return TradingState(view.state)
    except ValueError:
        return TradingState.HALTED


def current_state(store: StateStore, *, fresh: bool = False) -> TradingState:
    return state_of(store.trading_state(fresh=fresh))


_STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


def relaxes(before: TradingState, after: TradingState) -> bool:
    """Whether moving from ``before`` to ``after`` lets more orders through (to ACTIVE, or
    HALTED -> REDUCING): an identified operator's act, never a trigger's."""
    return _STRICTNESS[after] < _STRICTNESS[before]


def set_state(store: StateStore, state: TradingState, *, operator: str, reason: str,
              trigger: str = "manual") -> bool:
    """Move to ``state``; returns False when already there. A system trigger may only make
    things stricter; relaxing (to ACTIVE, or HALTED -> REDUCING) is an operator's act."""
    if not operator.strip() or not reason.strip():
        raise ValueError("a trading-state change needs an operator and a reason")
    # Through the cache: an operator's release in another process a moment ago must not
    # make a trigger that fires now think the state is still HALTED and write nothing.
    now = current_state(store, fresh=True)
    if now is state:
        return False
    if trigger != "manual" and relaxes(now, state):
        return False
    store.record_trading_state(state.value, operator, reason, trigger=trigger)
    return True


class TradingStateCheck:
    """HALTED blocks everything; REDUCING lets through only orders that shrink exposure."""

    name = "trading_state"

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        view = self.store.trading_state()
        state = state_of(view)
        why = f"{view.trigger or 'manual'} by {view.operator}: {view.reason}"
        if state is TradingState.HALTED:
            return CheckResult(self.name, False, f"HALTED ({why})", environmental=True)
        if state is TradingState.REDUCING and account.increases_exposure(decision):
            return CheckResult(self.name, False, f"REDUCING, order would add exposure ({why})",
                               environmental=True)
        return CheckResult(self.name, True, state.value)
