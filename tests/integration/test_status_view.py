"""The status view (executor/status_view.py) over a journal written by the journal's own
repositories, on SQLite and (with DTA_TEST_DATABASE_URL) PostgreSQL: what `dta status`
and the console's Overview show, computed by the rules the daemon itself reads by."""

from __future__ import annotations

import pytest
from support.daemon_helpers import settings_for
from support.status_scene import ACCOUNT, MIDNIGHT, NOW, write_status_scene

from domain.errors import JournalError
from executor.journal.direct import open_direct
from executor.journal.store import Journal
from executor.status_view import StatusView, build_status_view, human_duration


def _view(url: str, **settings: object) -> StatusView:
    with open_direct(url) as reader:
        return build_status_view(reader, settings_for(url, **settings), NOW)


def test_the_view_shows_state_equity_positions_orders_streams_and_queues(
        journal_url: str) -> None:
    write_status_scene(journal_url)
    view = _view(journal_url)
    assert (view.account, view.mode, view.cleared_mode) == (ACCOUNT, "paper", "paper")
    ts = view.trading_state
    assert (ts.state, ts.operator, ts.reason) == ("HALTED", "ann", "news at 14:30")
    e = view.equity
    assert e.realised == pytest.approx(70.0) and e.fees == pytest.approx(1.0)
    assert e.unrealised == pytest.approx((1.1030 - 1.1000) * 0.1 * 100_000)
    assert e.equity == pytest.approx(10_000 + 70 - 1 + 30)
    assert e.day == "2024-03-05" and e.day_start == pytest.approx(10_050.0)
    assert e.day_pnl == pytest.approx(10_099 - 10_050)
    assert [round(p.equity, 2) for p in e.curve] == [10_050.0, 10_069.0, 10_099.0]
    [position] = view.positions
    assert (position.symbol, position.volume, position.mark) == ("EURUSD", 0.1, 1.1030)
    assert position.avg_price == pytest.approx(1.1000)
    assert [(o.side, o.state) for o in view.working_orders] == [("sell", "accepted")]
    streams = {s.name: s for s in view.streams}
    assert streams["EURUSD/M15"].age_s == 900 and not streams["EURUSD/M15"].stale
    assert streams["GBPUSD/M15"].age_s == 6300 and streams["GBPUSD/M15"].stale
    assert view.rejected == {"unparseable_row": 2} and view.rejected_total == 2
    assert [(i.severity, i.status) for i in view.incidents] == [
        ("high", "acknowledged"), ("critical", "open")]
    wall, replay = view.approvals
    assert (wall.clock, wall.time_left_s) == ("wall", 240.0)
    # A replay's request lives on the replay's clock: the close of its newest bar.
    assert (replay.clock, replay.time_left_s) == ("replay", 1800.0)
    rotation = {p.provider: (p.in_rotation, p.disabled_by) for p in view.providers}
    assert rotation == {"structure": (True, None), "momentum": (False, "bob")}


def test_the_view_agrees_with_the_journals_own_reads(journal_url: str) -> None:
    write_status_scene(journal_url)
    view = _view(journal_url)
    j = Journal.open(journal_url)
    try:
        assert {p.symbol: p.volume for p in view.positions} == j.orders.net_positions()
        state = j.trading_state.trading_state()
        assert (view.trading_state.state, view.trading_state.since) == (state.state,
                                                                        state.since)
        assert {s.name: s.bars for s in view.streams} == {
            k: v["count"] for k, v in j.queries.bar_counts()["processed"].items()}
        assert view.orders_by_state == j.queries.order_counts()
    finally:
        j.close()


def test_live_equity_starts_from_the_days_journaled_baseline(journal_url: str) -> None:
    write_status_scene(journal_url)
    unknown = _view(journal_url, mode="live")
    assert unknown.equity.equity is None and unknown.equity.day_pnl is None
    j = Journal.open(journal_url)
    try:
        j.risk_days.record_day_start(ACCOUNT, MIDNIGHT, 20_000.0)
        j.commit(durable=True)
    finally:
        j.close()
    live = _view(journal_url, mode="live").equity
    # Today's fills only: +20.00 realised, 1.00 fee, 30.00 open.
    assert live.equity == pytest.approx(20_000 + 20 - 1 + 30)
    assert live.day_pnl == pytest.approx(49.0)


def test_funding_counts_in_the_equity_the_day_and_the_curve(journal_url: str) -> None:
    """A perpetual swap's funding (the journal's costs, negative: paid) moves the equity
    as a fee does: live, today's payments only (the one before midnight is in the day's
    baseline already); the curve steps at each."""
    from datetime import timedelta

    from executor.journal.costs import FUNDING, Cost

    write_status_scene(journal_url)
    j = Journal.open(journal_url)
    try:
        j.costs.record_costs(ACCOUNT, [
            Cost(f"binanceusdm:funding:{n}", FUNDING, "EURUSD", MIDNIGHT + timedelta(hours=h),
                 amount, "USD") for n, h, amount in ((1, -8, -5.0), (2, 8, -2.5),
                                                     (3, 10, 0.5))])
        j.commit(durable=True)
        paper = _view(journal_url).equity
        j.risk_days.record_day_start(ACCOUNT, MIDNIGHT, 20_000.0)
        j.commit(durable=True)
    finally:
        j.close()
    assert paper.funding == pytest.approx(-7.0)
    assert paper.equity == pytest.approx(10_000 + 70 - 1 - 7 + 30)
    assert paper.day_start == pytest.approx(10_050.0 - 5.0)
    assert [round(p.equity, 2) for p in paper.curve] == [
        10_050.0, 10_045.0, 10_042.5, 10_061.5, 10_062.0, 10_092.0]
    live = _view(journal_url, mode="live").equity
    assert live.funding == pytest.approx(-2.0)
    assert live.equity == pytest.approx(20_000 + 20 - 1 - 2 + 30)
    assert live.day_pnl == pytest.approx(47.0)


def test_an_empty_journal_is_active_flat_and_at_its_initial_balance(journal_url: str) -> None:
    Journal.open(journal_url).close()
    view = _view(journal_url)
    assert view.trading_state.state == "ACTIVE" and view.trading_state.since is None
    assert view.equity.equity == 10_000.0 and view.equity.curve == ()
    assert view.positions == () and view.streams == () and view.approvals == ()
    assert view.active_version is None


def test_a_missing_or_unmigrated_journal_is_refused(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "none.sqlite"
    with pytest.raises(JournalError, match="does not exist"):
        open_direct(f"sqlite:///{path}")
    assert not path.exists()  # a read never creates the file
    path.write_bytes(b"")
    with pytest.raises(JournalError, match="has no schema"):
        open_direct(f"sqlite:///{path}")


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"), (-3, "0 s"), (42.9, "42 s"), (180, "3 min"), (3599, "59 min"),
    (3600, "1 h"), (7500, "2 h 5 min"), (86400 * 3 + 3600 * 4, "3 d 4 h"),
    (86400 * 2, "2 d"), (100_432_073, "1,162 d")])
def test_durations_read_in_human_units(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text
