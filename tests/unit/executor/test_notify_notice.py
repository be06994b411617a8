"""What each notice says: the approval's link and time left on its own clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from executor.notify import notice

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _approval(clock: str) -> notice.Notice:
    return notice.approval_queued(
        account="paper-1", console_url="http://127.0.0.1:8787", approval_id=42,
        symbol="EURUSD", direction="long", why="consensus: conflict", created_at=T,
        expires_at=T + timedelta(minutes=15), clock=clock, volume=0.1)


def test_a_wall_clock_request_shows_its_time_left_when_sent() -> None:
    queued = _approval("wall")
    assert queued.text(T + timedelta(minutes=5)).endswith(
        "Time left: 10 min (expires 2026-03-02 09:15 UTC).\n"
        "Open: http://127.0.0.1:8787/approvals/42")
    assert "none (expired)" in queued.text(T + timedelta(minutes=16))
    assert queued.title == "[DTA WARNING] paper-1: approval #42 queued (EURUSD)"
    assert "LONG 0.1 lots EURUSD" in queued.text(T)


def test_a_replay_request_shows_its_time_on_the_replay_clock() -> None:
    text = _approval("replay").text(datetime.now(UTC))  # today is years after the bars
    assert "Time left: 15 min on the replay clock (expires at bar time 2026-03-02 09:15 UTC)"\
        in text


def test_durations_read_like_a_person_would_say_them() -> None:
    assert notice.human_duration(timedelta(days=3, hours=2, seconds=5)) == "3 d 2 h"
    assert notice.human_duration(timedelta(seconds=75)) == "1 min 15 s"
