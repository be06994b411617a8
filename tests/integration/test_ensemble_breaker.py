"""Deadline, circuit breakers, fallback chain and the "class down" state.

One of three providers hangs: every decision still returns within its deadline, the
hanging provider's breaker opens after the configured failures, is skipped while open,
half-opens after the cooldown (an injected clock, no sleeping) and recovers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.llm_servers import Fail, FakeAnthropicServer, FakeOpenAIServer, Hang, Reply
from fakes.llm_servers import stage_responder as responder
from pydantic import SecretStr
from support.ensemble_scene import PROP, SNAP

from domain import Direction
from ensemble.breaker import BreakerState, CircuitBreaker
from ensemble.config import BreakerConfig, EnsembleConfig, ProviderConfig, RouteRule
from ensemble.ensemble import Ensemble
from ensemble.factory import build_ensemble
from ensemble.telemetry import CallOutcome, InMemorySink

ROOT = Path(__file__).resolve().parents[2]
KEY = "k"
EPSILON_S = 0.25  # scheduling slack on a loaded 2-core machine
DEADLINE_S = 0.8


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


# --------------------------------------------------------------------------- unit


def test_breaker_trips_on_failure_rate_then_half_opens_and_recovers() -> None:
    clock = FakeClock()
    b = CircuitBreaker("x", BreakerConfig(window_s=60, min_calls=4, failure_rate=0.5,
                                          cooldown_s=30, half_open_probes=2), clock)
    for ok in (True, True, False):
        assert b.allow()
        b.record(ok)
    assert b.state is BreakerState.CLOSED  # 3 calls < min_calls
    b.record(False)  # 2/4 failed
    assert b.state is BreakerState.OPEN and not b.allow()
    clock.advance(29.9)
    assert not b.allow()
    clock.advance(0.2)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow() and not b.allow()  # one probe at a time
    b.record(True)
    assert b.state is BreakerState.HALF_OPEN and b.allow()
    b.record(True)  # second good probe closes it
    assert b.state is BreakerState.CLOSED and b.status().trips == 1


def test_breaker_failed_probe_reopens_and_slow_calls_count_as_failures() -> None:
    clock = FakeClock()
    b = CircuitBreaker("x", BreakerConfig(min_calls=2, failure_rate=1.0, slow_call_ms=500,
                                          cooldown_s=10), clock)
    b.record(True, latency_ms=900)
    b.record(True, latency_ms=700)  # answered, but too slow: both count against it
    assert b.state is BreakerState.OPEN
    clock.advance(10)
    assert b.allow()
    b.record(False)
    assert b.state is BreakerState.OPEN and b.status().trips == 2
    clock.advance(5)
    assert not b.allow()


def test_old_failures_leave_the_window() -> None:
    clock = FakeClock()
    b = CircuitBreaker("x", BreakerConfig(window_s=10, min_calls=2, failure_rate=0.5), clock)
    b.record(False)
    clock.advance(11)
    b.record(True)
    b.record(True)
    assert b.state is BreakerState.CLOSED and b.status().failures_in_window == 0


# --------------------------------------------------------------------------- integration


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[FakeOpenAIServer, FakeAnthropicServer, FakeOpenAIServer]]:
    a = FakeOpenAIServer(responder(), api_key=KEY).start()
    b = FakeAnthropicServer(responder(), api_key=KEY).start()
    c = FakeOpenAIServer(responder(), api_key=KEY).start()
    # Warm the SDKs' lazy first-request paths so deadlines below measure steady state.
    with build_ensemble(three(a, b, c), secrets=SECRETS, params_hash="warm") as ens:
        ens.evaluate(PROP, SNAP)
    yield a, b, c
    for s in (a, b, c):
        s.close()


@pytest.fixture
def servers(_servers: tuple[FakeOpenAIServer, FakeAnthropicServer, FakeOpenAIServer],
            ) -> Iterator[tuple[FakeOpenAIServer, FakeAnthropicServer, FakeOpenAIServer]]:
    for s in _servers:
        s.reset(responder(), api_key=KEY)
        s.release.clear()
    yield _servers
    for s in _servers:
        s.release.set()  # let hanging handlers go


def three(a: FakeOpenAIServer, b: FakeAnthropicServer, c: FakeOpenAIServer, *,
          research: RouteRule | None = None, extra: tuple[ProviderConfig, ...] = (),
          routing: tuple[RouteRule, ...] = (), charlie_stages: tuple[str, ...] = ("research",),
          **kw: object) -> EnsembleConfig:
    providers = (
        ProviderConfig(name="alpha", kind="openai", model="m-a", base_url=a.base_url,
                       timeout_s=5),
        ProviderConfig(name="bravo", kind="anthropic", model="m-b", base_url=b.base_url,
                       timeout_s=5),
        ProviderConfig(name="charlie", kind="openai", model="m-c", base_url=c.base_url,
                       timeout_s=5, stages=charlie_stages),  # type: ignore[arg-type]
        *extra,
    )
    base: dict[str, object] = {
        "providers": providers, "deadline_ms": int(DEADLINE_S * 1000), "late_grace_ms": 150,
        "prompts_dir": ROOT / "config" / "prompts",
        "breaker": BreakerConfig(min_calls=2, failure_rate=0.5, cooldown_s=30),
        "routing": routing or (research or RouteRule(request="research"),)}
    base.update(kw)
    return EnsembleConfig.model_validate(base)


SECRETS = {"openai_api_key": SecretStr(KEY), "anthropic_api_key": SecretStr(KEY)}


def timed(ens: Ensemble) -> tuple[float, object]:
    t = time.perf_counter()
    result = ens.evaluate_detailed(PROP, SNAP)
    return time.perf_counter() - t, result


def test_one_hanging_provider_deadline_breaker_half_open_recovery(servers) -> None:
    a, b, c = servers
    c.reset(lambda _body: Hang(max_seconds=10))
    clock = FakeClock()
    sink = InMemorySink()
    ens = build_ensemble(three(a, b, c), secrets=SECRETS, params_hash="p", clock=clock,
                         telemetry=sink)
    with ens:
        for i in range(2):  # two timeouts trip the breaker (min_calls=2, rate 0.5)
            elapsed, r = timed(ens)
            assert elapsed < DEADLINE_S + EPSILON_S, elapsed
            d = r.decision  # type: ignore[attr-defined]
            by = {x.provider: x for x in d.calls}
            assert by["charlie"].outcome is CallOutcome.TIMEOUT
            assert by["alpha"].outcome is by["bravo"].outcome is CallOutcome.OK
            assert d.direction is Direction.LONG and d.voters == 2 and d.agreement == 2
            expected = BreakerState.OPEN if i == 1 else BreakerState.CLOSED
            assert ens.members[2].breaker.state is expected
        seen = len(c.requests)
        health = ens.health()
        assert ("charlie", "reasoning", "open") in health.providers
        assert health.classes_down == ()  # alpha and bravo still serve the class

        # Open: charlie is not called at all, the decision does not wait for it.
        elapsed, r = timed(ens)
        d = r.decision  # type: ignore[attr-defined]
        assert {x.provider: x.outcome for x in d.calls}["charlie"] is CallOutcome.BREAKER_OPEN
        assert len(c.requests) == seen and elapsed < DEADLINE_S
        assert next(s for s in d.signals if s.provider == "charlie").abstain_reason == \
            "breaker open"

        # Cooldown passes (injected clock); the server is healthy again: one probe, closed.
        c.release.set()
        c.reset(responder())
        clock.advance(31)
        assert ens.health().providers[2][2] == "half_open"
        elapsed, r = timed(ens)
        d = r.decision  # type: ignore[attr-defined]
        assert {x.provider: x.outcome for x in d.calls}["charlie"] is CallOutcome.OK
        assert d.voters == 3 and ens.members[2].breaker.state is BreakerState.CLOSED
        assert elapsed < DEADLINE_S + EPSILON_S
    assert any(x.outcome is CallOutcome.BREAKER_OPEN for x in sink.calls)


def test_late_answer_is_recorded_as_late_and_ignored(servers) -> None:
    a, b, c = servers
    c.push(Reply(json.dumps({
        "symbol": "EURUSD", "direction": "short", "confidence": 0.99, "entry": 1.0852,
        "stop": 1.0860, "target": 1.0840, "tags": [], "rationale": "late"}), delay=0.9))
    sink = InMemorySink()
    cfg = three(a, b, c, deadline_ms=600, late_grace_ms=1500)
    with build_ensemble(cfg, secrets=SECRETS, params_hash="p", telemetry=sink) as ens:
        elapsed, r = timed(ens)
        d = r.decision  # type: ignore[attr-defined]
        assert elapsed < 0.6 + EPSILON_S
        assert d.direction is Direction.LONG and d.voters == 2  # the short never counted
        for _ in range(100):
            if any(x.outcome is CallOutcome.LATE for x in sink.calls):
                break
            time.sleep(0.02)
    late = [x for x in sink.calls if x.outcome is CallOutcome.LATE]
    assert len(late) == 1 and late[0].provider == "charlie" and late[0].abstained
    assert '"late"' in (late[0].raw_text or "") and late[0].tokens_out > 0
    assert late[0] not in d.calls


def test_fallback_chain_replaces_an_open_provider(servers) -> None:
    a, b, c = servers
    b.reset(lambda _body: Fail(529))
    rule = RouteRule(request="research", providers=("bravo", "alpha", "charlie"), fanout=2)
    with build_ensemble(three(a, b, c, research=rule), secrets=SECRETS,
                        params_hash="p") as ens:
        for _ in range(2):
            d = ens.evaluate(PROP, SNAP)
            asked = [x.provider for x in d.calls]
            assert asked == ["bravo", "alpha"]  # fanout 2: charlie is not asked yet
        assert ens.members[1].breaker.state is BreakerState.OPEN
        d = ens.evaluate(PROP, SNAP)
        outcomes = {x.provider: x.outcome for x in d.calls}
        assert outcomes == {"bravo": CallOutcome.BREAKER_OPEN, "alpha": CallOutcome.OK,
                            "charlie": CallOutcome.OK}
        assert d.voters == 2


def test_all_providers_of_a_class_down_is_reported(servers) -> None:
    a, b, c = servers
    for s in (a, b, c):
        s.reset(lambda _body: Fail(500))
    local = ProviderConfig(name="structure", kind="structure")
    with build_ensemble(three(a, b, c, extra=(local,)), secrets=SECRETS,
                        params_hash="p") as ens:
        for _ in range(2):
            ens.evaluate(PROP, SNAP)
        h = ens.health()
        assert h.classes_down == ("reasoning",) and not h.ok
        assert h.stages_down == ()  # the deterministic structure provider still votes
        assert ens.classes_down() == ("reasoning",)
        d = ens.evaluate(PROP, SNAP)
        assert d.voters == 1 and d.provider_mix[-1] == "structure"
        assert sum(x.outcome is CallOutcome.BREAKER_OPEN for x in d.calls) == 3


def test_review_stage_down_vetoes(servers) -> None:
    a, b, c = servers
    c.reset(lambda _body: Fail(500))
    cfg = three(a, b, c, charlie_stages=("research", "risk"), routing=(
        RouteRule(request="research", providers=("alpha", "bravo")),
        RouteRule(request="risk", providers=("charlie",))))
    with build_ensemble(cfg, secrets=SECRETS, params_hash="p") as ens:
        for _ in range(2):
            r = ens.evaluate_detailed(PROP, SNAP)
            assert r.vetoed_by == "risk" and r.veto_reason == "no valid risk review"
        r = ens.evaluate_detailed(PROP, SNAP)
        assert r.vetoed_by == "risk" and "breaker open" in (r.veto_reason or "")
        assert r.decision.direction is Direction.FLAT and r.decision.voters == 2
        assert r.health is not None and r.health.stages_down == ("risk",)


def test_a_call_still_queued_at_the_deadline_is_never_sent(servers) -> None:
    a, b, c = servers
    a.reset(lambda _body: Hang(max_seconds=10))
    rule = RouteRule(request="research", providers=("alpha", "bravo"))
    with build_ensemble(three(a, b, c, research=rule, max_workers=1), secrets=SECRETS,
                        params_hash="p") as ens:
        elapsed, r = timed(ens)
        d = r.decision  # type: ignore[attr-defined]
        assert elapsed < DEADLINE_S + EPSILON_S
        by = {x.provider: x for x in d.calls}
        assert by["alpha"].outcome is by["bravo"].outcome is CallOutcome.TIMEOUT
        assert "not started" in (by["bravo"].reason or "") and not b.requests
        assert d.direction is Direction.FLAT and d.voters == 0
