"""The paper daemon on real bars: resume after restart, trading state, bad bars."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from support.daemon_helpers import replay

from executor.journal.models import BarRow, OrderRow, ProposalRow, RejectedBarRow, VerdictRow
from executor.journal.store import Journal


def _journal_facts(url: str) -> dict[str, object]:
    j = Journal.open(url)
    try:
        s = j.uow.session
        bars = s.scalar(select(func.count()).select_from(BarRow))
        distinct = s.scalar(select(func.count(func.distinct(BarRow.time))))
        proposals = [(p.bar_time, p.direction, p.entry) for p in
                     s.scalars(select(ProposalRow).order_by(ProposalRow.bar_time))]
        orders = sorted(o.client_order_id for o in s.scalars(select(OrderRow)))
        rejected = {r: n for r, n in s.execute(
            select(RejectedBarRow.reason, func.count()).group_by(RejectedBarRow.reason))}
        return {"bars": bars, "distinct": distinct, "proposals": proposals, "orders": orders,
                "rejected": rejected, "fills": len(j.orders.fills()),
                "positions": j.orders.net_positions()}
    finally:
        j.close()


def test_full_replay_produces_orders_and_fills(journal_url: str, sample_head: Path) -> None:
    summary = replay(journal_url, sample_head)
    assert summary["bars_processed"] == 3000
    assert summary["proposals"] > 10
    assert sum(summary["orders"].values()) > 5
    assert summary["fills"] > 5
    facts = _journal_facts(journal_url)
    assert facts["bars"] == 3000 == facts["distinct"]
    assert len(facts["orders"]) == sum(summary["orders"].values())


def test_restart_mid_replay_resumes_at_next_bar(journal_url: str, sample_head: Path,
                                                sqlite_url: str, tmp_path: Path) -> None:
    reference_url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    replay(reference_url, sample_head)
    reference = _journal_facts(reference_url)

    first = replay(journal_url, sample_head, stop_after=1234)
    assert first["bars_processed"] == 1234
    second = replay(journal_url, sample_head)
    # The second run starts at bar 1235: nothing processed twice, nothing skipped.
    assert second["bars_processed"] == 3000 - 1234
    facts = _journal_facts(journal_url)
    assert facts["bars"] == facts["distinct"] == 3000
    # And the interrupted pair decided exactly what one uninterrupted run decided.
    assert facts["proposals"] == reference["proposals"]
    assert facts["orders"] == reference["orders"]
    assert facts["fills"] == reference["fills"]
    assert facts["positions"] == reference["positions"]

    third = replay(journal_url, sample_head)
    assert third["bars_processed"] == 0


def test_halted_survives_restart_and_blocks_entries(journal_url: str,
                                                         sample_head: Path) -> None:
    j = Journal.open(journal_url)
    j.trading_state.record_trading_state("HALTED", "alice", "broker maintenance")
    j.close()

    blocked = replay(journal_url, sample_head, stop_after=1500)
    assert blocked["proposals"] > 0
    assert blocked["vetoes"].get("trading_state") == blocked["proposals"]
    assert sum(blocked["orders"].values()) == 0

    j = Journal.open(journal_url)  # a restart: the state comes back from the journal
    state = j.trading_state.trading_state()
    assert state.state == "HALTED" and state.operator == "alice"
    j.trading_state.record_trading_state("ACTIVE", "bob", "maintenance over")
    j.close()

    resumed = replay(journal_url, sample_head)
    assert resumed["vetoes"].get("trading_state", 0) == 0
    assert sum(resumed["orders"].values()) > 0


BAD_ROWS = {
    "non_finite": "2022.10.10 01:00:00,0.9733,nan,0.9730,0.9731,10,0,20",
    "non_positive_price": "2022.10.10 01:15:00,0.9733,0.9740,-0.9730,0.9731,10,0,20",
    "high_below_low": "2022.10.10 01:30:00,0.9733,0.9720,0.9740,0.9731,10,0,20",
    "open_outside_range": "2022.10.10 01:45:00,0.9800,0.9740,0.9730,0.9731,10,0,20",
    "close_outside_range": "2022.10.10 02:00:00,0.9733,0.9740,0.9730,0.9600,10,0,20",
    "negative_volume": "2022.10.10 02:15:00,0.9733,0.9740,0.9730,0.9731,-5,-5,20",
    "misaligned": "2022.10.10 02:20:00,0.9733,0.9740,0.9730,0.9731,10,0,20",
}


def test_each_bad_bar_is_rejected_with_its_reason_and_the_run_goes_on(
        journal_url: str, sample_head: Path, tmp_path: Path) -> None:
    lines = sample_head.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    good = rows[:4]  # 00:00 .. 00:45
    tail = [r for r in rows[4:400] if not r.startswith("2022.10.10 0")
            or r[11:13] >= "03"]  # good bars from 03:00 on; 01:00-02:45 are replaced
    dropped_for_gap = tail.pop(10)  # one missing bar: flagged as a gap, not rejected
    bad = list(BAD_ROWS.values())
    out_of_order = good[2]  # 00:30 again, after 02:20
    duplicate_later = tail[5]
    data = [header, *good, *bad, out_of_order, *tail[:6], duplicate_later, *tail[6:],
            "not-a-date,1,1,1,1,1,1,1", "2022.10.10 01:05:00,0.9733,abc,0.9730,0.9731,10,0,20"]
    path = tmp_path / "EURUSD_M15.csv"
    path.write_text("\n".join(data) + "\n")
    assert dropped_for_gap

    summary = replay(journal_url, path)
    expected = {**dict.fromkeys(BAD_ROWS, 1), "out_of_order": 1, "duplicate": 1}
    assert summary["bars_rejected"] == expected
    assert summary["bars_processed"] == len(good) + len(tail)
    assert summary["gaps_flagged"] >= 2  # 00:45 -> 03:00 and the dropped bar
    facts = _journal_facts(journal_url)
    assert facts["rejected"] == {**expected, "unparseable_row": 2}
    assert facts["bars"] == len(good) + len(tail)


def test_a_risk_reviewer_that_resizes_sends_the_smaller_order(sqlite_url: str,
                                                              sample_head: Path) -> None:
    """The risk stage's size factor reaches the order: a reviewer that says "resize to
    0.6" gets 0.6 of the configured volume, the guardrails judge that volume, and the
    decision row keeps the factor for `dta trace`."""
    from executor.journal.models import DecisionRow
    from runbooks.trace_cli import _format_trace

    providers = [
        {"name": "structure", "kind": "structure", "weight": 1.0},
        {"name": "momentum", "kind": "momentum", "weight": 0.5, "params": {"period": 20}},
        # every consensus below full confidence is resized in proportion
        {"name": "risk", "kind": "risk_rules",
         "params": {"min_confidence": 0.0, "full_size_confidence": 1.0}}]
    summary = replay(sqlite_url, sample_head, ensemble={"providers": providers})
    assert sum(summary["orders"].values()) > 5
    j = Journal.open(sqlite_url)
    try:
        s = j.uow.session
        sized = [(o, s.get(DecisionRow, o.decision_id)) for o in s.scalars(select(OrderRow))]
        assert sized and all(d is not None for _, d in sized)
        resized = [(o, d) for o, d in sized if d.size_factor < 1.0]
        assert resized, "the risk reviewer resized nothing: the test proves nothing"
        for o, d in sized:
            assert 0 < d.size_factor <= 1.0
            assert o.volume == round(0.1 * d.size_factor, 8) if d.size_factor < 1 else 0.1
        order, decision = resized[0]
        trace = j.queries.trace(order.client_order_id)
        assert trace is not None
        assert f"sized x{decision.size_factor:g} by risk review" in _format_trace(trace)
    finally:
        j.close()


def test_vetoes_while_halted_are_no_evidence_against_the_parameters(
        tmp_path: Path, sample_head: Path) -> None:
    """The veto-spike trigger rolls the parameter set back when its decisions keep being
    vetoed. Vetoes that say the moment is wrong (here: trading HALTED) are not held
    against the parameters; vetoes of the decisions themselves still are."""
    regression = {"regression": {"veto_rate": 0.5, "veto_window": 5}}
    halted_url = f"sqlite:///{tmp_path / 'halted.sqlite'}"
    j = Journal.open(halted_url)
    j.trading_state.record_trading_state("HALTED", "alice", "broker maintenance")
    j.close()
    halted = replay(halted_url, sample_head, stop_after=1500, guardrails=regression)
    assert halted["proposals"] >= 5
    assert halted["vetoes"]["trading_state"] == halted["proposals"]
    j = Journal.open(halted_url)
    kinds = [i.kind for i in j.incidents.all()]
    j.close()
    assert halted["rollbacks"] == 0 and not any("veto_spike" in k for k in kinds)

    # Every decision's stop too close: a spike of vetoes on merit, held against them.
    merit_url = f"sqlite:///{tmp_path / 'merit.sqlite'}"
    merit = replay(merit_url, sample_head, stop_after=1500,
                   guardrails={**regression, "min_stop_atr": 1000.0})
    assert merit["vetoes"]["min_stop_distance"] >= 5
    j = Journal.open(merit_url)
    kinds = [i.kind for i in j.incidents.all()]
    j.close()
    assert any("veto_spike" in k for k in kinds)


def test_a_resize_below_the_venue_minimum_is_a_veto_not_an_order(
        sqlite_url: str, sample_head: Path) -> None:
    """Issue 16, defect 4: a risk reviewer's resize to a sliver rounded to an order the
    venue cannot take (0.0 lots, or under its minimum), passed every guardrail and reached
    the broker, whose rejections fed the error-rate halt. Volumes are rounded down to the
    venue's step before the checks; below its minimum the decision is vetoed, with why."""
    providers = [
        {"name": "structure", "kind": "structure", "weight": 1.0},
        {"name": "momentum", "kind": "momentum", "weight": 0.5, "params": {"period": 20}},
        {"name": "risk", "kind": "risk_rules",
         "params": {"min_confidence": 0.0, "full_size_confidence": 1.0}}]
    summary = replay(sqlite_url, sample_head, ensemble={"providers": providers},
                     paper={"order_volume_lots": 0.03, "volume_step": 0.01,
                            "volume_min": 0.02})
    assert summary["vetoes"].get("order_volume", 0) > 0, summary["vetoes"]
    j = Journal.open(sqlite_url)
    try:
        volumes = [o.volume for o in j.uow.session.scalars(select(OrderRow))]
        reasons = [c["reason"] for v in j.uow.session.scalars(select(VerdictRow))
                   for c in (v.checks or []) if c.get("name") == "order_volume"
                   and not c.get("passed")]
    finally:
        j.close()
    assert volumes, "no order at all: the test proves nothing"
    assert all(v >= 0.02 - 1e-12 and abs(v / 0.01 - round(v / 0.01)) < 1e-9 for v in volumes)
    assert reasons and "below the venue's minimum 0.02" in reasons[0]
