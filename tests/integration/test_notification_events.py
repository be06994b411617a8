"""Each event kind reaches a person, from where it happens in the journal: an approval
queued (once committed), an operator's trading-state change made in another process, an
incident over the severity floor, an automatic rollback, a fill, the daily summary. And
no secret reaches a message, our log lines or apprise's."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from fakes.apprise_receiver import AppriseReceiver
from support.builders import a_fill, an_intent, an_order
from support.daemon_helpers import settings_for

from executor.journal.store import Journal
from executor.log_setup import configure_logging
from executor.notify import sender as sender_module
from executor.notify.hooks import Notifications, start_notifications
from executor.notify.sender import NotificationSender
from executor.notify.summary import DailySummary, next_summary_at

CONSOLE = "http://console.desk.example:8787"
NOW = datetime(2026, 3, 2, 21, 5, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[AppriseReceiver]:
    with AppriseReceiver() as r:
        yield r


def _start(url: str, receiver: AppriseReceiver, **notifications: Any,
           ) -> tuple[Journal, Notifications]:
    settings = settings_for(url, notifications={
        "urls": [receiver.url()], "console_url": CONSOLE, "backoff_seconds": 0.1,
        **notifications})
    journal = Journal.open(url)
    notify = start_notifications(settings, journal)
    assert notify is not None
    return journal, notify


def _queue_approval(journal: Journal, created: datetime) -> int:
    return journal.approvals.create_approval(
        decision_id=7, account="paper-1", symbol="EURUSD", direction="long",
        intent={"volume": 0.1, "clock": "wall"}, why="consensus: conflict", created_at=created,
        expires_at=created + timedelta(minutes=15))


def test_every_event_kind_reaches_the_receiver(tmp_path: Path,
                                               receiver: AppriseReceiver) -> None:
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    journal, notify = _start(url, receiver, events=[
        "approval_queued", "trading_state", "incident", "rollback", "fill", "daily_summary"])
    now = datetime.now(UTC)
    try:
        _queue_approval(journal, now)
        journal.rollback()  # never committed: nobody is sent a link to nothing
        approval = _queue_approval(journal, now)
        journal.commit()
        other = Journal.open(url)  # `dta trading-state halt` in another process
        journal.trading_state.trading_state()  # the daemon has read the state once
        other.trading_state.record_trading_state("HALTED", "ann", "broker outage")
        other.close()
        journal.trading_state.trading_state(fresh=True)  # its next read hears of it
        journal.incidents.open_incident("high", "approval_malformed", "approval #9: bad")
        journal.incidents.open_incident("info", "self_audit:note", "below the floor")
        journal.incidents.open_incident("high", "auto_rollback:drawdown",
                                        "rolled back to version 1: equity down 10 %")
        journal.orders.insert_order(an_order(intent=an_intent(
            client_order_id="dta-test", account="paper-1")))
        journal.orders.record_fill(a_fill(time=now), "entry", 0.0)
        journal.commit()
        assert notify.summary is not None
        notify.summary.run_once(now + timedelta(minutes=1))
    finally:
        journal.close()
        notify.close(timeout=10)
    titles = [b["title"] for b in receiver.accepted]
    assert len(titles) == 6, titles
    by_title = {t.split(": ", 1)[1]: b for t, b in zip(titles, receiver.accepted, strict=True)}
    queued = by_title[f"approval #{approval} queued (EURUSD)"]  # one: the rolled-back one not
    assert f"Open: {CONSOLE}/approvals/{approval}" in queued["message"]
    assert "Time left: 14 min" in queued["message"] or "Time left: 15 min" in queued["message"]
    halted = by_title["trading HALTED"]
    assert "set by ann" in halted["message"] and "broker outage" in halted["message"]
    assert halted["type"] == "failure"
    assert "approval #9: bad" in by_title["approval_malformed"]["message"]
    rollback = by_title["automatic rollback (drawdown)"]
    assert "rolled back to version 1" in rollback["message"]
    assert "buy 0.1 EURUSD filled" in by_title
    summary = by_title["daily summary"]["message"]
    assert "Approvals: 1 queued" in summary and "Incidents: 3 opened" in summary
    assert "Orders: 1" in summary and "1 fill(s)" in summary


def test_the_floor_and_the_choice_of_events(tmp_path: Path, receiver: AppriseReceiver) -> None:
    """An automatic state change is told by the incident opened with it, once; an event
    left out of ``events`` and an incident under ``min_severity`` are not sent."""
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    journal, notify = _start(url, receiver, events=["incident"], min_severity="high")
    try:
        journal.trading_state.record_trading_state("HALTED", "system", "drawdown 5 %",
                                                   trigger="daily_drawdown")
        journal.incidents.open_incident("critical", "halted:daily_drawdown", "drawdown 5 %")
        journal.incidents.open_incident("warning", "provider_slow", "under the floor")
        _queue_approval(journal, datetime.now(UTC))
        journal.commit()
    finally:
        journal.close()
        notify.close(timeout=10)
    assert [b["title"] for b in receiver.accepted] == [
        "[DTA CRITICAL] paper-1: halted:daily_drawdown"]


def test_the_daily_summary_is_due_once_a_day_at_its_utc_time() -> None:
    at = time(21, 5)
    assert next_summary_at(NOW - timedelta(seconds=1), at) == NOW
    assert next_summary_at(NOW, at) == NOW + timedelta(days=1)
    assert next_summary_at(NOW + timedelta(hours=3), at) == NOW + timedelta(days=1)


def test_the_daily_summary_goes_out_at_its_time_from_its_own_thread(
        tmp_path: Path, receiver: AppriseReceiver) -> None:
    """The thread's clock is half a second before 21:05 UTC; at 21:05 it reads the journal
    through a connection of its own and sends the day's figures."""
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    journal = Journal.open(url)
    journal.incidents.open_incident("high", "provider_down", "structure timed out")
    journal.close()
    offset = NOW - timedelta(seconds=0.5) - datetime.now(UTC)
    sender = NotificationSender([receiver.url()])
    summary = DailySummary(journal_url=url, account="paper-1", at=time(21, 5),
                           console_url=CONSOLE, send=sender.send,
                           now=lambda: datetime.now(UTC) + offset)
    summary.start()
    try:
        assert receiver.wait_for(1, timeout=10)
    finally:
        summary.close()
        sender.close()
    (sent,) = receiver.accepted
    assert sent["title"] == "[DTA INFO] paper-1: daily summary" and sent["type"] == "info"
    assert "Daily summary 2026-03-01 21:05 to 2026-03-02 21:05 UTC." in sent["message"]
    assert "Incidents: 0 opened (none); 1 open now." in sent["message"]
    assert f"Open: {CONSOLE}" in sent["message"]


