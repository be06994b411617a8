"""Telemetry sinks, the capability matrix, configuration checks and lazy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError
from support.builders import a_decision, a_proposal, a_signal
from support.ensemble_scene import SNAP, T0

from domain import Direction, Proposal
from ensemble import (
    CallOutcome,
    EnsembleConfig,
    EnsembleConfigError,
    InMemorySink,
    ProviderCall,
    TradeOutcome,
    build_ensemble,
    capability_matrix,
    decision_key,
)
from ensemble.ensemble import Ensemble
from ensemble.local import StructureProvider
from ensemble.matrix import percentile
from ensemble.telemetry import MultiSink, PrometheusSink, call_cost

ROOT = Path(__file__).resolve().parents[2]


def prop(minute: int = 0) -> Proposal:
    return a_proposal(strategy="s", symbol="EURUSD", timeframe="M15",
                      bar_time=T0.replace(minute=minute), direction=Direction.LONG, entry=1.0852,
                      stop=1.0838, target=1.0880, reason="r")


def call(provider: str, outcome: CallOutcome, latency: float = 10.0, *, key: str = "k",
         tokens: tuple[int, int] = (0, 0), cost: float = 0.0,
         abstained: bool | None = None) -> ProviderCall:
    return ProviderCall(key, "research", provider, "reasoning", "openai", f"{provider}-m",
                        outcome, abstained=(outcome is not CallOutcome.OK
                                            if abstained is None else abstained),
                        latency_ms=latency, tokens_in=tokens[0], tokens_out=tokens[1],
                        cost=cost)


def test_cost_from_pinned_prices() -> None:
    assert call_cost(2000, 500, 0.5, 1.5) == pytest.approx(1.0 + 0.75)


def test_prometheus_sink_counts_calls_tokens_cost_and_latency() -> None:
    reg = CollectorRegistry()
    mem = InMemorySink()
    sink = MultiSink([mem, PrometheusSink(reg)])
    sink.record_call(call("gpt", CallOutcome.OK, 120.0, tokens=(1000, 200), cost=0.8))
    sink.record_call(call("gpt", CallOutcome.INVALID, 80.0))
    sink.record_call(call("gpt", CallOutcome.BREAKER_OPEN, 0.0))
    v = reg.get_sample_value
    labels = {"provider": "gpt", "model": "gpt-m", "stage": "research"}
    assert v("dta_provider_calls_total", {**labels, "outcome": "ok"}) == 1
    assert v("dta_provider_calls_total", {**labels, "outcome": "breaker_open"}) == 1
    assert v("dta_provider_tokens_total", {"provider": "gpt", "model": "gpt-m",
                                           "direction": "in"}) == 1000
    assert v("dta_provider_cost_total", {"provider": "gpt", "model": "gpt-m"}) == 0.8
    assert v("dta_provider_latency_seconds_count", {"provider": "gpt", "model": "gpt-m"}) == 2
    assert v("dta_provider_abstentions_total", {"provider": "gpt", "stage": "research"}) == 2
    assert len(mem.calls) == 3


def test_a_failing_sink_never_fails_a_decision() -> None:
    class Broken:
        def record_call(self, call: ProviderCall) -> None:
            raise OSError("disk full")

    ens = Ensemble([StructureProvider("structure")], {"structure": 1.0}, "h",
                   telemetry=Broken())
    d = ens.evaluate(prop(), SNAP)
    assert d.direction is Direction.LONG and ens.sink_errors == 1


def test_an_ensemble_error_is_a_flat_decision_with_a_reason(monkeypatch) -> None:
    sink = InMemorySink()
    ens = Ensemble([StructureProvider("structure")], {"structure": 1.0}, "h", telemetry=sink)
    monkeypatch.setattr("ensemble.ensemble.score_signals",
                        lambda *a, **k: (_ for _ in ()).throw(ZeroDivisionError("bug")))
    r = ens.evaluate_detailed(prop(), SNAP)
    assert r.decision.direction is Direction.FLAT and r.decision.voters == 0
    (c,) = r.decision.calls
    assert c.provider == "ensemble" and c.outcome is CallOutcome.ERROR
    assert "ZeroDivisionError: bug" in (c.reason or "") and sink.calls == (c,)


def test_capability_matrix() -> None:
    k1, k2, k3 = decision_key(prop(0)), decision_key(prop(15)), decision_key(prop(30))
    calls = [
        call("a", CallOutcome.OK, 100, key=k1, tokens=(1000, 100), cost=0.5),
        call("a", CallOutcome.OK, 200, key=k2, tokens=(1000, 100), cost=0.5),
        call("a", CallOutcome.TIMEOUT, 900, key=k3),
        call("a", CallOutcome.BREAKER_OPEN, 0, key=k3),
        call("b", CallOutcome.OK, 50, key=k1),
        call("b", CallOutcome.INVALID, 60, key=k2),
        call("b", CallOutcome.OK, 40, key=k3, abstained=True),
    ]

    decisions = [
        a_decision(proposal=prop(0), direction=Direction.LONG, confidence=0.7, agreement=1,
                   voters=1, contributions=(), params_hash="h",
                   signals=(a_signal(provider="a", direction=Direction.LONG, confidence=0.8),
                            a_signal(provider="b", direction=Direction.SHORT, confidence=0.6))),
        a_decision(proposal=prop(15), direction=Direction.LONG, confidence=0.7, agreement=1,
                   voters=1, contributions=(), params_hash="h",
                   signals=(a_signal(provider="a", direction=Direction.LONG, confidence=0.8),
                            a_signal(provider="b", direction=Direction.FLAT, confidence=0,
                                     abstain_reason="x"))),
    ]
    outcomes = [TradeOutcome(k1, -12.0), TradeOutcome(k2, 30.0)]
    rows = {r.provider: r for r in capability_matrix(calls, decisions, outcomes)}
    a, b = rows["a"], rows["b"]
    assert (a.calls, a.attempted) == (4, 3)
    assert a.latency_p50_ms == 200 and a.latency_p95_ms == 900
    assert a.error_rate == pytest.approx(1 / 3) and a.abstention_rate == pytest.approx(0.5)
    assert a.cost == 1.0 and a.cost_per_1k_tokens == pytest.approx(1.0 / 2200 * 1000)
    assert a.agreement_rate == 1.0 and a.agreement_n == 2
    assert a.hit_rate == 0.5 and a.hit_n == 2  # long lost on k1, long won on k2
    assert b.agreement_rate == 0.0 and b.agreement_n == 1
    assert b.hit_rate == 1.0 and b.hit_n == 1  # it said short on the losing long
    assert b.error_rate == 0 and b.abstention_rate == pytest.approx(2 / 3)
    assert b.cost_per_1k_tokens is None
    assert percentile([], 50) is None and percentile([3.0], 95) == 3.0
    assert set(a.to_dict()) >= {"latency_p95_ms", "hit_rate", "cost_per_1k_tokens"}


# --------------------------------------------------------------------------- configuration


def test_settings_shaped_input_and_errors_name_the_field() -> None:
    cfg = EnsembleConfig.model_validate({"providers": [
        {"name": "structure", "kind": "structure", "weight": 1.0},
        {"name": "momentum", "kind": "momentum", "weight": 0.5, "params": {"period": 20}}]})
    assert cfg.weights == {"structure": 1.0, "momentum": 0.5}
    with pytest.raises(ValidationError) as e:
        EnsembleConfig.model_validate({"providers": [{"name": "a", "kind": "oracle"}]})
    assert e.value.errors()[0]["loc"] == ("providers", 0, "kind")
    bad = [
        ({"providers": [{"name": "a", "kind": "openai"}]}, "needs a model"),
        ({"providers": [{"name": "a", "kind": "structure", "model": "x"}]}, "only apply"),
        ({"providers": [{"name": "a", "kind": "structure"}] * 2}, "unique"),
        ({"routing": [{"request": "risk", "providers": ["nope"]}]}, "unknown provider"),
        ({"routing": [{"request": "risk", "providers": ["structure"]}]}, "cannot serve"),
        ({"deadline_ms": 0}, "greater than or equal"),
        ({"surprise": 1}, "Extra inputs"),
    ]
    for data, match in bad:
        with pytest.raises(ValidationError, match=match):
            EnsembleConfig.model_validate(data)
    with pytest.raises(ValidationError):
        cfg.deadline_ms = 1  # type: ignore[misc]  # frozen


def test_secret_is_masked_in_dumps_and_required_at_build() -> None:
    cfg = EnsembleConfig.model_validate({
        "providers": [{"name": "claude", "kind": "anthropic", "model": "m",
                       "api_key": "sk-inline-secret"}],
        "prompts_dir": str(ROOT / "config" / "prompts")})
    assert "sk-inline-secret" not in cfg.model_dump_json()
    no_key = cfg.model_copy(update={"providers": (
        cfg.providers[0].model_copy(update={"api_key": None}),)})
    with pytest.raises(EnsembleConfigError, match="anthropic_api_key"):
        build_ensemble(no_key, secrets={"anthropic_api_key": None}, params_hash="h")
    with pytest.raises(EnsembleConfigError, match="params"):
        build_ensemble(EnsembleConfig.model_validate({"providers": [
            {"name": "m", "kind": "momentum", "params": {"period": 1}}]}),
            secrets={}, params_hash="h")
    made: list[SecretStr | None] = []

    def fake_factory(pcfg, key):  # type: ignore[no-untyped-def]
        made.append(key)
        return object()

    build_ensemble(cfg, secrets={}, params_hash="h", client_factory=fake_factory)
    assert made and made[0] is not None and made[0].get_secret_value() == "sk-inline-secret"


def test_sdks_are_imported_lazily() -> None:
    code = ("import sys, ensemble, ensemble.factory, ensemble.telemetry; "
            "print(sorted(m for m in ('openai', 'anthropic', 'prometheus_client') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_parameter_values_and_weight_updates() -> None:
    cfg = EnsembleConfig.model_validate({"providers": [
        {"name": "structure", "kind": "structure"},
        {"name": "gpt", "kind": "openai", "model": "gpt-x", "api_key": "sk-secret"}]})
    values = cfg.parameter_values()
    assert values["providers"]["gpt"]["model"] == "gpt-x"
    assert values["scoring"]["against_structure_factor"] == 1.0
    assert "sk-secret" not in repr(values)
    heavier = cfg.with_weights({"gpt": 2.5})
    assert heavier.weights == {"structure": 1.0, "gpt": 2.5} and cfg.weights["gpt"] == 1.0
    with pytest.raises(ValueError, match="unknown"):
        cfg.with_weights({"nope": 1.0})
