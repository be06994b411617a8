"""Bad answers from a model provider through the whole daemon: hypothesis-generated
malformed outputs never crash the cycle and never count as a vote (``hostile_feed.py``
runs the daemon on bars of the real EURUSD sample).

The daemon runs with a model provider beside the two local voters, its client scripted to
answer the generated outputs (tests/integration/test_ensemble_malformed.py runs thousands of them
through the ensemble alone; here they go through the cycle, the journal and the
guardrails). The bad input, each invalid whatever the proposal it answers: free text and
binary garbage, JSON that is not an object, missing or wrong-typed fields, a confidence
out of range, NaN/inf prices, an unknown direction or symbol, extra keys, a cut-off body,
prose around the JSON, an answer truncated at the token limit, and a lone surrogate (half
an emoji, raw or JSON-escaped) anywhere in any of them.

Losing nothing means: every answer is journaled verbatim (a lone surrogate as its
backslash escape) as an invalid abstention, one provider-call row per answer, and the run
proposes, decides, orders and fills exactly what a run whose model answers ``not json``
every time does: a malformed answer is an abstention, never a vote and never a lost cycle.

Found while writing this and fixed: a model answer with a lone surrogate crashed the cycle
when its raw text was journaled (pinned by the last test).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

import pytest
from hostile_feed import (
    FAST,
    MAX_SLOTS,
    STREAMS,
    Facts,
    Plan,
    Scenario,
    build_scenario,
    productive_segments,
    run_daemon,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.daemon_helpers import ROOT, settings_for

from ensemble.base import Completion
from ensemble.factory import build_ensemble
from executor.settings import Settings

LLM = "gpt"
TEMPLATE: dict[str, Any] = {"symbol": "EURUSD", "direction": "long", "confidence": 0.7,
                            "entry": 1.0, "stop": 0.99, "target": 1.02,
                            "tags": ["order_block_bullish"], "rationale": "retest"}


@dataclass(frozen=True)
class Output:
    text: str
    truncated: bool = False
    kind: str = ""


class ScriptedModel:
    """An in-process ``ModelClient`` answering the scripted outputs in turn, instantly."""

    kind = "openai"
    model = "scripted"

    def __init__(self, outputs: Sequence[Output]) -> None:
        self.outputs = list(outputs)
        self.answered: list[Output] = []

    def complete(self, prompt: Any, schema: Any, schema_name: str,
                 timeout_s: float) -> Completion:
        out = self.outputs[len(self.answered) % len(self.outputs)]
        self.answered.append(out)
        return Completion(out.text, 100, 20, truncated=out.truncated)


@cache
def llm_settings() -> Settings:
    return settings_for("sqlite://", openai_api_key="sk-bad-input-0123456789", ensemble={
        "prompts_dir": str(ROOT / "config" / "prompts"),
        "providers": [
            {"name": "structure", "kind": "structure", "weight": 1.0},
            {"name": "momentum", "kind": "momentum", "weight": 0.5, "params": {"period": 20}},
            {"name": LLM, "kind": "openai", "model": "scripted",
             "base_url": "http://127.0.0.1:9/v1"}]})


@cache
def llm_scenario() -> Scenario:
    """The bars of the provider runs: the two segments where the strategy proposes most."""
    busiest = sorted(productive_segments(), key=lambda seg: -seg[2])
    return build_scenario(Plan(slots=MAX_SLOTS, segments=(busiest[0][0], busiest[1][0])))


def run_with_model(outputs: Sequence[Output]) -> tuple[Facts, ScriptedModel]:
    model = ScriptedModel(outputs)
    with pytest.MonkeyPatch.context() as mp:  # the wiring's ensemble, our client
        mp.setattr("executor.wiring.build_ensemble_from_config", partial(
            build_ensemble, client_factory=lambda _cfg, _key: model))
        return run_daemon(llm_scenario(), settings=llm_settings()), model


@cache
def abstaining_run() -> Facts:
    return run_with_model([Output("not json")])[0]


def _json(d: Any) -> str:
    return json.dumps(d, allow_nan=True)


def _journaled(text: str) -> str:
    """How the journal keeps a model's text: verbatim, but for a lone surrogate (no driver
    can encode one), which becomes its backslash escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _insert(draw: st.DrawFn, text: str, piece: str) -> str:
    at = draw(st.integers(0, len(text)))
    return text[:at] + piece + text[at:]


