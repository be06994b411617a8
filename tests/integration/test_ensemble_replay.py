"""Record and replay on the real sample, and the prompt library's version discipline.

Record mode runs the full persona chain over the first proposals of
config/samples/EURUSD_M15.csv (SnapshotBuilder + SmcOrderBlockRetest) against the fake
OpenAI and Anthropic servers; the servers are then shut down and two replays from the
recordings must serialize to the same bytes, and decide what the recorded run decided.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import (
    Behaviour,
    FakeAnthropicServer,
    FakeOpenAIServer,
    Reply,
    prompt_input,
    research_answer,
    stage_responder,
)
from pydantic import SecretStr
from support.builders import a_bar, a_position

from domain import MarketSnapshot, Proposal
from domain.errors import PromptLibraryError
from ensemble.config import EnsembleConfig
from ensemble.ensemble import EnsembleResult
from ensemble.factory import build_ensemble
from ensemble.personas import RiskRulesProvider
from ensemble.prompts import LOCK_NAME, PromptLibrary
from ensemble.recording import RecordingStore, request_key
from ensemble.schemas import OUTPUT_SCHEMAS, RiskInput, RiskOutput
from ensemble.serialize import decision_json
from ensemble.telemetry import CallOutcome
from strategies.logic import StrategyContext
from strategies.smc_strategy import SmcOrderBlockRetest
from strategies.snapshot import SnapshotBuilder

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"
PROMPTS = ROOT / "config" / "prompts"
N_PROPOSALS = 10
KEY = "k"


def sample_proposals(n: int = N_PROPOSALS, max_bars: int = 6000,
                     ) -> list[tuple[Proposal, MarketSnapshot]]:
    builder = SnapshotBuilder(swing_length=5, atr_period=14)
    strategy = SmcOrderBlockRetest()
    ctx = StrategyContext(a_position(symbol="EURUSD"), {})
    out: list[tuple[Proposal, MarketSnapshot]] = []
    with SAMPLE.open(newline="") as fh:
        for i, r in enumerate(csv.DictReader(fh)):
            if i >= max_bars or len(out) >= n:
                break
            bar = a_bar(symbol="EURUSD", timeframe="M15",
                        time=datetime.strptime(r["Date"], "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC),
                        open=float(r["Open"]), high=float(r["High"]), low=float(r["Low"]),
                        close=float(r["Close"]), volume=float(r["Tickvol"]),
                        spread=int(r["Spread"]) * 0.00001)
            snap = builder.update(bar)
            out.extend((p, snap) for p in strategy.on_bar(snap, ctx))
    assert len(out) >= n, "the sample's first bars yield enough proposals"
    return out[:n]


def claude_responder(body: dict[str, Any]) -> Behaviour:
    """Varies by proposal: agrees, disagrees, or hallucinates another symbol."""
    inp = prompt_input(body)
    if inp is None or inp.get("stage") != "research":
        return stage_responder()(body)
    bucket = round(inp["proposal"]["entry"] * 1e5) % 3
    if bucket == 0:
        return Reply(json.dumps(research_answer(inp, agree=False, confidence=0.55, tags=())))
    if bucket == 1:
        return Reply(json.dumps({**research_answer(inp), "symbol": "XAUUSD"}))
    return Reply(json.dumps(research_answer(inp, confidence=0.6, tags=("choch_bullish",))))


@pytest.fixture(scope="module")
def proposals() -> list[tuple[Proposal, MarketSnapshot]]:
    return sample_proposals()


@pytest.fixture
def servers() -> Iterator[tuple[FakeOpenAIServer, FakeAnthropicServer]]:
    oa = FakeOpenAIServer(stage_responder(), api_key=KEY).start()
    an = FakeAnthropicServer(claude_responder, api_key=KEY).start()
    yield oa, an
    oa.close()
    an.close()


def chain_config(oa_url: str, an_url: str, recordings: Path, mode: str,
                 prompts: Path = PROMPTS) -> EnsembleConfig:
    return EnsembleConfig.model_validate({
        "providers": [
            {"name": "gpt", "kind": "openai", "model": "gpt-test", "base_url": oa_url,
             "stages": ["research", "risk"], "price_in_per_1k": 0.25,
             "price_out_per_1k": 2.0},
            {"name": "claude", "kind": "anthropic", "model": "claude-test",
             "base_url": an_url, "price_in_per_1k": 3.0, "price_out_per_1k": 15.0},
            {"name": "structure", "kind": "structure"},
            {"name": "smc", "kind": "smc_rules", "weight": 0.5},
            {"name": "risk_rules", "kind": "risk_rules"},
            {"name": "exec_rules", "kind": "execution_rules"},
        ],
        "routing": [
            {"request": "research"},
            {"request": "risk", "classes": ["deterministic", "reasoning"]},
            {"request": "execution", "classes": ["deterministic"]},
        ],
        "deadline_ms": 5000, "mode": mode, "recordings_path": str(recordings),
        "prompts_dir": str(prompts),
    })


SECRETS = {"openai_api_key": SecretStr(KEY), "anthropic_api_key": SecretStr(KEY)}


def run(cfg: EnsembleConfig, proposals: list[tuple[Proposal, MarketSnapshot]],
        secrets: dict[str, SecretStr | None] | None = None) -> list[EnsembleResult]:
    with build_ensemble(cfg, secrets=secrets or {}, params_hash="params-1") as ens:
        return [ens.evaluate_detailed(p, s) for p, s in proposals]


def test_replay_is_byte_identical_and_reproduces_the_recorded_decisions(
        servers, proposals, tmp_path: Path) -> None:
    oa, an = servers
    rec_dir = tmp_path / "recordings"
    recorded = run(chain_config(oa.base_url, an.base_url, rec_dir, "record"), proposals,
                   SECRETS)
    llm_requests = len(oa.requests) + len(an.requests)
    assert llm_requests >= 2 * N_PROPOSALS
    store = RecordingStore(rec_dir)
    assert len(store) == llm_requests  # every answer recorded, one file each
    outcomes = {c.outcome for r in recorded for c in r.decision.calls}
    assert {CallOutcome.OK, CallOutcome.INVALID} <= outcomes  # claude hallucinates some
    assert any(r.steps[-1].stage == "execution" for r in recorded)
    oa.close()
    an.close()  # nothing may go out in replay: no servers, no keys

    replay_cfg = chain_config("http://127.0.0.1:9/v1", "http://127.0.0.1:9", rec_dir, "replay")
    first = run(replay_cfg, proposals)
    second = run(replay_cfg, proposals)
    blob1 = "\n".join(decision_json(r.decision, timing=False) for r in first).encode()
    blob2 = "\n".join(decision_json(r.decision, timing=False) for r in second).encode()
    assert blob1 == blob2
    for rec, rep in zip(recorded, first, strict=True):
        a, b = rec.decision, rep.decision
        assert (a.direction, a.confidence, a.agreement, a.voters, a.contributions) == \
            (b.direction, b.confidence, b.agreement, b.voters, b.contributions)
        assert [s.abstain_reason for s in a.signals] == [s.abstain_reason for s in b.signals]
        assert rep.vetoed_by == rec.vetoed_by and rep.size_factor == rec.size_factor
        replayed = [c for c in b.calls if c.kind in ("openai", "anthropic")]
        assert replayed and all(c.replayed for c in replayed)
        assert all(c.outcome is not CallOutcome.NO_RECORDING for c in b.calls)
        # Tokens and cost come back from the recording: replay is free but still accounted.
        assert sum(c.cost for c in b.calls) == pytest.approx(sum(c.cost for c in a.calls))


def test_missing_recording_is_an_abstention_never_an_answer(proposals, tmp_path: Path) -> None:
    cfg = chain_config("http://127.0.0.1:9/v1", "http://127.0.0.1:9", tmp_path / "empty",
                       "replay")
    (result,) = run(cfg, proposals[:1])
    llm = [c for c in result.decision.calls if c.kind in ("openai", "anthropic")]
    assert llm and all(c.outcome is CallOutcome.NO_RECORDING and c.reason == "no recording"
                       and c.raw_text is None for c in llm)
    assert {s.provider for s in result.decision.signals if s.abstained} >= {"gpt", "claude"}


def test_recorded_chain_can_be_audited_and_rerun(servers, proposals, tmp_path: Path) -> None:
    oa, an = servers
    results = run(chain_config(oa.base_url, an.base_url, tmp_path / "rec", "record"),
                  proposals[:4], SECRETS)
    library = PromptLibrary.load(PROMPTS)
    reran = 0
    for r in results:
        assert r.steps[0].stage == "research"
        for call in r.decision.calls:
            if call.stage != "risk":
                continue
            assert call.input_json is not None
            inp = RiskInput.model_validate_json(call.input_json)  # the recorded input
            if call.provider == "risk_rules":
                again = RiskRulesProvider("risk_rules").answer(inp)
                assert again == RiskOutput.model_validate_json(call.output_json or "")
                reran += 1
            else:  # an LLM step: the same input renders the same prompt, the same key
                t = library.get(f"{call.template_id}@{call.template_version}")
                from ensemble.members import _GLOSSARY, _TAGS
                prompt = t.render({"input_json": call.input_json, "tags": _TAGS,
                                   "glossary": _GLOSSARY, "symbol": inp.symbol,
                                   "schema_json": json.dumps(OUTPUT_SCHEMAS["risk"], indent=2)})
                assert request_key(call.provider, call.model, t.ref, t.sha256,
                                   prompt.text) == call.request_key
                assert RecordingStore(tmp_path / "rec").get(call.request_key or "")
                reran += 1
    assert reran >= 2


# --------------------------------------------------------------------------- prompt library


@pytest.fixture
def prompts_copy(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(PROMPTS, target)
    return target


def test_shipped_templates_are_pinned() -> None:
    lib = PromptLibrary.load(PROMPTS, require_lock=True)
    assert {t.ref for t in lib.templates} == {"research@1", "risk@1", "execution@1"}
    assert lib.unlocked == ()


def test_changed_template_without_version_bump_is_detected(prompts_copy: Path) -> None:
    path = prompts_copy / "research.v1.md"
    path.write_text(path.read_text().replace("research analyst", "senior research analyst"))
    with pytest.raises(PromptLibraryError, match="changed without a version bump"):
        PromptLibrary.load(prompts_copy)
    cfg = chain_config("http://127.0.0.1:9/v1", "http://127.0.0.1:9", prompts_copy / "r",
                       "replay", prompts=prompts_copy)
    with pytest.raises(PromptLibraryError, match="research@1"):
        build_ensemble(cfg, secrets={}, params_hash="p")


def test_bumped_template_loads_unpinned_and_misses_old_recordings(
        prompts_copy: Path, proposals, servers, tmp_path: Path) -> None:
    oa, an = servers
    rec = tmp_path / "rec"
    run(chain_config(oa.base_url, an.base_url, rec, "record", prompts_copy), proposals[:1],
        SECRETS)
    old = prompts_copy / "research.v1.md"
    new = prompts_copy / "research.v2.md"
    new.write_text(old.read_text().replace("version: 1", "version: 2")
                   .replace("research analyst", "senior research analyst"))
    old.unlink()
    lib = PromptLibrary.load(prompts_copy)
    assert lib.unlocked == ("research@2",) and lib.get("research").version == "2"
    (result,) = run(chain_config("x", "y", rec, "replay", prompts_copy), proposals[:1])
    research = [c for c in result.decision.calls
                if c.stage == "research" and c.kind in ("openai", "anthropic")]
    assert research and all(c.outcome is CallOutcome.NO_RECORDING for c in research)
    assert all(c.template_version == "2" for c in research)
    lib.write_lock()
    pinned = json.loads((prompts_copy / LOCK_NAME).read_text())
    assert "research@2" in pinned and "research@1" in pinned  # released pins are kept


@pytest.mark.parametrize(("text", "match"), [
    ("no front matter", "front matter"),
    ("---\nid: x\nversion: 1\n---\nbody", "stage"),
    ("---\nid: x\nversion: 1\nstage: research\n---\n<!-- system -->\nonly system",
     "sections"),
    ("---\nid: Bad Id\nversion: 1\nstage: risk\n---\n<!-- system -->\na\n<!-- user -->\nb",
     "lowercase"),
])
def test_malformed_templates_are_rejected(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "t.md").write_text(text)
    with pytest.raises(PromptLibraryError, match=match):
        PromptLibrary.load(tmp_path)


def test_render_requires_every_placeholder() -> None:
    t = PromptLibrary.load(PROMPTS).get("research")
    with pytest.raises(PromptLibraryError, match="placeholder"):
        t.render({"input_json": "{}"})
