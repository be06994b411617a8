"""The real openai and anthropic SDKs against loopback fakes, through the ensemble.

Each documented failure (429, 500, 529 overloaded, timeout, truncation, a body that is not
JSON, a dropped connection, hallucinated or malformed answers) must become an abstention
with its reason and raw text, never a vote; a good answer must become a vote with tokens
and cost from the pinned prices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.llm_servers import (
    Disconnect,
    Fail,
    FakeAnthropicServer,
    FakeOpenAIServer,
    RawBody,
    Reply,
    prompt_input,
    research_answer,
    stage_responder,
)
from pydantic import SecretStr
from support.ensemble_scene import BLOCK_RETEST_TAGS, SNAP, retest_proposal

from domain import Direction, MarketSnapshot, Proposal
from ensemble.config import EnsembleConfig, ProviderConfig, RouteRule
from ensemble.factory import build_ensemble
from ensemble.telemetry import CallOutcome, InMemorySink, ProviderCall

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-secret-0123456789"


def snapshot() -> MarketSnapshot:
    return SNAP


def proposal() -> Proposal:
    return retest_proposal(tags=BLOCK_RETEST_TAGS)


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[FakeOpenAIServer, FakeAnthropicServer]]:
    oa = FakeOpenAIServer(stage_responder(), api_key=KEY).start()
    an = FakeAnthropicServer(stage_responder(), api_key=KEY).start()
    try:
        yield oa, an
    finally:
        oa.close()
        an.close()


@pytest.fixture
def servers(_servers: tuple[FakeOpenAIServer, FakeAnthropicServer],
            ) -> tuple[FakeOpenAIServer, FakeAnthropicServer]:
    for s in _servers:
        s.reset(stage_responder(), api_key=KEY)
    return _servers


def config(oa: FakeOpenAIServer, an: FakeAnthropicServer, **kw: object) -> EnsembleConfig:
    providers = (
        ProviderConfig(name="gpt", kind="openai", model="gpt-test", base_url=oa.base_url,
                       price_in_per_1k=0.5, price_out_per_1k=1.5, timeout_s=5),
        ProviderConfig(name="claude", kind="anthropic", model="claude-test",
                       base_url=an.base_url, price_in_per_1k=3.0, price_out_per_1k=15.0,
                       timeout_s=5),
    )
    base: dict[str, object] = {"providers": providers, "deadline_ms": 3000,
                               "prompts_dir": ROOT / "config" / "prompts",
                               "routing": (RouteRule(request="research"),)}
    base.update(kw)
    return EnsembleConfig.model_validate(base)


def secrets() -> dict[str, SecretStr | None]:
    return {"openai_api_key": SecretStr(KEY), "anthropic_api_key": SecretStr(KEY)}


def calls_by_provider(calls: tuple[ProviderCall, ...]) -> dict[str, ProviderCall]:
    return {c.provider: c for c in calls}


def test_good_answers_vote_with_tokens_cost_and_structured_output_requests(servers) -> None:
    oa, an = servers
    sink = InMemorySink()
    with build_ensemble(config(oa, an), secrets=secrets(), params_hash="p",
                        telemetry=sink) as ens:
        d = ens.evaluate(proposal(), snapshot())
    assert d.direction is Direction.LONG and d.voters == 2 and d.agreement == 2
    assert d.confidence == pytest.approx(0.7)
    by = calls_by_provider(d.calls)
    for name, (pin, pout) in {"gpt": (0.5, 1.5), "claude": (3.0, 15.0)}.items():
        c = by[name]
        assert c.outcome is CallOutcome.OK and not c.abstained
        assert c.tokens_in > 100 and c.tokens_out > 10
        assert c.cost == pytest.approx(c.tokens_in / 1000 * pin + c.tokens_out / 1000 * pout)
        assert c.template_id == "research" and c.template_version == "1"
        assert c.template_hash and len(c.request_key or "") == 64
        assert json.loads(c.input_json or "{}")["proposal"]["entry"] == 1.0852
        assert json.loads(c.raw_text or "{}")["direction"] == "long"
    assert sink.calls == d.calls
    # The wire requests: OpenAI structured output and Anthropic output_config, no retries.
    req = oa.requests[-1]
    assert req.body["response_format"]["type"] == "json_schema"
    schema = req.body["response_format"]["json_schema"]["schema"]
    assert schema["additionalProperties"] is False and "confidence" in schema["required"]
    assert req.body["max_completion_tokens"] == 600 and req.body["temperature"] == 0.0
    assert req.headers["x-stainless-retry-count"] == "0"
    areq = an.requests[-1]
    assert areq.body["output_config"]["format"]["type"] == "json_schema"
    assert areq.body["max_tokens"] == 600 and areq.body["system"]
    assert prompt_input(areq.body)["symbol"] == "EURUSD"  # type: ignore[index]


@pytest.mark.parametrize(("behaviour", "outcome", "error_class"), [
    (Fail(429), CallOutcome.ERROR, "RateLimitError"),
    (Fail(500), CallOutcome.ERROR, "InternalServerError"),
    (RawBody(b"<html>bad gateway</html>"), CallOutcome.ERROR, "JSONDecodeError"),
    (Disconnect(), CallOutcome.ERROR, "APIConnectionError"),
    (Reply('{"symbol": "EURUSD", "direction": "lo', truncated=True), CallOutcome.INVALID, None),
])
def test_openai_failures_are_abstentions(servers, behaviour, outcome, error_class) -> None:
    oa, an = servers
    oa.push(behaviour)
    with build_ensemble(config(oa, an), secrets=secrets(), params_hash="p") as ens:
        d = ens.evaluate(proposal(), snapshot())
    gpt = calls_by_provider(d.calls)["gpt"]
    assert gpt.outcome is outcome and gpt.abstained and gpt.reason
    assert gpt.error_class == error_class
    assert d.voters == 1 and d.direction is Direction.LONG  # claude still voted
    sig = next(s for s in d.signals if s.provider == "gpt")
    assert sig.abstained and sig.abstain_reason == gpt.reason
    if outcome is CallOutcome.INVALID:
        assert gpt.raw_text and "truncated" in (gpt.reason or "")


@pytest.mark.parametrize(("status", "error_class"), [
    (429, "RateLimitError"), (500, "InternalServerError"), (529, "OverloadedError")])
def test_anthropic_errors_are_abstentions(servers, status, error_class) -> None:
    oa, an = servers
    an.push(Fail(status))
    with build_ensemble(config(oa, an), secrets=secrets(), params_hash="p") as ens:
        d = ens.evaluate(proposal(), snapshot())
    c = calls_by_provider(d.calls)["claude"]
    assert c.outcome is CallOutcome.ERROR and c.error_class == error_class
    assert f"HTTP {status}" in (c.reason or "")
    assert KEY not in repr(d)


def test_timeout_is_an_abstention(servers) -> None:
    oa, an = servers
    an.push(Reply("{}", delay=2.0))
    cfg = config(oa, an, deadline_ms=800, late_grace_ms=0)
    with build_ensemble(cfg, secrets=secrets(), params_hash="p") as ens:
        d = ens.evaluate(proposal(), snapshot())
    c = calls_by_provider(d.calls)["claude"]
    # With no late grace the SDK's own read timeout ends with the deadline: whichever of
    # the two the scheduler lets finish first names the timeout (the ensemble's deadline,
    # or the SDK's "Request timed out"); either way it is a timeout and abstains.
    assert c.outcome is CallOutcome.TIMEOUT and c.abstained
    assert "deadline" in (c.reason or "") or "timed out" in (c.reason or "").lower(), c.reason
    assert d.voters == 1


def _hallucinations() -> list[tuple[str, str]]:
    snap_input = {"symbol": "EURUSD", "proposal": {"direction": "long", "entry": 1.0852,
                                                   "stop": 1.0838, "target": 1.0880}}
    good = research_answer(snap_input)
    cases = {
        "names symbol": {**good, "symbol": "GBPUSD"},
        "stop 1.086 on the wrong side": {**good, "stop": 1.0860},
        "target 1.084 on the wrong side": {**good, "target": 1.0840},
        "outside the sane band": {**good, "target": 1.2000},
        "unknown SMC tag": {**good, "tags": ["fair_value_gap_bullish_v2"]},
        "confidence": {**good, "confidence": 1.7},
        "needs entry, stop and target": {**good, "entry": None},
        "Extra inputs are not permitted": {**good, "size": 3},
    }
    out = [(reason, json.dumps(body)) for reason, body in cases.items()]
    out.append(("not a JSON object", "Sure! I'd go long here."))
    out.append(("schema", '{"symbol": "EURUSD", "direction": "long",'))
    out.append(("schema", json.dumps({**good, "confidence": "0.9"})))
    return out


@pytest.mark.parametrize(("reason", "text"), _hallucinations())
def test_hallucinated_or_malformed_json_is_rejected_with_reason(servers, reason, text) -> None:
    oa, an = servers
    oa.push(Reply(text))
    an.push(Reply(text))
    with build_ensemble(config(oa, an), secrets=secrets(), params_hash="p") as ens:
        d = ens.evaluate(proposal(), snapshot())
    assert d.direction is Direction.FLAT and d.voters == 0 and d.confidence == 0.0
    for c in d.calls:
        assert c.outcome is CallOutcome.INVALID and c.abstained
        assert reason.split()[0] in (c.reason or ""), c.reason
        assert c.raw_text == text


def test_fenced_json_is_accepted(servers) -> None:
    oa, an = servers
    inp = {"symbol": "EURUSD", "proposal": {"direction": "long", "entry": 1.0852,
                                            "stop": 1.0838, "target": 1.0880}}
    oa.push(Reply("```json\n" + json.dumps(research_answer(inp)) + "\n```"))
    with build_ensemble(config(oa, an), secrets=secrets(), params_hash="p") as ens:
        d = ens.evaluate(proposal(), snapshot())
    assert calls_by_provider(d.calls)["gpt"].outcome is CallOutcome.OK


def test_flat_answer_is_a_vote_that_dilutes(servers) -> None:
    oa, an = servers
    flat = {"symbol": "EURUSD", "direction": "flat", "confidence": 0.8, "entry": None,
            "stop": None, "target": None, "tags": [], "rationale": "no edge"}
    oa.push(Reply(json.dumps(flat)))
    with build_ensemble(config(oa, an), secrets=secrets(), params_hash="p") as ens:
        d = ens.evaluate(proposal(), snapshot())
    assert d.voters == 2 and d.agreement == 1 and d.direction is Direction.LONG
    assert d.confidence == pytest.approx(0.35)  # 0.7 from claude over two equal weights


def test_local_openai_compatible_server_needs_no_key(servers) -> None:
    oa, an = servers
    oa.api_key = "sk-no-key"  # llama.cpp / Ollama accept any bearer token
    cfg = config(oa, an, providers=(ProviderConfig(
        name="llama", kind="openai", model="qwen2.5-7b", base_url=oa.base_url,
        max_tokens_param="max_tokens", temperature=None, structured_output=False),))
    with build_ensemble(cfg, secrets={}, params_hash="p") as ens:
        d = ens.evaluate(proposal(), snapshot())
    assert d.voters == 1
    body = oa.requests[-1].body
    assert "max_tokens" in body and "temperature" not in body and "response_format" not in body


def test_secret_never_leaks_into_calls_or_errors(servers) -> None:
    oa, an = servers
    oa.api_key = "a-different-key"  # the server rejects ours: 401 with the documented body
    with build_ensemble(config(oa, an), secrets=secrets(), params_hash="p") as ens:
        d = ens.evaluate(proposal(), snapshot())
    gpt = calls_by_provider(d.calls)["gpt"]
    assert gpt.outcome is CallOutcome.ERROR and gpt.error_class == "AuthenticationError"
    blob = json.dumps([c.to_dict() for c in d.calls]) + repr(d)
    assert KEY not in blob
