"""Scoring, the SMC-rules voter and the deterministic personas, without any network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from support.builders import (
    a_bar,
    a_proposal,
    a_signal,
    a_snapshot,
    a_structure_break,
    a_sweep,
    an_order_block,
)

from domain import (
    BreakKind,
    Direction,
    LiquiditySweep,
    MarketSnapshot,
    OrderBlock,
    Proposal,
    Signal,
    StructureBreak,
    SwingKind,
    Trend,
)
from ensemble.config import EnsembleConfig, ScoringConfig
from ensemble.ensemble import Ensemble
from ensemble.factory import build_ensemble
from ensemble.local import MomentumProvider, SmcRulesProvider, StructureProvider
from ensemble.personas import (
    ExecutionRulesProvider,
    RiskRulesProvider,
    combine_execution,
    combine_risk,
    execution_input,
    risk_input,
)
from ensemble.schemas import (
    OUTPUT_MODELS,
    OUTPUT_SCHEMAS,
    ExecutionOutput,
    RiskOutput,
)
from ensemble.scoring import grounded_tags, score_signals, weighted_vote
from ensemble.telemetry import CallOutcome

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


def snap(*, index: int = 100, close: float = 1.0852, trend: Trend = Trend.BULLISH,
         bos: tuple[StructureBreak, ...] = (), choch: tuple[StructureBreak, ...] = (),
         blocks: tuple[OrderBlock, ...] = (), sweeps: tuple[LiquiditySweep, ...] = (),
         pd: str | None = None, spread: float = 0.00002) -> MarketSnapshot:
    bar = a_bar(symbol="EURUSD", timeframe="M15", time=T0, open=close - 0.0002, high=close + 0.0004,
                low=close - 0.0006, close=close, volume=100, spread=spread)
    return a_snapshot(symbol="EURUSD", timeframe="M15", index=index, bar=bar, bars=(bar,),
                      atr=0.0010, trend=trend, bos=bos, choch=choch, order_blocks=blocks,
                      sweeps=sweeps, premium_discount=pd)


def brk(direction: Direction, index: int, kind: BreakKind = BreakKind.BOS) -> StructureBreak:
    return a_structure_break(kind=kind, direction=direction, level=1.08, swing_index=index - 5,
                             index=index, time=T0 - timedelta(hours=1))


def prop(direction: Direction = Direction.LONG, entry: float = 1.0852, stop: float = 1.0838,
         target: float = 1.0880) -> Proposal:
    return a_proposal(strategy="smc_ob_retest", symbol="EURUSD", timeframe="M15", bar_time=T0,
                      direction=direction, entry=entry, stop=stop, target=target, reason="test",
                      tags=())


# --------------------------------------------------------------------------- scoring


def test_abstentions_are_excluded_from_numerator_and_denominator() -> None:
    w = {"a": 1.0, "b": 1.0, "c": 3.0}
    s = score_signals([a_signal(provider="a", direction=Direction.LONG, confidence=0.8),
                       a_signal(provider="b", direction=Direction.SHORT, confidence=0.0,
                                abstain_reason="timeout"),
                       a_signal(provider="c", direction=Direction.FLAT, confidence=0.0,
                                abstain_reason="invalid: schema")],
                      w, None, ScoringConfig())
    assert (s.direction, s.confidence, s.agreement, s.voters) == (Direction.LONG, 0.8, 1, 1)
    assert dict(s.contributions) == {"a": 0.8, "b": 0.0, "c": 0.0}
    assert s.chosen is not None and s.chosen.provider == "a" and s.band == "high"


def test_no_voters_is_flat_never_a_default_hold() -> None:
    s = score_signals([a_signal(provider="a", direction=Direction.FLAT, confidence=0.0,
                                abstain_reason="down")], {"a": 1}, None, ScoringConfig())
    assert (s.direction, s.confidence, s.voters, s.chosen) == (Direction.FLAT, 0.0, 0, None)


def test_matches_the_first_scorer_for_directional_votes() -> None:
    signals = [a_signal(provider="a", direction=Direction.LONG, confidence=0.7),
               a_signal(provider="b", direction=Direction.SHORT, confidence=0.9),
               a_signal(provider="c", direction=Direction.LONG, confidence=0.55),
               a_signal(provider="d", direction=Direction.SHORT, confidence=0.1,
                        abstain_reason="x")]
    w = {"a": 1.0, "b": 0.5, "c": 2.0, "d": 1.0}
    old = weighted_vote(signals, w)
    new = score_signals(signals, w, snap(), ScoringConfig())
    assert old == (new.direction, new.confidence, new.agreement, new.voters,
                   new.contributions)


def test_a_long_against_a_fresh_bearish_bos_scores_lower() -> None:
    cfg = ScoringConfig(against_structure_factor=0.5, fresh_break_bars=10)
    longs = [a_signal(provider="a", direction=Direction.LONG, confidence=0.8)]
    fresh = snap(index=100, bos=(brk(Direction.SHORT, 97),))
    stale = snap(index=100, bos=(brk(Direction.SHORT, 80),))
    aligned = snap(index=100, bos=(brk(Direction.LONG, 97),))
    assert score_signals(longs, {"a": 1}, fresh, cfg).confidence == pytest.approx(0.4)
    assert score_signals(longs, {"a": 1}, stale, cfg).confidence == pytest.approx(0.8)
    assert score_signals(longs, {"a": 1}, aligned, cfg).confidence == pytest.approx(0.8)
    shorts = [a_signal(provider="a", direction=Direction.SHORT, confidence=0.8)]
    assert score_signals(shorts, {"a": 1}, fresh, cfg).confidence == pytest.approx(0.8)


def test_ungrounded_tags_scale_a_vote_down() -> None:
    cfg = ScoringConfig(ungrounded_tag_penalty=0.5)
    s = snap(bos=(brk(Direction.LONG, 97),))
    assert "bos_bullish" in grounded_tags(s) and "trend_bullish" in grounded_tags(s)
    grounded = [a_signal(provider="a", direction=Direction.LONG, confidence=0.8,
                         tags=("bos_bullish", "trend_bullish"))]
    half = [a_signal(provider="a", direction=Direction.LONG, confidence=0.8,
                     tags=("bos_bullish", "fvg_bearish"))]
    assert score_signals(grounded, {"a": 1}, s, cfg).confidence == pytest.approx(0.8)
    assert score_signals(half, {"a": 1}, s, cfg).confidence == pytest.approx(0.6)


def test_a_valid_flat_answer_dilutes() -> None:
    s = score_signals([a_signal(provider="a", direction=Direction.LONG, confidence=0.8),
                       a_signal(provider="b", direction=Direction.FLAT, confidence=0.9)],
                      {"a": 1, "b": 1}, None, ScoringConfig())
    assert (s.direction, s.confidence, s.agreement, s.voters) == (Direction.LONG, 0.4, 1, 2)


# --------------------------------------------------------------------------- legacy API


def test_legacy_constructor_and_fail_closed_providers() -> None:
    class Boom:
        name = "boom"

        def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Signal:
            raise RuntimeError("kaput")

    class Liar:
        name = "liar"

        def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Signal:
            return a_signal(provider="someone_else", direction=Direction.LONG, confidence=1.5)

    ens = Ensemble([StructureProvider("structure"), Boom(), Liar()],
                   {"structure": 1.0, "boom": 1.0, "liar": 1.0}, "hash")
    d = ens.evaluate(prop(), snap(bos=(brk(Direction.LONG, 99),)))
    assert d.params_hash == "hash" and d.provider_mix == ("structure", "boom", "liar")
    assert d.direction is Direction.LONG and d.voters == 1
    reasons = {s.provider: s.abstain_reason for s in d.signals}
    assert reasons["boom"] == "error: RuntimeError: kaput"
    assert reasons["liar"] == ("invalid signal: confidence outside [0, 1] or wrong "
                               "provider name")
    outcomes = {c.provider: c.outcome for c in d.calls}
    assert outcomes == {"structure": CallOutcome.OK, "boom": CallOutcome.ERROR,
                        "liar": CallOutcome.INVALID}
    with pytest.raises(ValueError, match="unique"):
        Ensemble([StructureProvider("x"), MomentumProvider("x")], {}, "h")


def test_default_config_is_todays_ensemble() -> None:
    cfg = EnsembleConfig()
    assert [(p.name, p.kind, p.weight) for p in cfg.providers] == [("structure", "structure",
                                                                     1.0)]
    ens = build_ensemble(cfg, secrets={}, params_hash="h")
    old = Ensemble([StructureProvider("structure")], {"structure": 1.0}, "h")
    s = snap(bos=(brk(Direction.LONG, 99),), pd="discount")
    a, b = ens.evaluate(prop(), s), old.evaluate(prop(), s)
    assert (a.direction, a.confidence, a.agreement, a.voters, a.contributions) == \
        (b.direction, b.confidence, b.agreement, b.voters, b.contributions)
    assert not any(m.needs_payload for m in ens.members) and ens._pool is None


# --------------------------------------------------------------------------- SMC rules


def test_smc_rules_reads_breaks_blocks_and_sweeps() -> None:
    p = SmcRulesProvider("smc")
    block = an_order_block(direction=Direction.LONG, top=1.0856, bottom=1.0845, index=95,
                           known_index=97)
    sweep = a_sweep(side=SwingKind.LOW, level=1.0840, pool_index=90, index=98, time=T0)
    s = snap(choch=(brk(Direction.LONG, 97, BreakKind.CHOCH),), blocks=(block,),
             sweeps=(sweep,), pd="discount")
    yes = p.evaluate(prop(), s)
    assert yes.direction is Direction.LONG and yes.confidence == pytest.approx(1.0)
    assert set(yes.tags) >= {"choch_bullish", "order_block_bullish",
                             "liquidity_sweep_sellside", "discount"}
    against = snap(bos=(brk(Direction.SHORT, 98),), pd="premium",
                   sweeps=(a_sweep(side=SwingKind.HIGH, level=1.0860, pool_index=90, index=99,
                                   time=T0),))
    no = p.evaluate(prop(), against)
    assert no.direction is Direction.SHORT and not no.abstained
    mixed = p.evaluate(prop(), snap())
    assert mixed.abstained and "mixed" in (mixed.abstain_reason or "")


# --------------------------------------------------------------------------- personas


def test_risk_rules() -> None:
    r = RiskRulesProvider()
    s = snap()
    approve = r.answer(risk_input(prop(), s, Direction.LONG, 0.8, 2, 2))
    assert approve.action == "approve" and approve.size_factor == 1.0
    resize = r.answer(risk_input(prop(), s, Direction.LONG, 0.45, 2, 3))
    assert resize.action == "resize" and resize.size_factor == pytest.approx(0.75)
    weak = r.answer(risk_input(prop(), s, Direction.LONG, 0.2, 1, 3))
    assert weak.action == "veto" and "confidence" in weak.reason
    far = r.answer(risk_input(prop(stop=1.0780), s, Direction.LONG, 0.9, 2, 2))
    assert far.action == "veto" and "ATR" in far.reason
    opposed = r.answer(risk_input(prop(), s, Direction.SHORT, 0.9, 2, 2))
    assert opposed.action == "veto"


def test_execution_rules() -> None:
    e = ExecutionRulesProvider()
    ok = e.answer(execution_input(prop(), snap(), 1.0))
    assert ok.approve and not ok.issues
    bad = e.answer(execution_input(prop(stop=1.0860, entry=1.0700), snap(spread=0.01), 1.0))
    assert not bad.approve and len(bad.issues) >= 3


def test_combining_is_conservative() -> None:
    approve = RiskOutput(action="approve", size_factor=1.0, reason="fine")
    half = RiskOutput(action="resize", size_factor=0.5, reason="moderate")
    veto = RiskOutput(action="veto", size_factor=0.0, reason="too far")
    assert combine_risk([("a", approve), ("b", half)])[:2] == ("resize", 0.5)
    assert combine_risk([("a", approve), ("b", veto), ("c", half)])[0] == "veto"
    assert combine_risk([]) == ("veto", 0.0, "no valid risk review")
    good = ExecutionOutput(approve=True, issues=(), reason="ok")
    nope = ExecutionOutput(approve=False, issues=("stop side",), reason="stop side")
    assert combine_execution([("a", good), ("b", nope)]) == ("veto", "b: stop side")
    assert combine_execution([])[0] == "veto"


def test_local_chain_vetoes_and_resizes_with_recorded_inputs() -> None:
    cfg = EnsembleConfig.model_validate({"providers": [
        {"name": "structure", "kind": "structure"},
        {"name": "risk", "kind": "risk_rules", "params": {"full_size_confidence": 0.9}},
        {"name": "exec", "kind": "execution_rules"}]})
    ens = build_ensemble(cfg, secrets={}, params_hash="h")
    s = snap(bos=(brk(Direction.LONG, 99),))
    r = ens.evaluate_detailed(prop(), s)
    assert r.vetoed_by is None and r.size_factor == pytest.approx(0.8 / 0.9, abs=1e-4)
    assert r.decision.size_factor == r.size_factor  # what the executor sizes the order by
    assert [st.stage for st in r.steps] == ["research", "risk", "execution"]
    assert [st.verdict for st in r.steps] == ["vote", "resize", "approve"]
    risk_call = next(c for c in r.decision.calls if c.stage == "risk")
    assert json.loads(risk_call.input_json or "")["consensus"]["confidence"] == 0.8
    assert r.decision.direction is Direction.LONG
    r = ens.evaluate_detailed(prop(stop=1.0700), s)  # 15 ATR stop: the risk persona vetoes
    assert r.vetoed_by == "risk" and "ATR" in (r.veto_reason or "")
    assert r.decision.direction is Direction.FLAT and r.decision.confidence == 0.0
    assert r.decision.size_factor == 0.0
    assert r.decision.voters == 1 and len(r.steps) == 2


def test_json_schemas_list_the_model_fields() -> None:
    for stage, model in OUTPUT_MODELS.items():
        schema = OUTPUT_SCHEMAS[stage]
        assert set(schema["properties"]) == set(model.model_fields) == set(schema["required"])
        assert schema["additionalProperties"] is False
