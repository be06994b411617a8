"""Manual kill switch. Its state lives in the journal (engage/release events), so it
survives restarts and an operator's command in another process reaches a running daemon."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from strategies.domain import CheckResult, Decision

from guardrails.base import AccountState


class KillSwitchView(Protocol):
    engaged: bool
    operator: str | None
    reason: str | None
    since: datetime | None


class KillSwitchStore(Protocol):
    def kill_switch_state(self, scope: str = "global") -> KillSwitchView: ...


class KillSwitchCheck:
    name = "kill_switch"

    def __init__(self, store: KillSwitchStore) -> None:
        self.store = store

    def check(self, decision: Decision, account: AccountState) -> CheckResult:
        state = self.store.kill_switch_state()
        if state.engaged:
            since = state.since.isoformat() if state.since else "?"
            return CheckResult(self.name, False,
                               f"engaged by {state.operator} since {since}: {state.reason}")
        return CheckResult(self.name, True, "released")
