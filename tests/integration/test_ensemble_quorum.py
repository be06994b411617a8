"""A quorum of real answers (issue 16, design gap): when every LLM abstains, the local
``structure`` provider must not trade alone.

``[ensemble] quorum = { reasoning = 2 }``: at least two valid research answers from the
reasoning (LLM) class before a decision can pass; below it the decision is flat, with the
count in its reason. Driven through the real ``openai`` and ``anthropic`` SDKs against
the loopback servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import FakeAnthropicServer, FakeOpenAIServer, Reply, stage_responder
from pydantic import SecretStr, ValidationError
from support.ensemble_scene import PROP, SNAP

from domain import Direction
from ensemble.config import EnsembleConfig
from ensemble.factory import build_ensemble
from ensemble.telemetry import CallOutcome

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-quorum-0123456789"
NOT_AN_ANSWER = Reply("I would rather not say.")  # not JSON: an abstention


@pytest.fixture
def servers() -> Iterator[tuple[FakeOpenAIServer, FakeAnthropicServer]]:
    with FakeOpenAIServer(stage_responder(), api_key=KEY) as gpt, \
            FakeAnthropicServer(stage_responder(), api_key=KEY) as claude:
        yield gpt, claude


def _config(gpt: FakeOpenAIServer, claude: FakeAnthropicServer,
            **extra: Any) -> EnsembleConfig:
    return EnsembleConfig.model_validate({
        "deadline_ms": 3000, "prompts_dir": str(ROOT / "config" / "prompts"), **extra,
        "providers": [
            {"name": "structure", "kind": "structure"},
            {"name": "gpt", "kind": "openai", "model": "gpt-q", "base_url": gpt.base_url},
            {"name": "claude", "kind": "anthropic", "model": "claude-q",
             "base_url": claude.base_url}]})


SECRETS = {"openai_api_key": SecretStr(KEY), "anthropic_api_key": SecretStr(KEY)}


def test_structure_alone_does_not_pass_when_the_llms_abstain(
        servers: tuple[FakeOpenAIServer, FakeAnthropicServer]) -> None:
    gpt, claude = servers
    cfg = _config(gpt, claude, quorum={"reasoning": 2})
    with build_ensemble(cfg, secrets=SECRETS, params_hash="h") as ens:
        gpt.reset(lambda _b: NOT_AN_ANSWER)
        claude.reset(lambda _b: NOT_AN_ANSWER)
        result = ens.evaluate_detailed(PROP, SNAP)
        d = result.decision
        assert {c.provider: c.outcome for c in d.calls if c.provider != "ensemble"} == {
            "structure": CallOutcome.OK, "gpt": CallOutcome.INVALID,
            "claude": CallOutcome.INVALID}
        # Before: structure's long went through alone (no quorum setting existed).
        assert d.direction is Direction.FLAT and d.size_factor == 0.0
        assert result.vetoed_by == "quorum"
        assert result.veto_reason == ("quorum not met: 0 valid reasoning answer(s), at "
                                      "least 2 required")
        record = next(c for c in d.calls if c.provider == "ensemble")
        assert record.abstained and record.reason == result.veto_reason

        # One LLM answers: still short.
        gpt.reset(stage_responder())
        result = ens.evaluate_detailed(PROP, SNAP)
        assert result.decision.direction is Direction.FLAT
        assert result.veto_reason is not None and "1 valid reasoning" in result.veto_reason

        # Both answer: the decision passes, unchanged by the quorum.
        claude.reset(stage_responder())
        result = ens.evaluate_detailed(PROP, SNAP)
        assert result.vetoed_by is None and result.decision.direction is Direction.LONG
        assert all(c.provider != "ensemble" for c in result.decision.calls)


def test_without_a_quorum_structure_still_trades_alone(
        servers: tuple[FakeOpenAIServer, FakeAnthropicServer]) -> None:
    gpt, claude = servers
    with build_ensemble(_config(gpt, claude), secrets=SECRETS, params_hash="h") as ens:
        gpt.reset(lambda _b: NOT_AN_ANSWER)
        claude.reset(lambda _b: NOT_AN_ANSWER)
        assert ens.evaluate(PROP, SNAP).direction is Direction.LONG


@pytest.mark.parametrize("quorum, message", [
    ({"reasoning": 0}, "at least 1 valid answer"),
    ({"oracle": 2}, "reasoning"),
])
def test_a_quorum_that_makes_no_sense_does_not_load(quorum: dict[str, int],
                                                    message: str) -> None:
    with pytest.raises(ValidationError) as e:
        EnsembleConfig.model_validate({"quorum": quorum})
    assert message in str(e.value)


def test_the_quorum_is_part_of_the_parameter_set() -> None:
    assert "quorum" not in EnsembleConfig().parameter_values()  # unchanged hashes
    assert EnsembleConfig.model_validate({"quorum": {"reasoning": 2}}).parameter_values()[
        "quorum"] == {"reasoning": 2}


def test_the_daemon_vetoes_below_the_quorum_with_its_reason(
        sqlite_url: str, tmp_path: Path) -> None:
    """Through the daemon: every LLM abstains or is missing, the local providers alone
    would trade; below the quorum each decision is vetoed, and the verdict says why (not
    "no consensus")."""
    from sqlalchemy import select
    from support.daemon_helpers import replay
    from support.samples import write_sample_head

    from executor.journal.models import VerdictRow
    from executor.journal.store import Journal

    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 800)
    summary = replay(sqlite_url, data, ensemble={"quorum": {"reasoning": 1}})
    assert summary["decisions"] > 0 and not summary["orders"], summary
    j = Journal.open(sqlite_url)
    try:
        reasons = [c["reason"] for v in j.uow.session.scalars(select(VerdictRow))
                   for c in (v.checks or []) if c["name"] == "consensus"]
    finally:
        j.close()
    assert reasons and all(r.startswith("ensemble veto: quorum not met: 0 valid "
                                        "reasoning answer(s), at least 1 required")
                           for r in reasons), reasons[:3]
