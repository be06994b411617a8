"""Thousands of malformed model outputs: zero crashes, zero votes, every rejection reasoned.

Each generated output is invalid by construction (random text, a valid answer with one
field broken, truncated or wrapped JSON, a hallucinated symbol, a stop on the wrong side,
prices far from the market, tags outside the SMC glossary...). It goes through the whole
path a real answer takes: ``ModelMember`` -> validation -> scoring -> ``Decision``; a
smaller run goes through the real openai SDK and a loopback server as well.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import FakeOpenAIServer, Reply
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from support.ensemble_scene import PROP, SNAP

from domain import Direction
from domain.glossary import is_valid_tag
from ensemble.base import Completion, RenderedPrompt
from ensemble.config import EnsembleConfig, ProviderConfig, RouteRule
from ensemble.ensemble import Ensemble
from ensemble.factory import build_ensemble
from ensemble.telemetry import CallOutcome
from ensemble.validation import validate_answer

ROOT = Path(__file__).resolve().parents[2]
VALID: dict[str, Any] = {"symbol": "EURUSD", "direction": "long", "confidence": 0.7,
                         "entry": 1.0852, "stop": 1.0838, "target": 1.0880,
                         "tags": ["order_block_bullish"], "rationale": "retest of the block"}
BAND = 10.0 * 0.0010  # validation.price_band_atr * ATR (wider than the proposal reach)


@dataclass(frozen=True)
class Output:
    text: str
    truncated: bool = False


class ScriptedClient:
    """An in-process ModelClient: answers whatever the test sets, instantly."""

    kind = "openai"
    model = "scripted"

    def __init__(self) -> None:
        self.next = Output("{}")

    def complete(self, prompt: RenderedPrompt, schema: Mapping[str, Any] | None,
                 schema_name: str, timeout_s: float) -> Completion:
        return Completion(self.next.text, 100, 20, truncated=self.next.truncated)


# --------------------------------------------------------------------------- strategies

_FIELDS = list(VALID)
_wrong_type = st.one_of(st.none(), st.booleans(), st.integers(-5, 5),
                        st.text(max_size=5), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
_far_price = st.one_of(st.floats(1.0852 + BAND * 1.01, 1e6), st.floats(1e-6, 1.0852 - BAND * 1.01))
_bad_tag = st.text(min_size=1, max_size=30).filter(lambda t: not is_valid_tag(t))


def _dump(d: Mapping[str, Any]) -> str:
    return json.dumps(d)


@st.composite
def broken_answers(draw: st.DrawFn) -> Output:
    kind = draw(st.sampled_from([
        "text", "missing", "extra", "wrong_type", "confidence", "nan", "symbol", "direction",
        "stop_side", "target_side", "band", "non_positive", "tag", "rationale", "cut", "prose",
        "not_object", "null_levels", "truncated_flag"]))
    d = dict(VALID)
    if kind == "text":
        text = draw(st.text(max_size=200))
        return Output(text if not text.strip().startswith("{") else "x" + text)
    if kind == "missing":
        del d[draw(st.sampled_from(_FIELDS))]
    elif kind == "extra":
        d[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in VALID))] = 1
    elif kind == "wrong_type":
        field = draw(st.sampled_from(_FIELDS))
        value = draw(_wrong_type)
        number = (int, float)  # JSON has one number type: 0 is a valid confidence
        ok_types: dict[str, tuple[type, ...]] = {
            "symbol": (str,), "direction": (str,), "rationale": (str,), "tags": (list,),
            "confidence": number, "entry": number, "stop": number, "target": number}
        valid_type = isinstance(value, ok_types[field]) and not isinstance(value, bool)
        if valid_type or (field in ("entry", "stop", "target") and value is None):
            value = {"nested": True}
        d[field] = value
    elif kind == "confidence":
        d["confidence"] = draw(st.one_of(st.floats(1.0001, 1e9), st.floats(-1e9, -0.0001)))
    elif kind == "nan":
        d[draw(st.sampled_from(["confidence", "entry", "stop", "target"]))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf]))
    elif kind == "symbol":
        d["symbol"] = draw(st.text(min_size=1, max_size=12).filter(
            lambda s: s.strip().upper() != "EURUSD"))
    elif kind == "direction":
        d["direction"] = draw(st.text(max_size=8).filter(
            lambda s: s not in ("long", "short", "flat")))
    elif kind == "stop_side":
        d["stop"] = draw(st.floats(1.0852, 1.0852 + BAND * 0.9))
    elif kind == "target_side":
        d["target"] = draw(st.floats(1.0852 - BAND * 0.9, 1.0852))
    elif kind == "band":
        d[draw(st.sampled_from(["entry", "stop", "target"]))] = draw(_far_price)
        if d["stop"] < d["entry"] < d["target"] and all(
                abs(d[k] - 1.0852) <= BAND for k in ("entry", "stop", "target")):
            d["target"] = 1.0852 + BAND * 2  # the draw landed inside: push it out
    elif kind == "non_positive":
        d[draw(st.sampled_from(["entry", "stop", "target"]))] = draw(st.floats(-1e6, 0))
    elif kind == "tag":
        d["tags"] = [*draw(st.lists(st.just("bos_bullish"), max_size=2)), draw(_bad_tag)]
    elif kind == "rationale":
        d["rationale"] = draw(st.sampled_from(["", "x" * 2001]))
    elif kind == "cut":
        full = _dump(d)
        return Output(full[:draw(st.integers(0, len(full) - 1))])
    elif kind == "prose":
        return Output(draw(st.sampled_from(["Here is my answer: ", "I think "])) + _dump(d))
    elif kind == "not_object":
        return Output(json.dumps(draw(st.one_of(st.lists(st.integers(), max_size=3),
                                                st.integers(), st.text(max_size=5)))))
    elif kind == "null_levels":
        d[draw(st.sampled_from(["entry", "stop", "target"]))] = None
    elif kind == "truncated_flag":
        return Output(_dump(d), truncated=True)  # valid JSON, but the model hit its limit
    return Output(json.dumps(d, allow_nan=True))


# --------------------------------------------------------------------------- the runs


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[Ensemble, ScriptedClient]]:
    client = ScriptedClient()
    cfg = EnsembleConfig(
        providers=(ProviderConfig(name="llm", kind="openai", model="scripted",
                                  base_url="http://127.0.0.1:9/v1"),),
        routing=(RouteRule(request="research"),), prompts_dir=ROOT / "config" / "prompts")
    ens = build_ensemble(cfg, secrets={}, params_hash="p",
                         client_factory=lambda _cfg, _key: client)
    # The scripted client answers instantly: run it inline to spend the time budget on
    # outputs rather than thread hops (the pooled path is covered by the other tests).
    ens.members[0].inline = True
    yield ens, client
    ens.close()


# Batches of outputs per example: thousands of outputs at a fraction of the per-example
# overhead of hypothesis (it still shrinks a failing batch to its failing output).
FAST = dict(deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
SEEN: dict[str, int] = {}


@settings(max_examples=250, **FAST)
@given(outs=st.lists(broken_answers(), min_size=8, max_size=8))
def test_malformed_outputs_never_vote(scripted: tuple[Ensemble, ScriptedClient],
                                      outs: list[Output]) -> None:
    ens, client = scripted
    for out in outs:
        client.next = out
        d = ens.evaluate(PROP, SNAP)
        assert d.direction is Direction.FLAT and d.voters == 0 and d.confidence == 0.0
        assert d.agreement == 0
        (call,) = d.calls
        assert call.outcome is CallOutcome.INVALID and call.abstained
        assert call.reason and call.reason.startswith("invalid: ") and len(call.reason) > 9
        assert call.raw_text == out.text
        (signal,) = d.signals
        assert signal.abstained and signal.abstain_reason == call.reason
        head = call.reason[9:].split(":")[0].split(" ")[0]
        SEEN[head] = SEEN.get(head, 0) + 1


def test_the_malformed_run_covered_many_rejection_reasons() -> None:
    if not SEEN:
        pytest.skip("runs after test_malformed_outputs_never_vote")
    assert sum(SEEN.values()) >= 2000, SEEN
    assert {"schema", "names", "stop", "target", "entry", "not", "empty"} <= set(SEEN) or \
        len(SEEN) >= 8, SEEN


_ARBITRARY = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=8),
                 lambda c: st.lists(c, max_size=3)
                 | st.dictionaries(st.text(max_size=8), c, max_size=4),
                 max_leaves=12).map(json.dumps))


@settings(max_examples=100, **FAST)
@given(texts=st.lists(_ARBITRARY, min_size=8, max_size=8))
def test_arbitrary_text_never_raises_and_is_reasoned(texts: list[str]) -> None:
    for text in texts:
        for stage in ("research", "risk", "execution"):
            checked = validate_answer(stage, text, PROP, SNAP, price_band_atr=5.0)
            assert checked.output is None
            assert checked.reason


def test_the_valid_answer_the_mutations_start_from_is_valid() -> None:
    assert validate_answer("research", json.dumps(VALID), PROP, SNAP,
                           price_band_atr=5.0).ok


@pytest.fixture(scope="module")
def http_ensemble() -> Iterator[tuple[Ensemble, FakeOpenAIServer]]:
    server = FakeOpenAIServer(api_key="k").start()
    cfg = EnsembleConfig(
        providers=(ProviderConfig(name="gpt", kind="openai", model="gpt-test",
                                  base_url=server.base_url),),
        routing=(RouteRule(request="research"),), prompts_dir=ROOT / "config" / "prompts")
    ens = build_ensemble(cfg, secrets={"openai_api_key": SecretStr("k")}, params_hash="p")
    yield ens, server
    ens.close()
    server.close()


@settings(max_examples=80, **FAST)
@given(out=broken_answers())
def test_malformed_outputs_through_the_openai_sdk(http_ensemble: tuple[Ensemble,
                                                                       FakeOpenAIServer],
                                                  out: Output) -> None:
    ens, server = http_ensemble
    server.push(Reply(out.text, truncated=out.truncated))
    d = ens.evaluate(PROP, SNAP)
    assert d.direction is Direction.FLAT and d.voters == 0
    (call,) = d.calls
    assert call.outcome is CallOutcome.INVALID and call.reason
    assert call.raw_text == out.text
