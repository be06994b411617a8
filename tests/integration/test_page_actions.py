"""The rules of the acts the console's Incidents, Providers and Parameters pages share
with the CLI (executor/incident_actions.py, provider_actions.py, param_actions.py), each
journaled with the person who took it."""

from __future__ import annotations

import pytest
from support.daemon_helpers import settings_for

from domain.errors import ConfigError, NotFound, OperatorRefusal
from executor.incident_actions import acknowledge, resolve
from executor.journal.store import Journal
from executor.param_actions import activate_version, rollback_version
from executor.provider_actions import set_rotation
from guardrails.params import active_version, propose


def test_incidents_are_acknowledged_then_resolved_once(sqlite_url: str) -> None:
    j = Journal.open(sqlite_url)
    try:
        incident = j.incidents.open_incident("high", "stale_bars", "no bar for 1 h")
        with pytest.raises(ConfigError, match="note"):
            acknowledge(j, incident, person="ann", note="  ")
        with pytest.raises(NotFound):
            acknowledge(j, incident + 1, person="ann", note="on it")
        acknowledge(j, incident, person="ann", note="on it")
        with pytest.raises(OperatorRefusal, match="already acknowledged"):
            acknowledge(j, incident, person="bob", note="me too")
        resolve(j, incident, person="bob", note="feed back")
        with pytest.raises(OperatorRefusal, match="already resolved"):
            acknowledge(j, incident, person="ann", note="late")
        [row] = j.incidents.all()
        assert row.status == "resolved"
        assert [(h["status"], h["operator"], h["note"]) for h in row.details["history"]] == [
            ("acknowledged", "ann", "on it"), ("resolved", "bob", "feed back")]
    finally:
        j.close()


def test_a_provider_leaves_rotation_and_returns_with_a_reason(sqlite_url: str) -> None:
    settings = settings_for(sqlite_url)
    j = Journal.open(sqlite_url)
    try:
        with pytest.raises(ConfigError, match="reason"):
            set_rotation(j, settings, "momentum", enable=False, person="ann", reason="")
        with pytest.raises(NotFound):
            set_rotation(j, settings, "oracle", enable=False, person="ann", reason="x")
        with pytest.raises(OperatorRefusal, match="already in rotation"):
            set_rotation(j, settings, "momentum", enable=True, person="ann", reason="x")
        set_rotation(j, settings, "momentum", enable=False, person="ann", reason="flaky")
        assert j.provider_calls.disabled_providers()["momentum"].operator == "ann"
        with pytest.raises(OperatorRefusal, match="already disabled"):
            set_rotation(j, settings, "momentum", enable=False, person="bob", reason="x")
        set_rotation(j, settings, "momentum", enable=True, person="bob", reason="fixed")
        assert j.provider_calls.disabled_providers() == {}
    finally:
        j.close()


def test_activation_and_rollback_need_an_entitled_person(sqlite_url: str) -> None:
    people = {"ann": ["operator", "trading", "platform"], "bob": ["compliance"]}
    settings = settings_for(sqlite_url, governance={"people": people})
    j = Journal.open(sqlite_url)
    try:
        v1 = propose(j.params, {"a": 1}, author="ann", reason="first")
        v2 = propose(j.params, {"a": 2}, author="ann", reason="second")
        with pytest.raises(ConfigError, match="identified person"):
            activate_version(j, settings, v1.version, person=None, reason="go")
        with pytest.raises(OperatorRefusal, match="does not hold the 'operator' role"):
            activate_version(j, settings, v1.version, person="bob", reason="go")
        activate_version(j, settings, v1.version, person="ann", reason="go")
        with pytest.raises(OperatorRefusal, match="already active"):
            activate_version(j, settings, v1.version, person="ann", reason="again")
        activate_version(j, settings, v2.version, person="ann", reason="try v2")
        with pytest.raises(OperatorRefusal):
            rollback_version(j, settings, person="bob", reason="worse")
        assert rollback_version(j, settings, person="ann", reason="worse").version == 1
        assert active_version(j.params).version == 1  # type: ignore[union-attr]
        assert [e.operator for e in j.params.param_events()] == ["ann", "ann", "ann"]
    finally:
        j.close()
