"""The Providers, Parameters and Incidents pages' actions: the console role each needs,
the service function's refusal shown as the CLI's message, and the act journaled with the
signed-in person; the pages themselves render for a viewer."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from support.console import console_settings, csrf_of, sign_in

from executor.console.app import create_app
from executor.journal.store import Journal
from guardrails.params import activate, propose

HTMX = {"HX-Request": "true"}
PAGES = ("/", "/overview/panel", "/providers", "/providers?days=", "/providers/table",
         "/parameters", "/parameters/versions", "/incidents", "/incidents/list", "/replays")
# path, form, the console role it needs
ACTS = [("/providers/momentum/rotation", {"action": "disable", "reason": "flaky"},
         "operator"),
        ("/parameters/activate", {"version": "1", "reason": "go"}, "operator"),
        ("/parameters/rollback", {"reason": "worse"}, "operator"),
        ("/incidents/1/status", {"status": "acknowledged", "note": "on it"}, "operator"),
        ("/providers/export", {"days": "", "horizon": "8"}, "analyst")]


@pytest.fixture
def url(sqlite_url: str) -> str:
    j = Journal.open(sqlite_url)
    try:
        first = propose(j.params, {"v": 1}, author="ann", reason="first")
        activate(j.params, first.version, operator="ann", reason="known good")
        second = propose(j.params, {"v": 2}, author="ann", reason="second")
        activate(j.params, second.version, operator="ann", reason="try")
        j.incidents.open_incident("high", "stale_bars", "no bar for 1 h")
    finally:
        j.close()
    return sqlite_url


def _client(url: str, name: str, **settings: object) -> tuple[TestClient, str]:
    client = TestClient(create_app(console_settings(url, **settings)))
    sign_in(client, name)
    return client, csrf_of(client.get("/parameters").text)


def test_every_page_renders_for_a_viewer(url: str) -> None:
    client, _ = _client(url, "vic")
    for path in PAGES:
        r = client.get(path, headers=HTMX if "/" in path[1:] else None)
        assert r.status_code == 200, (path, r.text)
    assert "<form" not in client.get("/parameters/versions").text  # no controls offered


@pytest.mark.parametrize(("path", "form", "role"), ACTS)
def test_each_act_needs_its_console_role(url: str, path: str, form: dict[str, str],
                                         role: str) -> None:
    for name in ("vic", "ana" if role == "operator" else "ops"):  # lacking that role
        client, token = _client(url, name)
        r = client.post(path, data=form, headers={**HTMX, "X-CSRF-Token": token})
        assert r.status_code == 403 and role in r.text, (name, r.text)


def test_acts_are_journaled_with_the_signed_in_person(url: str) -> None:
    client, token = _client(url, "ops")
    headers = {**HTMX, "X-CSRF-Token": token}
    r = client.post("/parameters/rollback", data={"reason": "v2 lost"}, headers=headers)
    assert r.status_code == 200 and "rolled back to v1 by ops" in r.text
    assert r.headers["HX-Trigger"] == "dta:params"
    again = client.post("/parameters/activate", data={"version": "1", "reason": "x"},
                        headers=headers)
    assert again.status_code == 403 and "already active" in again.text  # the CLI's words
    r = client.post("/incidents/1/status", data={"status": "acknowledged", "note": ""},
                    headers=headers)
    assert r.status_code == 422 and "note" in r.text
    r = client.post("/incidents/1/status", data={"status": "resolved", "note": "fixed"},
                    headers=headers)
    assert r.status_code == 200 and r.headers["HX-Trigger"] == "dta:incidents"
    assert client.post("/providers/oracle/rotation", data={"action": "disable",
                       "reason": "x"}, headers=headers).status_code == 404
    j = Journal.open(url)
    try:
        assert j.params.param_events()[-1].operator == "ops"
        assert j.incidents.all()[0].details["history"][-1]["operator"] == "ops"
    finally:
        j.close()


def test_activation_follows_the_governance_binding(url: str) -> None:
    people = {"ann": ["operator", "trading", "compliance", "platform"], "ops": ["trading"]}
    client, token = _client(url, "ops", governance={"people": people})
    r = client.post("/parameters/rollback", data={"reason": "v2 lost"},
                    headers={**HTMX, "X-CSRF-Token": token})
    assert r.status_code == 403 and "does not hold the &#39;operator&#39; role" in r.text


def test_the_analytics_export_needs_a_configured_database(url: str) -> None:
    client, token = _client(url, "ann")
    r = client.post("/providers/export", data={"days": "", "horizon": "8"},
                    headers={**HTMX, "X-CSRF-Token": token})
    assert r.status_code == 422 and "analytics_url" in r.text
