"""The hostile-provider suite (issue 16, acceptance): one table of the ways a real LLM API
misbehaves, each tried through the real daemon on both SDKs.

Every case runs a short paper replay of the bundled sample through ``build_daemon`` (the
wiring of `dta run`, metrics on) with two LLM providers of the SDK under test, each
against its own loopback server (``tests/fakes/llm_servers.py``, whose docstring cites the
documented shapes): ``healthy`` always gives a valid research answer agreeing with the
proposal, ``hostile`` misbehaves as the case says. The strategy proposes a long a few
times; the consensus needs both providers to agree, so an order can only come from a
decision in which the hostile provider's answer counted as a vote.

For each case and SDK:

- every decision is made within the deadline plus the late grace (timed around the
  ensemble the daemon calls), and the healthy provider answers in every one of them (a
  hostile provider never starves it);
- the run completes: no exception, the run row closed ``completed``, no cycle error;
- the hostile provider's ``provider_calls`` rows carry the expected outcome and reason,
  and once failures open its breaker, ``breaker_open``; the breaker's transitions are in
  ``provider_events``;
- an order comes only from a decision that counted the hostile answer as a valid vote:
  for every case but the valid ones there is no order and no decision counts it.

Documented shapes beyond the fake's own docstring: Anthropic may answer an empty
``content`` list with ``stop_reason`` ``end_turn`` ("Empty responses with end_turn",
https://platform.claude.com/docs/en/build-with-claude/handling-stop-reasons); OpenAI
reports an overloaded engine as 503 (https://platform.openai.com/docs/guides/error-codes),
Anthropic as 529 ``overloaded_error`` (https://docs.anthropic.com/en/api/errors).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import (
    Behaviour,
    Fail,
    FakeAnthropicServer,
    FakeOpenAIServer,
    Hang,
    RawBody,
    Reply,
    Reset,
    Shaped,
    Trickle,
    oversized,
    stage_responder,
)
from sqlalchemy import create_engine, select
from support.builders import a_proposal
from support.daemon_helpers import registered, settings_for
from support.samples import write_sample_head

from domain import Direction, MarketSnapshot, Proposal
from executor.engine.clock import SimulatedClock
from executor.journal.models import DecisionRow, OrderRow, ProviderEventRow
from executor.journal.store import Journal
from executor.metrics import Metrics
from executor.wiring import build_daemon
from strategies.logic import StrategyContext

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-hostile-suite-0123456789"
DEADLINE_MS = 500
GRACE_MS = 200
SLACK_S = 0.3  # scheduling slack on a loaded 2-core machine
DECISIONS = 4  # proposals per run
MIN_CALLS = 2  # the breaker opens after two failed calls and stays open for the run
HOSTILE_CONFIDENCE = 0.93  # the hostile answer's confidence: were it counted, it shows


class Probe:
    """Test strategy: a long on every ``STEP``-th bar once the ATR is known (the stop
    distance check needs it), ``DECISIONS`` times in all."""

    name = "test_hostile_probe"
    STEP = 5
    WARMUP = 20

    def __init__(self, **_params: object) -> None:
        self.bars = 0
        self.proposed = 0

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        self.bars += 1
        if self.bars < self.WARMUP or self.bars % self.STEP or self.proposed >= DECISIONS:
            return ()
        self.proposed += 1
        c = snapshot.bar.close
        return (a_proposal(strategy=self.name, symbol=snapshot.symbol, timeframe=snapshot.timeframe,
                           bar_time=snapshot.bar.time, direction=Direction.LONG, entry=c,
                           stop=c * 0.99, target=c * 1.02, reason="probe", tags=("bos_bullish",)),)


# --------------------------------------------------------------------------- the table

Change = Callable[[Reply], Behaviour]  # the hostile form of the valid answer for a request


def _same(change: Change) -> dict[str, Change]:
    return {"openai": change, "anthropic": change}


def _with_key(r: Reply) -> Reply:
    return replace(r, text=r.text.replace('"rationale": "', f'"rationale": "key {KEY}; '))


def _half_emoji(r: Reply) -> Reply:
    """A rationale cut in the middle of an emoji: a lone surrogate once parsed."""
    return replace(r, text=r.text.replace('"rationale": "', '"rationale": "\ud83d'))


_ANTHROPIC_EMPTY = json.dumps({
    "id": "msg_empty", "type": "message", "role": "assistant", "model": "claude-hostile",
    "content": [], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 2}}).encode()


@dataclass(frozen=True)
class Case:
    """One misbehaviour. ``outcome`` and ``reason`` (a substring, per SDK when they
    differ) are what the hostile provider's calls must journal; ``fails`` means they count
    against its breaker (errors and timeouts), which then opens; ``votes`` means the answer
    is a valid vote after all (and may lead to an order)."""

    name: str
    change: dict[str, Change]
    outcome: dict[str, str]
    reason: dict[str, str]
    votes: bool = False
    max_retries: int = 0

    def fails(self, sdk: str) -> bool:
        return self.outcome[sdk] in ("error", "timeout")


def _r(text: str, anthropic: str | None = None) -> dict[str, str]:
    return {"openai": text, "anthropic": text if anthropic is None else anthropic}


CASES = [
    # Valid votes: the control, and untrusted numbers or text the answer survives.
    Case("valid answer", _same(lambda r: r), _r("ok"), _r(""), votes=True),
    Case("negative token usage",
         _same(lambda r: replace(r, prompt_tokens=-900, completion_tokens=-50)), _r("ok"),
         _r(""), votes=True),
    Case("secret reflected in the answer", _same(_with_key), _r("ok"), _r(""), votes=True),
    # Answers the API itself says are no answer.
    Case("refusal", {"openai": lambda r: Shaped(r.text, refusal=r.text),
                     "anthropic": lambda r: Shaped(r.text, finish="refusal")},
         _r("invalid"), _r("invalid: refused")),
    Case("filtered or cut short",
         {"openai": lambda r: Shaped(r.text, finish="content_filter"),
          "anthropic": lambda r: Shaped(r.text, finish="model_context_window_exceeded")},
         _r("invalid"), _r("invalid: filtered: finish_reason content_filter",
                       "invalid: cut short: stop_reason model_context_window_exceeded")),
    Case("tool call beside the text", _same(lambda r: Shaped(r.text, tool_call=True)),
         _r("invalid"), _r("invalid: a tool call, not an answer",
                       "invalid: a tool_use block beside the text")),
    Case("unknown finish reason", _same(lambda r: Shaped(r.text, finish="policy_stop")),
         _r("invalid"), _r("invalid: unknown finish_reason 'policy_stop'",
                       "invalid: unknown stop_reason 'policy_stop'")),
    Case("truncated at the token limit", _same(lambda r: replace(r, truncated=True)),
         _r("invalid"), _r("invalid: truncated at the token limit")),
    Case("empty choices", {"openai": lambda r: Shaped(r.text, no_choices=True),
                           "anthropic": lambda r: RawBody(_ANTHROPIC_EMPTY)},
         _r("error", "invalid"), _r("EmptyResponse: response has no choices", "invalid: ")),
    Case("half a surrogate pair in the text", _same(_half_emoji), _r("invalid"),
         _r("invalid: schema: (root): Input should be a valid string")),
    Case("oversized answer", _same(lambda r: oversized()), _r("invalid"),
         _r("invalid: output too long")),
    # HTTP errors, with the SDK's own retries where they could hold the call.
    Case("429 with Retry-After", _same(lambda r: Fail(429, retry_after="30")),
         _r("error"), _r("RateLimitError: HTTP 429"), max_retries=2),
    Case("500", _same(lambda r: Fail(500)), _r("error"),
         _r("InternalServerError: HTTP 500")),
    Case("overloaded", {"openai": lambda r: Fail(503), "anthropic": lambda r: Fail(529)},
         _r("error"), _r("HTTP 503", "HTTP 529")),
    Case("401", _same(lambda r: Fail(401)), _r("error"),
         _r("AuthenticationError: HTTP 401")),
    # The connection itself.
    Case("hang", _same(lambda r: Hang(30)), _r("timeout"),
         _r(f"timeout: no answer within the {DEADLINE_MS} ms deadline")),
    Case("trickle", _same(lambda r: Trickle(r.text, chunk=4, pause=0.1)), _r("timeout"),
         _r(f"timeout: no answer within the {DEADLINE_MS} ms deadline")),
    Case("reset", _same(lambda r: Reset(r.text)), _r("error"),
         _r("APIConnectionError")),
]
SERVERS = {"openai": FakeOpenAIServer, "anthropic": FakeAnthropicServer}


def _hostile_responder(change: Change) -> Callable[[dict[str, Any]], Behaviour]:
    good = stage_responder(confidence=HOSTILE_CONFIDENCE)

    def respond(body: dict[str, Any]) -> Behaviour:
        answer = good(body)
        assert isinstance(answer, Reply)
        return change(answer)

    return respond


@pytest.fixture
def probe() -> Iterator[type[Probe]]:
    yield from registered(Probe)


@dataclass
class Run:
    summary: dict[str, Any]
    status: str
    seconds: list[float]  # each decision's wall time in the ensemble
    calls: list[Any]
    events: list[Any]
    decisions: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    hostile_requests: int
    lingering: list[str]  # ensemble threads still in a call after every budget ran out


def _run(url: str, data: Path, sdk: str, case: Case) -> Run:
    server_class = SERVERS[sdk]
    with server_class(_hostile_responder(case.change[sdk]), api_key=KEY) as hostile, \
            server_class(stage_responder(), api_key=KEY) as healthy:
        llm = {"kind": sdk, "timeout_s": 10}
        settings = settings_for(
            url, openai_api_key=KEY, anthropic_api_key=KEY,
            strategy={"name": Probe.name, "params": {}},
            ensemble={
                "deadline_ms": DEADLINE_MS, "late_grace_ms": GRACE_MS, "max_workers": 2,
                "prompts_dir": str(ROOT / "config" / "prompts"),
                "breaker": {"min_calls": MIN_CALLS, "failure_rate": 0.5,
                            "cooldown_s": 600, "slow_call_ms": DEADLINE_MS - 1},
                "providers": [
                    {"name": "healthy", "model": "m-healthy", "base_url": healthy.base_url,
                     **llm},
                    {"name": "hostile", "model": "m-hostile", "base_url": hostile.base_url,
                     "max_retries": case.max_retries, "price_in_per_1k": 1.0,
                     "price_out_per_1k": 2.0, **llm}]},
            guardrails={"max_position_lots": 1.0, "consensus": {
                "rule": "agreement", "min_agreement": 2, "min_confidence": 0.0,
                "approval_floor": None}})
        journal = Journal.open(url)
        seconds: list[float] = []
        before = set(_ensemble_threads())
        try:
            daemon = build_daemon(settings, journal, data=data, metrics=Metrics())
            executor = daemon.executor
            executor.start()  # builds the ensemble
            ensemble = executor.c.ensemble
            evaluate = ensemble.evaluate

            def timed(proposal: Proposal, snapshot: MarketSnapshot) -> Any:
                started = time.perf_counter()
                try:
                    return evaluate(proposal, snapshot)
                finally:
                    seconds.append(time.perf_counter() - started)

            ensemble.evaluate = timed  # type: ignore[method-assign]
            executor.run_replay(SimulatedClock(), daemon.feed.next_close_time)
            summary = executor.stop("completed")
        finally:
            journal.close()
        lingering = _calls_still_running(before)
        requests = len(hostile.requests)

    reader = Journal.open(url, migrate_schema=False)
    try:
        calls = reader.provider_calls.all(limit=10_000)
        status = reader.queries.runs(1)[0].status
        table = ProviderEventRow.__table__  # type: ignore[attr-defined]
        with reader.uow.engine.connect() as conn:
            events = list(conn.execute(select(table).order_by(table.c.id)))
    finally:
        reader.close()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            decisions = [dict(d) for d in conn.execute(select(
                DecisionRow.__table__).order_by(DecisionRow.id)).mappings()]  # type: ignore[attr-defined]
            orders = [dict(o) for o in conn.execute(select(
                OrderRow.__table__)).mappings()]  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    return Run(summary, status, seconds, calls, events, decisions, orders, requests,
               lingering)


def _ensemble_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dta-ensemble")]


def _calls_still_running(before: set[threading.Thread]) -> list[str]:
    """The run's ensemble threads still alive once every call's budget (deadline + late
    grace) has passed: a call the budget did not end (the pool's idle workers leave at
    ``stop``, an abandoned call's thread when its call ends)."""
    until = time.monotonic() + (DEADLINE_MS + GRACE_MS) / 1000 + SLACK_S
    while True:
        left = [t.name for t in _ensemble_threads() if t not in before and t.is_alive()]
        if not left or time.monotonic() > until:
            return left
        time.sleep(0.02)


PARAMS = [(sdk, c) for c in CASES for sdk in sorted(SERVERS)]


@pytest.mark.parametrize(("sdk", "case"), PARAMS, ids=[f"{s}-{c.name}" for s, c in PARAMS])
def test_a_hostile_provider(sqlite_url: str, tmp_path: Path, probe: type[Probe], sdk: str,
                            case: Case) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", Probe.WARMUP + Probe.STEP * DECISIONS + 5)
    run = _run(sqlite_url, data, sdk, case)
    where = (sdk, case.name)

    # The daemon stayed up and finished its run.
    assert run.status == "completed", where
    assert run.summary["decisions"] == DECISIONS, (where, run.summary)
    assert not run.summary["errors"], (where, run.summary["errors"])
    # No call outlives its budget (deadline + late grace), whatever the server does.
    assert not run.lingering, (where, run.lingering)

    # Every decision within the deadline plus the late grace.
    assert len(run.seconds) == DECISIONS, where
    bound = (DEADLINE_MS + GRACE_MS) / 1000 + SLACK_S
    assert max(run.seconds) <= bound, (where, run.seconds)

    # The healthy provider answered every time: never starved, never blamed.
    healthy = [c for c in run.calls if c.provider == "healthy"]
    assert [c.outcome for c in healthy] == ["ok"] * DECISIONS, (
        where, [(c.outcome, c.error) for c in healthy])

    # The hostile provider's calls, as journaled.
    hostile = [c for c in run.calls if c.provider == "hostile"]
    fails = case.fails(sdk)
    failed = min(MIN_CALLS, DECISIONS) if fails else DECISIONS
    expected = [case.outcome[sdk]] * failed + ["breaker_open"] * (DECISIONS - failed)
    assert [c.outcome for c in hostile] == expected, (
        where, [(c.outcome, c.error) for c in hostile])
    assert all(c.decision_id is not None for c in hostile), where
    for c in hostile[:failed]:
        assert c.abstained is not case.votes, (where, c.error)
        assert case.reason[sdk] in (c.error or ""), (where, c.error)
        assert c.tokens_in >= 0 and c.tokens_out >= 0 and c.cost >= 0, where
    for c in hostile[failed:]:
        assert c.abstained and c.error == "breaker open", where
    if case.max_retries:  # no retry waited past the budget: one request per call made
        assert run.hostile_requests == failed, where

    # The breaker's transitions, journaled as they happened.
    # (Each ensemble the daemon builds first announces its breakers: "new -> closed".)
    breaker = [(e.action, e.reason) for e in run.events if e.provider == "hostile"]
    built = [e for e in breaker if e[1].startswith("new ")]
    assert built and set(built) == {("breaker_closed", "new -> closed: ensemble built")}
    assert breaker[:len(built)] == built, (where, breaker)
    assert [a for a, _ in breaker[len(built):]] == (["breaker_open"] if fails else []), (
        where, breaker)
    assert {e.action for e in run.events if e.provider == "healthy"} == {"breaker_closed"}

    # A vote only from a valid answer, and an order only from a decision it voted in.
    assert len(run.decisions) == DECISIONS, where
    for d in run.decisions:
        (signal,) = [s for s in d["signals"] if s["provider"] == "hostile"]
        counted = (d["contributions"] or {}).get("hostile", 0.0) != 0.0
        assert counted is case.votes and (not signal["abstain_reason"]) is case.votes, (
            where, signal)
        assert d["voters"] == (2 if case.votes else 1), (where, d)
    counted_in = {d["id"] for d in run.decisions
                  if (d["contributions"] or {}).get("hostile", 0.0) != 0.0}
    assert all(o["decision_id"] in counted_in for o in run.orders), where
    if case.votes:
        # The control: every decision it voted in became an order.
        assert len(run.orders) == DECISIONS, (where, run.summary)
    else:
        assert not run.orders, where

    # A key the provider reflects is stored nowhere.
    stored = json.dumps([[c.raw_text, c.output_json, c.error] for c in run.calls]
                        + [d["signals"] for d in run.decisions])
    assert KEY not in stored, where


# --------------------------------------------------------------------------- queued rows
#
# Breaker transitions (and late answers) happen on ensemble threads and wait in a queue
# for the cycle thread, which owns the journal. They used to be written only at the start
# of the next cycle: one that happened in a run's last cycle was never journaled, and in
# live mode `dta providers status` showed the breaker closed until the next bar closed.


def test_a_breaker_that_opens_on_the_last_decision_is_journaled(
        sqlite_url: str, tmp_path: Path, probe: type[Probe]) -> None:
    case = next(c for c in CASES if c.name == "500")
    # Two proposals, the second (which opens the breaker) on the file's last bar.
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", Probe.WARMUP + Probe.STEP)
    run = _run(sqlite_url, data, "openai", case)
    assert run.summary["decisions"] == MIN_CALLS
    assert [c.outcome for c in run.calls if c.provider == "hostile"] == ["error"] * MIN_CALLS
    # Before: only the "new -> closed" announcements; the run ended with it open.
    assert [(e.action, e.reason.split(":")[0]) for e in run.events
            if e.provider == "hostile" and not e.reason.startswith("new ")] == [
        ("breaker_open", "closed -> open")]


def test_housekeeping_journals_a_breaker_transition_before_the_next_bar(
        sqlite_url: str, tmp_path: Path, probe: type[Probe]) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", Probe.WARMUP + Probe.STEP * 3)
    with FakeOpenAIServer(lambda _b: Fail(500), api_key=KEY) as hostile, \
            FakeOpenAIServer(stage_responder(), api_key=KEY) as healthy:
        settings = settings_for(
            sqlite_url, openai_api_key=KEY, strategy={"name": Probe.name, "params": {}},
            ensemble={
                "deadline_ms": DEADLINE_MS, "late_grace_ms": GRACE_MS,
                "prompts_dir": str(ROOT / "config" / "prompts"),
                "breaker": {"min_calls": MIN_CALLS, "failure_rate": 0.5, "cooldown_s": 600},
                "providers": [
                    {"name": "healthy", "kind": "openai", "model": "m",
                     "base_url": healthy.base_url},
                    {"name": "hostile", "kind": "openai", "model": "m",
                     "base_url": hostile.base_url}]})
        journal = Journal.open(sqlite_url)
        try:
            daemon = build_daemon(settings, journal, data=data)
            executor = daemon.executor
            assert daemon.feed is not None
            executor.start()
            while len(hostile.requests) < MIN_CALLS:  # the cycle that opens the breaker
                t = daemon.feed.next_close_time()
                assert t is not None
                executor.run_cycle(t)
            executor.housekeeping()  # the live scheduler's, every second between bars
            reader = Journal.open(sqlite_url, migrate_schema=False)
            try:
                newest = reader.provider_calls.breaker_events()
            finally:
                reader.close()
            executor.stop("completed")
        finally:
            journal.close()
    # Before: still "breaker_closed" (the announcement) until the next bar's cycle.
    assert newest["hostile"].action == "breaker_open", newest["hostile"]
    assert newest["healthy"].action == "breaker_closed"
