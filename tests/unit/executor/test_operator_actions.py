"""The trading-state rules shared by `dta trading-state` and the console
(executor/operator_actions.py): safer is never refused, relaxing needs an entitled person,
every change is journaled with who made it."""

from __future__ import annotations

import pytest

from domain.errors import ConfigError, OperatorRefusal
from executor.journal.store import Journal
from executor.operator_actions import change_trading_state, identified_person
from executor.settings import GovernanceSettings

BOUND = GovernanceSettings(people={"ann": ["operator", "trading", "compliance", "platform"],
                                   "bob": ["trading"]})


def test_halt_is_never_refused_and_records_who(sqlite_url: str) -> None:
    j = Journal.open(sqlite_url)
    try:
        change = change_trading_state(j, BOUND, "HALTED", person=None, reason="news",
                                      fallback_person="login-name")
        assert (change.before, change.state, change.person) == ("ACTIVE", "HALTED",
                                                                 "login-name")
        with pytest.raises(OperatorRefusal, match="already HALTED"):
            change_trading_state(j, BOUND, "HALTED", person="ann", reason="again")
        event = j.trading_state.trading_state_events(1)[0]
        assert (event.state, event.operator, event.reason) == ("HALTED", "login-name", "news")
    finally:
        j.close()


def test_relaxing_needs_an_entitled_person(sqlite_url: str) -> None:
    j = Journal.open(sqlite_url)
    try:
        change_trading_state(j, BOUND, "HALTED", person="bob", reason="news")
        with pytest.raises(ConfigError):
            change_trading_state(j, BOUND, "ACTIVE", person=None, reason="ok")
        with pytest.raises(OperatorRefusal, match="operator"):
            change_trading_state(j, BOUND, "ACTIVE", person="bob", reason="ok")
        with pytest.raises(OperatorRefusal):  # HALTED -> REDUCING relaxes too
            change_trading_state(j, BOUND, "REDUCING", person="bob", reason="exits")
        with pytest.raises(ConfigError, match="reason"):
            change_trading_state(j, BOUND, "ACTIVE", person="ann", reason="  ")
        change = change_trading_state(j, BOUND, "ACTIVE", person="ann", reason="checked")
        assert (change.state, change.person) == ("ACTIVE", "ann")
    finally:
        j.close()


def test_identified_person_without_a_binding_needs_only_a_name() -> None:
    assert identified_person(GovernanceSettings(), " cat ") == "cat"
    with pytest.raises(ConfigError):
        identified_person(GovernanceSettings(), "")
