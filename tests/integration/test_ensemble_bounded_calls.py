"""Every provider call is bounded by a total time, and a provider that holds its calls open
never starves the others (issue 16, defect 2).

httpx's timeouts are per operation: "the read timeout is the maximum duration to wait for
a chunk of data to be received" (https://www.python-httpx.org/advanced/timeouts/). A
server that sends its answer a few bytes at a time never trips them, however long the
whole answer takes. Tried against the loopback servers through the real ``openai`` and
``anthropic`` SDKs: the call ends at its budget (the decision's deadline plus the late
grace) with its connection shut; the next decision finds a worker for every provider; a
call that was never sent is never held against its provider's breaker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import (
    FakeAnthropicServer,
    FakeOpenAIServer,
    Hang,
    Reply,
    Reset,
    Trickle,
    stage_responder,
)
from pydantic import SecretStr
from support.ensemble_scene import BAR, SNAP, retest_proposal

from domain import Proposal
from domain.errors import ProviderCallError
from ensemble.anthropic_messages import AnthropicMessagesClient
from ensemble.base import RenderedPrompt
from ensemble.breaker import BreakerState, CircuitBreaker
from ensemble.config import BreakerConfig, EnsembleConfig
from ensemble.factory import build_ensemble
from ensemble.openai_chat import OpenAIChatClient
from ensemble.telemetry import CallOutcome

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-bounded-0123456789"
SLACK_S = 0.3  # scheduling slack on a loaded 2-core machine
PROMPT = RenderedPrompt("research", "1", "h", "system", "user")


def _proposal(i: int) -> Proposal:
    return retest_proposal(bar_time=BAR.time + timedelta(minutes=15 * i))


def _trickling(body: dict[str, Any]) -> Trickle:
    """A valid answer, sent 4 bytes every 0.1 s: whole, it would take several seconds."""
    answer = stage_responder()(body)
    assert isinstance(answer, Reply)
    return Trickle(answer.text, chunk=4, pause=0.1)


SDKS = {"openai": (FakeOpenAIServer, OpenAIChatClient),
        "anthropic": (FakeAnthropicServer, AnthropicMessagesClient)}


@pytest.mark.parametrize("sdk", sorted(SDKS))
@pytest.mark.parametrize("retries", [0, 2])
def test_a_trickling_answer_ends_at_the_call_budget(sdk: str, retries: int) -> None:
    server_class, client_class = SDKS[sdk]
    with server_class(lambda _b: Trickle('{"direction": "long"}' * 20, chunk=4, pause=0.1),
                      api_key=KEY) as server:
        client = client_class(model="m", api_key=SecretStr(KEY), base_url=server.base_url,
                              timeout_s=30.0, max_retries=retries)
        started = time.perf_counter()
        with pytest.raises(ProviderCallError) as e:
            client.complete(PROMPT, None, "research", 0.5)
        held = time.perf_counter() - started
        assert e.value.timeout, e.value
        assert e.value.error_class == "CallBudgetSpent"
        assert "still arriving" in str(e.value)
        # Before: the SDK read on until the whole body was in (each chunk well inside
        # the read timeout), several seconds against a 0.5 s budget.
        assert held < 0.5 + SLACK_S, held
        assert len(server.requests) == 1  # no retry after the cut-off
        # The client is still usable: the cut connection is not handed out again.
        server.reset(lambda _b: Reply('{"ok": true}'))
        assert client.complete(PROMPT, None, "research", 2.0).text == '{"ok": true}'


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_a_connection_reset_is_an_error_at_once(sdk: str) -> None:
    server_class, client_class = SDKS[sdk]
    with server_class(lambda _b: Reply('{"ok": true}'), api_key=KEY) as server:
        client = client_class(model="m", api_key=SecretStr(KEY), base_url=server.base_url,
                              timeout_s=30.0, max_retries=0)
        for behaviour in (Reset('{"ok": true}'), Reset('{"ok": true}', headers=False)):
            server.push(behaviour)
            started = time.perf_counter()
            with pytest.raises(ProviderCallError) as e:
                client.complete(PROMPT, None, "research", 2.0)
            assert not e.value.timeout and e.value.error_class == "APIConnectionError"
            assert time.perf_counter() - started < SLACK_S
        assert client.complete(PROMPT, None, "research", 2.0).text == '{"ok": true}'


# --------------------------------------------------------------------------- the ensemble

DEADLINE_MS = 400
GRACE_MS = 200


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    with FakeOpenAIServer(_trickling, api_key=KEY) as slow_openai, \
            FakeAnthropicServer(_trickling, api_key=KEY) as slow_anthropic, \
            FakeOpenAIServer(stage_responder(), api_key=KEY) as good:
        yield {"slow_openai": slow_openai, "slow_anthropic": slow_anthropic, "good": good}


def _config(servers: dict[str, Any], max_workers: int, **extra: Any) -> EnsembleConfig:
    return EnsembleConfig.model_validate({
        "deadline_ms": DEADLINE_MS, "late_grace_ms": GRACE_MS, "max_workers": max_workers,
        "prompts_dir": str(ROOT / "config" / "prompts"), **extra,
        "providers": [
            {"name": "structure", "kind": "structure"},
            {"name": "slow_gpt", "kind": "openai", "model": "gpt-slow",
             "base_url": servers["slow_openai"].base_url},
            {"name": "slow_claude", "kind": "anthropic", "model": "claude-slow",
             "base_url": servers["slow_anthropic"].base_url},
            {"name": "good", "kind": "openai", "model": "gpt-good",
             "base_url": servers["good"].base_url}]})


def _ensemble_threads() -> int:
    return sum(1 for t in threading.enumerate()
               if t.name.startswith("dta-ensemble") and t.is_alive())


def test_trickling_providers_neither_hold_workers_nor_starve_the_healthy_one(
        servers: dict[str, Any]) -> None:
    secrets = {"openai_api_key": SecretStr(KEY), "anthropic_api_key": SecretStr(KEY)}
    # A worker for every LLM, as a sized configuration has; the trickling calls of one
    # decision used to keep theirs through the next decisions.
    cfg = _config(servers, max_workers=3)
    before = _ensemble_threads()
    with build_ensemble(cfg, secrets=secrets, params_hash="h") as ens:
        good = next(m for m in ens.members if m.name == "good")
        rows = []
        for i in range(5):
            started = time.perf_counter()
            decision = ens.evaluate(_proposal(i), SNAP)
            held = time.perf_counter() - started
            calls = {c.provider: c for c in decision.calls}
            rows.append((calls["good"].outcome, calls["good"].reason, round(held, 2)))
            assert held < DEADLINE_MS / 1000 + SLACK_S, rows
            assert calls["slow_gpt"].outcome in (CallOutcome.TIMEOUT, CallOutcome.BREAKER_OPEN)
        # Before: from the second decision on, "timeout ... (not started: every worker
        # busy)" for the healthy provider, counted against its breaker until it opened.
        assert [r[0] for r in rows] == [CallOutcome.OK] * 5, rows
        assert good.breaker.state is BreakerState.CLOSED
        assert good.breaker.status().trips == 0
        # Every abandoned call ends at its budget; its thread leaves the pool.
        time.sleep((DEADLINE_MS + GRACE_MS) / 1000 + SLACK_S)
        assert ens._executor().abandoned == 0
        assert _ensemble_threads() - before <= cfg.max_workers


@pytest.fixture
def hanging() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(lambda _b: Hang(30), api_key=KEY) as server:
        yield server


def test_a_call_that_never_started_is_not_held_against_its_breaker(
        hanging: FakeOpenAIServer, servers: dict[str, Any]) -> None:
    cfg = EnsembleConfig.model_validate({
        "deadline_ms": DEADLINE_MS, "late_grace_ms": GRACE_MS, "max_workers": 1,
        "prompts_dir": str(ROOT / "config" / "prompts"),
        "providers": [
            {"name": "hang", "kind": "openai", "model": "gpt-hang",
             "base_url": hanging.base_url},
            {"name": "good", "kind": "openai", "model": "gpt-good",
             "base_url": servers["good"].base_url}]})
    with build_ensemble(cfg, secrets={"openai_api_key": SecretStr(KEY)},
                        params_hash="h") as ens:
        good = next(m for m in ens.members if m.name == "good")
        outcomes = []
        for i in range(6):
            decision = ens.evaluate(_proposal(i), SNAP)
            outcomes.append({c.provider: (c.outcome.value, c.reason) for c in decision.calls})
        # One worker: while "hang" is tried, "good" waits and is never sent; once the
        # hanging provider's breaker opens, "good" gets the worker and answers.
        assert any("not started" in (o["good"][1] or "") for o in outcomes), outcomes
        assert outcomes[-1]["good"][0] == "ok", outcomes
        # Before: each unsent call counted as a timeout, and its breaker opened too.
        assert good.breaker.status().trips == 0, outcomes
        assert next(m for m in ens.members if m.name == "hang").breaker.status().trips == 1


def test_an_unsent_probe_frees_the_half_open_slot() -> None:
    now = [0.0]
    b = CircuitBreaker("x", BreakerConfig(min_calls=1, cooldown_s=10), lambda: now[0])
    assert b.allow()
    b.record(False)
    now[0] += 10
    assert b.allow()  # the probe
    assert not b.allow()  # one at a time
    b.release()  # it never went out
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()
    b.record(True)
    assert b.state is BreakerState.CLOSED
