"""An approved request is sent as exactly the order it showed, re-checked as that order, and
never marked executed without its order (issue 15, defects 1 and 6).

A conflict is the ensemble voting against the strategy. The desk approves the *strategy's*
trade over the ensemble's objection: the request shows the strategy's side with its stop
and target on the right sides of the entry, and the order that goes out is that one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.daemon_helpers import AlwaysLongOnDown, conflict_overrides, replay, settings_for
from support.samples import write_sample_head

from domain import Direction, OrderSide
from domain.errors import JournalError, MalformedApproval
from executor.approval_request import ApprovalRequest
from executor.approvals import decide
from executor.journal.store import Journal
from executor.wiring import build_daemon

TTL = {"approval_ttl_seconds": 30 * 86400}


@pytest.fixture
def long_into_weakness() -> Iterator[None]:
    from strategies.registry import STRATEGIES

    STRATEGIES[AlwaysLongOnDown.name] = AlwaysLongOnDown
    yield
    STRATEGIES.pop(AlwaysLongOnDown.name, None)


def _overrides() -> dict[str, Any]:
    return conflict_overrides(TTL["approval_ttl_seconds"])


def _first_conflict(url: str, data: Path) -> Any:
    """Replay until the first request is queued, and stop there: the approval then goes
    out on the next bar, with the market where the person saw it. Return it (pending)."""
    for stop_after in range(1, 600):  # counted from the file's first bar
        replay(url, data, stop_after=stop_after, **_overrides())
        j = Journal.open(url)
        try:
            pending = j.approvals.all("pending")
        finally:
            j.close()
        if pending:
            return pending[0]
    raise AssertionError("no conflict was queued")


def _approve(url: str, approval_id: int, now: datetime) -> None:
    settings = settings_for(url, **_overrides())
    j = Journal.open(url)
    try:
        decide(j, approval_id, approve=True, operator="analyst", note="structure is clean",
               now=now, feedback=settings.guardrails.weight_feedback)
    finally:
        j.close()


def test_approved_conflict_is_sent_as_shown(sqlite_url: str, tmp_path: Path,
                                           long_into_weakness: None) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 800)
    request = _first_conflict(sqlite_url, data)
    shown = ApprovalRequest.from_payload(request.intent)
    # What the person sees: the strategy's long, stop below and target above the entry.
    assert request.direction == "long" and shown.side is OrderSide.BUY
    assert shown.stop_loss < shown.entry < shown.take_profit

    _approve(sqlite_url, request.id, request.created_at + timedelta(minutes=1))
    replay(sqlite_url, data, **_overrides())

    j = Journal.open(sqlite_url)
    try:
        done = j.approvals.get_approval(request.id)
        assert done is not None and done.status == "executed", done
        order = j.orders.get_order(done.client_order_id or "")
        assert order is not None
        sent = order.intent
        assert (sent.side, sent.volume, sent.stop_loss, sent.take_profit) == (
            shown.side, shown.volume, shown.stop_loss, shown.take_profit)
        assert sent.client_order_id == shown.client_order_id
        assert sent.decision_id == request.decision_id
    finally:
        j.close()


def test_request_reads_back_as_the_same_order() -> None:
    t = datetime(2024, 1, 2, 3, 45, tzinfo=UTC)
    request = ApprovalRequest(
        client_order_id="dta0123", side=OrderSide.SELL, volume=0.1, stop_loss=1.11,
        take_profit=1.08, entry=1.10, bar_time=t, strategy="s", timeframe="M15",
        params_hash="abc", reason="r", confidence=0.4, agreement=1, voters=2)
    again = ApprovalRequest.from_payload(request.payload())
    assert again == request
    intent = again.intent("acct", "EURUSD", 7)
    assert (intent.side, intent.volume, intent.stop_loss, intent.take_profit) == (
        OrderSide.SELL, 0.1, 1.11, 1.08)
    decision = again.decision("EURUSD")
    assert decision.direction is Direction.SHORT
    assert decision.proposal.direction is Direction.SHORT
    assert (decision.proposal.stop, decision.proposal.target) == (1.11, 1.08)


@pytest.mark.parametrize("broken", [
    None, {}, {"side": "buy"},
    {"client_order_id": "x", "side": "buy", "volume": 0.0, "stop_loss": 1.0,
     "take_profit": 1.2, "entry": 1.1, "bar_time": "2024-01-01T00:00:00+00:00",
     "strategy": "s", "timeframe": "M15", "params_hash": "h", "confidence": 0.5,
     "agreement": 1, "voters": 1},
    {"client_order_id": "x", "side": "buy", "volume": 0.1, "stop_loss": 1.2,
     "take_profit": 1.0, "entry": 1.1, "bar_time": "2024-01-01T00:00:00+00:00",
     "strategy": "s", "timeframe": "M15", "params_hash": "h", "confidence": 0.5,
     "agreement": 1, "voters": 1},
])
def test_unreadable_request_is_refused_with_one_line(broken: Any) -> None:
    with pytest.raises(MalformedApproval) as err:
        ApprovalRequest.from_payload(broken)
    assert "\n" not in str(err.value)


def test_approval_is_not_marked_executed_when_its_order_cannot_be_written(
        sqlite_url: str, tmp_path: Path, long_into_weakness: None) -> None:
    """The order write fails after the ``executed`` mark: the mark must not survive."""
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 800)
    request = _first_conflict(sqlite_url, data)
    _approve(sqlite_url, request.id, request.created_at + timedelta(minutes=1))

    settings = settings_for(sqlite_url, **_overrides())
    journal = Journal.open(sqlite_url)
    daemon = build_daemon(settings, journal, data=data)
    ex = daemon.executor
    ex.start()

    def broken_insert(*_a: Any, **_k: Any) -> None:
        raise JournalError("journal write failed: disk I/O error")

    journal.orders.insert_sending = broken_insert  # type: ignore[method-assign]
    with pytest.raises(JournalError):
        now = daemon.feed.next_close_time()
        assert now is not None
        ex.run_cycle(now)
    journal.close()

    j = Journal.open(sqlite_url)
    try:
        a = j.approvals.get_approval(request.id)
        assert a is not None and a.status == "approved", a
        assert j.orders.get_order(ApprovalRequest.from_payload(a.intent).client_order_id) is None
    finally:
        j.close()


def test_executed_mark_without_order_is_recovered_at_start(
        sqlite_url: str, tmp_path: Path, long_into_weakness: None) -> None:
    """A journal left by the old two-step write (mark committed, order never written): the
    next start approves the request again and sends it, with an incident."""
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 800)
    request = _first_conflict(sqlite_url, data)
    _approve(sqlite_url, request.id, request.created_at + timedelta(minutes=1))
    j = Journal.open(sqlite_url)
    coid = ApprovalRequest.from_payload(request.intent).client_order_id
    assert j.approvals.set_approval_status(request.id, "executed", expected="approved",
                                           client_order_id=coid)
    j.close()

    replay(sqlite_url, data, **_overrides())
    j = Journal.open(sqlite_url)
    try:
        a = j.approvals.get_approval(request.id)
        assert a is not None and a.status == "executed"
        assert j.orders.get_order(coid) is not None
        assert any(i.kind == "approval_without_order" for i in j.incidents.all())
    finally:
        j.close()


def _gap_through(data: Path, after: datetime, level: float, bars: int = 8) -> Path:
    """The sample up to ``after``, then a market that gapped to ``level`` and stays there
    (weekend news): what an approval decided later meets when it goes out."""
    head = data.read_text().splitlines()
    keep = [head[0]] + [ln for ln in head[1:]
                        if datetime.strptime(ln.split(",")[0], "%Y.%m.%d %H:%M:%S")
                        .replace(tzinfo=UTC) <= after]
    t = after
    for _ in range(bars):
        t += timedelta(minutes=15)
        px = f"{level:.5f}"
        keep.append(f"{t:%Y.%m.%d %H:%M:%S},{px},{level + 0.0002:.5f},{level - 0.0002:.5f},"
                     f"{px},50,0,20")
    (data.parent / "gapped").mkdir(exist_ok=True)
    out = data.parent / "gapped" / data.name
    out.write_text("\n".join(keep) + "\n")
    return out


def test_approved_entry_is_not_sent_once_the_market_is_past_its_stop(
        sqlite_url: str, tmp_path: Path, long_into_weakness: None) -> None:
    """The market gapped below a queued long's stop; the person approved it afterwards.
    MT5 would refuse the stops (TRADE_RETCODE_INVALID_STOPS: a buy's SL must be below the
    Bid); paper used to fill it and stop it out on the next price. It is refused at
    execution with the reason, and no order is written."""
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 800)
    request = _first_conflict(sqlite_url, data)
    shown = ApprovalRequest.from_payload(request.intent)
    j = Journal.open(sqlite_url)
    try:
        seen = j.queries.bar_counts()["processed"]["EURUSD/M15"]
    finally:
        j.close()
    gapped = _gap_through(data, datetime.fromisoformat(seen["last"]),
                          shown.stop_loss - 0.0040)
    replay(sqlite_url, gapped, stop_after=seen["count"] + 6, **_overrides())  # the gap
    _approve(sqlite_url, request.id, request.created_at + timedelta(minutes=1))
    replay(sqlite_url, gapped, **_overrides())  # the next bars: the approval goes out

    j = Journal.open(sqlite_url)
    try:
        done = j.approvals.get_approval(request.id)
        assert done is not None and done.status == "rejected", done
        assert "exits_vs_market" in (done.note or "") and "stop" in (done.note or "")
        assert done.client_order_id is None
        assert j.orders.get_order(shown.client_order_id) is None
    finally:
        j.close()