@st.composite
def surrogate_outputs(draw: st.DrawFn) -> Output:
    """An answer carrying a lone surrogate: half an emoji, which the SDK decodes from a
    JSON-escaped one in the API's body. It alone makes an answer unusable: a well-formed
    opinion with one in any of its strings (raw, or JSON-escaped in the text), free text
    with one, or another malformed answer with one added anywhere. The flat opinion is
    otherwise valid whenever the proposal is for EURUSD, so it would count if the
    surrogate were dropped or tolerated."""
    half = draw(st.integers(0xD800, 0xDFFF).map(chr))
    how = draw(st.sampled_from(["raw", "escaped", "text", "malformed"]))
    if how in ("raw", "escaped"):  # an opinion, valid but for the surrogate (when flat)
        d: dict[str, Any] = {**TEMPLATE, "tags": list(TEMPLATE["tags"]),
                             "direction": draw(st.sampled_from(["flat", "long"]))}
        key = draw(st.sampled_from(["symbol", "direction", "rationale", "tags", "key"]))
        if key == "tags":
            d["tags"][0] = _insert(draw, d["tags"][0], half)
        elif key == "key":
            d[_insert(draw, "rationale", half)] = d.pop("rationale")
        else:
            d[key] = _insert(draw, d[key], half)
        text = json.dumps(d, allow_nan=True, ensure_ascii=how == "escaped")
    elif how == "text":
        text = _insert(draw, draw(st.text(max_size=80)), half)
    else:
        text = _insert(draw, draw(malformed_outputs(MALFORMED_KINDS)).text, half)
    return Output(text, kind="surrogate")


MALFORMED_KINDS = ("text", "not_object", "missing", "wrong_type", "confidence", "nan",
                   "direction", "symbol", "extra", "cut", "prose", "truncated")


@st.composite
def malformed_outputs(draw: st.DrawFn,  # a surrogate twice as often: it has four forms
                      kinds: Sequence[str] = (*MALFORMED_KINDS, "surrogate", "surrogate"),
                      ) -> Output:
    kind = draw(st.sampled_from(kinds))
    if kind == "surrogate":
        return draw(surrogate_outputs())
    d = dict(TEMPLATE)
    if kind == "text":
        text = draw(st.one_of(st.text(max_size=300),
                              st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
        return Output("x" + text if text.lstrip().startswith(("{", "[")) else text)
    if kind == "not_object":
        return Output(_json(draw(st.one_of(st.none(), st.booleans(), st.floats(),
                                           st.text(max_size=20),
                                           st.lists(st.integers(), max_size=4)))))
    if kind == "missing":
        for key in draw(st.sets(st.sampled_from(sorted(d)), min_size=1)):
            del d[key]
    elif kind == "wrong_type":
        key = draw(st.sampled_from(sorted(d)))
        d[key] = draw(st.one_of(st.dictionaries(st.text(max_size=3), st.integers(),
                                                max_size=2),
                                st.just([[1]]), st.booleans()))
    elif kind == "confidence":
        d["confidence"] = draw(st.one_of(st.floats(1.0001, 1e300), st.floats(-1e300, -1e-9)))
    elif kind == "nan":
        d[draw(st.sampled_from(["confidence", "entry", "stop", "target"]))] = draw(
            st.sampled_from([math.nan, math.inf, -math.inf]))
    elif kind == "direction":
        d["direction"] = draw(st.text(max_size=8).filter(
            lambda t: t not in ("long", "short", "flat")))
    elif kind == "symbol":
        d["symbol"] = draw(st.text(min_size=1, max_size=12).filter(
            lambda t: t.strip().upper() not in {s for s, _tf in STREAMS}))
    elif kind == "extra":
        d[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in TEMPLATE))] = 1
    elif kind == "cut":
        full = _json(d)
        return Output(full[:draw(st.integers(0, len(full) - 1))])
    elif kind == "prose":
        return Output(draw(st.sampled_from(["Here is my answer: ", "Sure! ", "```json\n"]))
                      + _json(d))
    elif kind == "truncated":
        return Output(_json(d), truncated=True)  # valid JSON, but the model hit its limit
    return Output(_json(d))


