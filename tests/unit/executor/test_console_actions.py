"""Console actions call the operator service functions the CLI calls, after the console
role check: the trading state (operator) and approval verdicts (analyst), each journaled
with the signed-in person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from support.console import console_settings, csrf_of, sign_in

from domain import OrderSide
from executor.approval_request import ApprovalRequest
from executor.console.app import create_app
from executor.journal.store import Journal


@pytest.fixture
def url(sqlite_url: str) -> str:
    Journal.open(sqlite_url).close()
    return sqlite_url


def _csrf(client: TestClient) -> str:
    return csrf_of(client.get("/orders").text)


def test_trading_state_needs_the_operator_role(url: str) -> None:
    for name in ("vic", "ana"):
        client = TestClient(create_app(console_settings(url)))
        sign_in(client, name)
        r = client.post("/state", data={"target": "HALTED", "reason": "x"},
                        headers={"X-CSRF-Token": _csrf(client), "HX-Request": "true"})
        assert r.status_code == 403 and "operator" in r.text
    client = TestClient(create_app(console_settings(url)))
    sign_in(client, "ops")
    token = _csrf(client)
    r = client.post("/state", data={"target": "HALTED", "reason": "news at 14:30"},
                    headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert r.status_code == 200 and "HALTED by ops" in r.text
    assert r.headers["HX-Trigger"] == "dta:state"
    again = client.post("/state", data={"target": "HALTED", "reason": "again"},
                        headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert again.status_code == 403 and "already HALTED" in again.text
    assert client.post("/state", data={"target": "ACTIVE", "reason": "x"}).status_code == 403
    j = Journal.open(url)
    try:
        event = j.trading_state.trading_state_events(1)[0]
        assert (event.state, event.operator, event.reason) == ("HALTED", "ops", "news at 14:30")
    finally:
        j.close()


def test_release_follows_the_governance_binding(url: str) -> None:
    people = {"ann": ["operator", "trading", "compliance", "platform"], "ops": ["trading"]}
    client = TestClient(create_app(console_settings(url, governance={"people": people})))
    sign_in(client, "ops")
    token = _csrf(client)
    halted = client.post("/state", data={"target": "HALTED", "reason": "news"},
                         headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert halted.status_code == 200  # safer: never refused
    r = client.post("/state", data={"target": "ACTIVE", "reason": "fine"},
                    headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert r.status_code == 403 and "does not hold the &#39;operator&#39; role" in r.text


def _queue(url: str) -> int:
    now = datetime.now(UTC)
    req = ApprovalRequest(client_order_id="dta-test-1", side=OrderSide.BUY, volume=0.1,
                          stop_loss=1.09, take_profit=1.12, entry=1.10, bar_time=now,
                          strategy="s", timeframe="M15", params_hash="h", reason="r",
                          confidence=0.4, agreement=1, voters=2)
    j = Journal.open(url)
    try:
        approval_id = j.approvals.create_approval(
            decision_id=1, account="paper-1", symbol="EURUSD", direction="long",
            intent=req.payload(), why="consensus: conflict", created_at=now,
            expires_at=now + timedelta(hours=1))
        j.commit()
        return approval_id
    finally:
        j.close()


def test_a_verdict_needs_the_analyst_role_and_is_journaled(url: str) -> None:
    approval_id = _queue(url)
    viewer = TestClient(create_app(console_settings(url)))
    sign_in(viewer, "vic")
    page = viewer.get(f"/approvals/{approval_id}")
    assert page.status_code == 200 and "Approve" not in page.text
    # A wall-clock request: its time left, counted down in the page from its expiry.
    assert "59 min" in page.text and "data-expires=" in page.text
    r = viewer.post(f"/approvals/{approval_id}/decide", data={"verdict": "approve",
                    "note": "x"}, headers={"X-CSRF-Token": _csrf(viewer), "HX-Request": "1"})
    assert r.status_code == 403
    analyst = TestClient(create_app(console_settings(url)))
    sign_in(analyst, "ana")
    token = _csrf(analyst)
    assert "Approve" in analyst.get(f"/approvals/{approval_id}").text
    no_note = analyst.post(f"/approvals/{approval_id}/decide", data={"verdict": "reject"},
                           headers={"X-CSRF-Token": token, "HX-Request": "1"})
    assert no_note.status_code == 403 and "note" in no_note.text
    r = analyst.post(f"/approvals/{approval_id}/decide",
                     data={"verdict": "reject", "note": "<b>late</b> in the session"},
                     headers={"X-CSRF-Token": token, "HX-Request": "1"})
    assert r.status_code == 200 and "rejected by ana" in r.text
    j = Journal.open(url)
    try:
        a = j.approvals.get_approval(approval_id)
        assert a is not None and (a.status, a.operator, a.note) == (
            "rejected", "ana", "<b>late</b> in the session")
    finally:
        j.close()
    shown = analyst.get("/approvals").text
    assert "&lt;b&gt;late&lt;/b&gt;" in shown and "<b>late</b>" not in shown