SECRET_TOKEN = "tok3nSECRETvalue"
SECRET_PASSWORD = "pa55-SECRET-word"
OPENAI_KEY = "sk-openai-SECRET-999999"
LEGACY = "http://127.0.0.1:9/hooks/LEGACY-SECRET-555"  # alert_webhook_url, unparseable


def test_no_secret_in_a_message_or_a_log_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The destination URL carries a token in its path and a password; an incident's
    message quotes both and an API key (as an error text might); apprise logs a line with
    the token, and the legacy ``alert_webhook_url`` whole (apprise cannot parse a plain
    http URL and says so). None of them reaches the receiver, our log or apprise's."""
    monkeypatch.setenv("DTA_OPENAI_API_KEY", OPENAI_KEY)
    failing = AppriseReceiver(failures=1)
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    destination = (f"json://desk:{SECRET_PASSWORD}@127.0.0.1:{failing.port}"
                   f"/hooks/{SECRET_TOKEN}")
    settings = settings_for(url, alert_webhook_url=LEGACY,
                            notifications={"urls": destination, "backoff_seconds": 0.1})
    configure_logging("debug", settings.secret_values())
    # A logger made after this configuration (structlog caches a logger's first one, which
    # an earlier test in the run may have set to another level).
    monkeypatch.setattr(sender_module, "log", structlog.get_logger("dta.notify"))
    journal = Journal.open(url)
    notify = start_notifications(settings, journal)
    assert notify is not None
    try:
        journal.incidents.open_incident(
            "critical", "provider_auth", f"401 from {destination} with key {OPENAI_KEY}")
        logging.getLogger("apprise").warning("POST to /hooks/%s failed", SECRET_TOKEN)
    finally:
        journal.close()
        notify.close(timeout=10)
        failing.close()
    structlog.reset_defaults()
    logged = capsys.readouterr()
    sent = json.dumps(failing.posts)
    assert len(failing.accepted) == 1 and "provider_auth" in sent
    assert "apprise_log" in logged.err and "notification_delivered" in logged.err
    assert "Unparseable URL" in logged.err  # what apprise said about the legacy URL
    for secret in (SECRET_TOKEN, SECRET_PASSWORD, OPENAI_KEY, destination, LEGACY,
                   "LEGACY-SECRET-555"):
        assert secret not in sent and secret not in logged.out + logged.err, secret
    assert "tok3n" not in settings.public_dict()["notifications"]["urls"][0]