SEEN_LLM: Counter[str] = Counter()

_HALF = "\ud83d"  # half an emoji
_FLAT = {**TEMPLATE, "direction": "flat"}
# Every form of a lone surrogate, always run: how many the generated examples draw
# depends on hypothesis' choices, which shift with the tests run before this one.
SURROGATE_FORMS = [
    Output(json.dumps({**_FLAT, "rationale": "retest" + _HALF}), kind="surrogate"),
    Output(json.dumps({**_FLAT, "symbol": _HALF + "EURUSD"}, ensure_ascii=True),
           kind="surrogate"),
    Output("I think " + _HALF + " long", kind="surrogate"),
    Output(json.dumps({**_FLAT, "confidence": 2.0})[:40] + _HALF, kind="surrogate"),
    Output(json.dumps({**_FLAT, "tags": [_HALF + "order_block_bullish"]}),
           kind="surrogate"),
]


@settings(max_examples=30, **FAST)
@given(outputs=st.lists(malformed_outputs(), min_size=1, max_size=8))
@example(outputs=SURROGATE_FORMS)
@example(outputs=SURROGATE_FORMS[::-1])
def test_malformed_provider_outputs_through_the_daemon_never_trade(
        outputs: list[Output]) -> None:
    facts, model = run_with_model(outputs)
    reference = abstaining_run()
    # The model was asked, every answer journaled verbatim as an invalid abstention.
    calls = [c for c in facts.calls if c.provider == LLM]
    assert len(calls) == len(model.answered) == len(facts.decisions) > 0
    for call, out in zip(calls, model.answered, strict=True):
        assert call.outcome == "invalid" and call.abstained, (call, out)
        assert call.raw_text == _journaled(out.text) and call.error, (call, out)
    for contributions, signals in zip((d[4] for d in facts.decisions), facts.signals,
                                      strict=True):
        assert not (contributions or {}).get(LLM), contributions
        assert [s["direction"] for s in signals if s["provider"] == LLM] == ["flat"]
    # It never counted: decisions, orders and fills are those of a model that abstains.
    assert facts.proposals == reference.proposals
    assert facts.decisions == reference.decisions
    assert facts.orders == reference.orders
    assert facts.fills == reference.fills
    assert facts.sent == len(facts.orders)
    SEEN_LLM["examples"] += 1
    SEEN_LLM["outputs"] += len(calls)
    SEEN_LLM["surrogate"] += sum(out.kind == "surrogate" for out in model.answered)
    SEEN_LLM["orders"] += len(facts.orders)


def test_the_provider_run_was_not_vacuous() -> None:
    if not SEEN_LLM:
        pytest.skip("runs after test_malformed_provider_outputs_through_the_daemon_never_trade")
    assert SEEN_LLM["outputs"] >= 60 and SEEN_LLM["orders"] >= 30, SEEN_LLM
    assert SEEN_LLM["surrogate"] >= 10, SEEN_LLM


def test_a_model_answer_with_a_lone_surrogate_is_journaled_without_crashing() -> None:
    surrogate = json.loads('"half an emoji: \\ud83d"')
    facts, _model = run_with_model([Output(surrogate)])
    assert [c.outcome for c in facts.calls if c.provider == LLM] == ["invalid"] * len(
        facts.decisions)
