"""A replay's provider calls match the recorded run's, HTTP errors and late answers included
(issue 16, record/replay gap).

Recorded against the loopback servers through the real SDKs: one provider answers the
documented 500 ``server_error``, another answers after the decision's deadline (a
``timeout`` in the decision, then a ``late`` record). Replayed with the servers down, the
calls (stage, provider, outcome, abstention, error class, tokens, cost) are the recorded
run's, in the same order, not only the decisions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import (
    Behaviour,
    Fail,
    FakeAnthropicServer,
    FakeOpenAIServer,
    Reply,
    stage_responder,
)
from pydantic import SecretStr
from support.ensemble_scene import PROP, SNAP

from ensemble.config import EnsembleConfig
from ensemble.factory import build_ensemble
from ensemble.telemetry import CallOutcome, InMemorySink, ProviderCall

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-replay-calls-0123456789"
DEADLINE_MS = 300
LATE_BY_S = 0.6


def _late(body: dict[str, Any]) -> Behaviour:
    answer = stage_responder()(body)
    return replace(answer, delay=LATE_BY_S) if isinstance(answer, Reply) else answer


@pytest.fixture
def servers() -> Iterator[tuple[FakeOpenAIServer, FakeAnthropicServer]]:
    with FakeOpenAIServer(lambda _b: Fail(500), api_key=KEY) as failing, \
            FakeAnthropicServer(_late, api_key=KEY) as late:
        yield failing, late


def _config(mode: str, recordings: Path, failing: str, late: str) -> EnsembleConfig:
    return EnsembleConfig.model_validate({
        "deadline_ms": DEADLINE_MS, "late_grace_ms": 3000, "mode": mode,
        "recordings_path": str(recordings), "prompts_dir": str(ROOT / "config" / "prompts"),
        "providers": [
            {"name": "structure", "kind": "structure"},
            {"name": "gpt", "kind": "openai", "model": "gpt-500", "base_url": failing,
             "price_in_per_1k": 0.001, "price_out_per_1k": 0.002},
            {"name": "claude", "kind": "anthropic", "model": "claude-late",
             "base_url": late, "price_in_per_1k": 0.003, "price_out_per_1k": 0.015}]})


def _rows(calls: tuple[ProviderCall, ...]) -> list[tuple[Any, ...]]:
    return [(c.stage, c.provider, c.outcome.value, c.abstained, c.error_class, c.tokens_in,
             c.tokens_out, round(c.cost, 9)) for c in calls]


def test_replayed_calls_match_the_recorded_run(
        servers: tuple[FakeOpenAIServer, FakeAnthropicServer], tmp_path: Path) -> None:
    failing, late = servers
    secrets = {"openai_api_key": SecretStr(KEY), "anthropic_api_key": SecretStr(KEY)}
    recorded = InMemorySink()
    cfg = _config("record", tmp_path / "rec", failing.base_url, late.base_url)
    with build_ensemble(cfg, secrets=secrets, params_hash="h", telemetry=recorded) as ens:
        decision = ens.evaluate(PROP, SNAP)
        waited = time.monotonic() + 10
        while (not any(c.outcome is CallOutcome.LATE for c in recorded.calls)
               and time.monotonic() < waited):
            time.sleep(0.02)
    outcomes = {c.provider: c.outcome for c in decision.calls}
    assert outcomes == {"structure": CallOutcome.OK, "gpt": CallOutcome.ERROR,
                        "claude": CallOutcome.TIMEOUT}
    assert any(c.outcome is CallOutcome.LATE and c.tokens_in > 0 for c in recorded.calls)
    failing.close()
    late.close()

    replayed = InMemorySink()
    cfg = _config("replay", tmp_path / "rec", failing.base_url, late.base_url)
    with build_ensemble(cfg, secrets={}, params_hash="h", telemetry=replayed) as ens:
        again = ens.evaluate(PROP, SNAP)
    # Before: gpt's 500 was not recorded ("no_recording" in the replay) and claude's
    # late answer left no "late" record.
    assert _rows(replayed.calls) == _rows(recorded.calls), (
        _rows(recorded.calls), _rows(replayed.calls))
    assert again.direction == decision.direction
    gpt = next(c for c in replayed.calls if c.provider == "gpt")
    assert gpt.replayed and gpt.reason is not None and "HTTP 500" in gpt.reason
