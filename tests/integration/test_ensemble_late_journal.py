"""Late answers reach the journal and the metrics, written on the cycle thread.

An LLM answer that arrives after its decision's deadline arrives on an ensemble pool
thread; the journal is one session owned by the cycle thread. The daemon (``build_daemon``)
queues such answers and journals them at its next cycle, as ``late`` provider_calls rows
joined to their decision, and counts them in the metrics. The answer never counts toward
the decision it was late for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import Behaviour, FakeOpenAIServer, Reply, stage_responder
from sqlalchemy import create_engine, select
from support.builders import a_proposal
from support.daemon_helpers import settings_for
from support.samples import write_sample_head

from domain import Direction
from ensemble.ensemble import decision_key, parse_decision_key
from ensemble.late import LateCalls, call_row
from ensemble.telemetry import CallOutcome, MultiSink, ProviderCall
from executor.journal.models import DecisionRow
from executor.journal.store import Journal
from executor.metrics import Metrics
from executor.wiring import build_daemon

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-late-test-0123456789"
CONTRARY = 0.99  # the late answer's confidence: were it ever counted, it would show
LATE_BY_S = 0.6  # the fake answers this long after the request
DEADLINE_MS = 250


def _call(outcome: CallOutcome, key: str = "k") -> ProviderCall:
    return ProviderCall(decision_key=key, stage="research", provider="gpt",
                        provider_class="reasoning", kind="openai", model="m", outcome=outcome,
                        raw_text="{}", tokens_in=10, tokens_out=5, cost=0.01)


def test_late_calls_queue_only_late_answers_and_stays_bounded() -> None:
    late = LateCalls(maxlen=3)
    for outcome in CallOutcome:
        late.record_call(_call(outcome))
    assert [c.outcome for c in late.drain()] == [CallOutcome.LATE]
    for i in range(5):
        late.record_call(_call(CallOutcome.LATE, f"k{i}"))
    assert len(late) == 3 and late.dropped == 2
    written: list[dict[str, Any]] = []
    counted: list[ProviderCall] = []

    class Journal_:
        def record_provider_call(self, values: dict[str, Any]) -> None:
            written.append(values)

    class Metrics_:
        def provider_call(self, call: Any) -> None:
            counted.append(call)

    asked: list[str] = []
    assert late.write(Journal_(), Metrics_(), lambda k: asked.append(k) or 7) == 3
    assert [w["decision_id"] for w in written] == [7, 7, 7] and asked == ["k2", "k3", "k4"]
    assert written[0] == call_row(counted[0], 7) and written[0]["outcome"] == "late"
    assert late.write(Journal_(), None, lambda k: None) == 0  # nothing queued: no work


def test_decision_keys_parse_back_even_with_colons_in_the_symbol() -> None:
    for symbol in ("EURUSD", "BTC/USDT:USDT"):
        p = a_proposal(strategy="smc_ob_retest", symbol=symbol, timeframe="M15",
                       bar_time=datetime(2024, 1, 2, 3, 45, tzinfo=UTC), direction=Direction.LONG,
                       entry=1.0, stop=0.9, target=1.2, reason="r")
        assert parse_decision_key(decision_key(p)) == (
            "smc_ob_retest", symbol, "M15", datetime(2024, 1, 2, 3, 45, tzinfo=UTC))
    assert parse_decision_key("not-a-key") is None


# --------------------------------------------------------------------------- the daemon


@pytest.fixture
def late_gpt() -> Iterator[FakeOpenAIServer]:
    """A valid research answer against the proposal, at 0.99, well after the deadline."""
    contrary = stage_responder(agree=False, confidence=CONTRARY)

    def respond(body: dict[str, Any]) -> Behaviour:
        answer = contrary(body)
        return replace(answer, delay=LATE_BY_S) if isinstance(answer, Reply) else answer

    with FakeOpenAIServer(respond, api_key=KEY) as server:
        yield server  # type: ignore[misc]


def test_a_late_answer_is_journaled_on_the_cycle_thread_and_never_counts(
        journal_url: str, tmp_path: Path, late_gpt: FakeOpenAIServer) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 200)  # decisions at bars 76, 185
    settings = settings_for(journal_url, openai_api_key=KEY, ensemble={
        "deadline_ms": DEADLINE_MS, "late_grace_ms": 5000,  # the SDK waits for the answer
        "prompts_dir": str(ROOT / "config" / "prompts"),
        "providers": [
            {"name": "structure", "kind": "structure", "weight": 1.0},
            {"name": "gpt", "kind": "openai", "model": "gpt-late", "weight": 1.0,
             "base_url": late_gpt.base_url, "timeout_s": 10}]})
    metrics = Metrics()
    journal = Journal.open(journal_url)
    writes: list[tuple[str, str]] = []  # (outcome, writing thread's name)
    record = journal.provider_calls.record_provider_call

    def spy(values: dict[str, Any]) -> None:
        writes.append((values["outcome"], threading.current_thread().name))
        record(values)

    journal.provider_calls.record_provider_call = spy  # type: ignore[method-assign]
    try:
        daemon = build_daemon(settings, journal, data=data, metrics=metrics)
        executor = daemon.executor
        assert daemon.feed is not None
        executor.start()
        late = executor.c.ensemble.telemetry
        assert isinstance(late, LateCalls | MultiSink)
        queued = late if isinstance(late, LateCalls) else next(
            s for s in late.sinks if isinstance(s, LateCalls))
        waited = False
        while (t := daemon.feed.next_close_time()) is not None:
            before = executor.stats.decisions
            executor.run_cycle(t)  # on this (the test's) thread: the cycle thread
            if executor.stats.decisions > before and not waited:
                # The first decision timed out waiting for gpt; its answer comes later, on
                # a pool thread, and waits in the queue for the next cycle.
                deadline = time.monotonic() + 10
                while not len(queued) and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert len(queued) == 1
                assert not any(o == "late" for o, _ in writes)  # not written off-thread
                waited = True
        summary = executor.stop("completed")
    finally:
        journal.close()
    assert summary["decisions"] >= 2

    reader = Journal.open(journal_url, migrate_schema=False)
    try:
        calls = reader.provider_calls.all(limit=10_000)
    finally:
        reader.close()
    late_rows = [c for c in calls if c.outcome == "late"]
    assert late_rows, [(c.provider, c.outcome) for c in calls]
    first = late_rows[0]
    assert first.provider == "gpt" and first.abstained and str(CONTRARY) in (first.raw_text or "")
    assert first.tokens_in > 0 and first.request_key and first.input_json
    assert first.error and "answered after the deadline" in first.error
    # Joined to the decision it was late for: the one whose gpt call timed out.
    timed_out = [c for c in calls if c.provider == "gpt" and c.outcome == "timeout"
                 and c.decision_id == first.decision_id]
    assert first.decision_id is not None and timed_out
    assert first.id is not None and timed_out[0].id is not None and first.id > timed_out[0].id
    # Written by the cycle thread, never by an ensemble pool thread.
    main = threading.main_thread().name
    assert [name for o, name in writes if o == "late"] == [main] * len(late_rows)
    # Counted in the metrics, like every journaled call.
    assert metrics.registry.get_sample_value(
        "dta_provider_calls_total", {"provider": "gpt", "outcome": "late"}) == len(late_rows)

    # Never counted toward a decision: gpt abstained in every decision, no 0.99 vote.
    engine = create_engine(journal_url)
    try:
        with engine.connect() as conn:
            decisions = conn.execute(select(DecisionRow.__table__)).mappings().all()  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    assert decisions
    for d in decisions:
        gpt = [s for s in d["signals"] if s["provider"] == "gpt"]
        assert gpt and all(s["abstain_reason"] and s["confidence"] == 0.0 for s in gpt), d
        assert all(s["confidence"] != CONTRARY for s in d["signals"]), d
        assert (d["contributions"] or {}).get("gpt", 0.0) == 0.0, d
    late_decision = next(d for d in decisions if d["id"] == first.decision_id)
    assert late_decision["voters"] == 1  # structure alone
