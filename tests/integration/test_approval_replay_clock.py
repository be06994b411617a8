"""A replay's approval request is decided on the replay's clock (issue 16, defect 8), with
the conflict coming from an LLM through the real OpenAI SDK against the loopback server:
the model answers every research request against the strategy, each proposal is queued
for a person, and a person approving one today (years after the replay's bars) gets it
executed when the replay resumes, as the request showed it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import FakeOpenAIServer, stage_responder
from support.daemon_helpers import replay, settings_for
from support.samples import write_sample_head

from executor.approval_request import ApprovalRequest
from executor.approvals import ApprovalError, decide
from executor.journal.store import Journal

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-approval-clock-0123456789"


@pytest.fixture
def contrarian() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(stage_responder(agree=False, confidence=0.9), api_key=KEY) as s:
        yield s


def _overrides(server: FakeOpenAIServer) -> dict[str, Any]:
    return dict(
        openai_api_key=KEY,
        ensemble={"prompts_dir": str(ROOT / "config" / "prompts"), "deadline_ms": 5000,
                  "providers": [{"name": "gpt", "kind": "openai", "model": "gpt-contra",
                                 "weight": 1.0, "base_url": server.base_url,
                                 "timeout_s": 10}]},
        guardrails={"approval_ttl_seconds": 3 * 86400, "max_position_lots": 100.0,
                    "max_gross_exposure_lots": 100.0, "max_order_notional": 1e9,
                    "min_stop_atr": None, "max_spread": None, "max_daily_loss": None,
                    "daily_drawdown_halt_pct": None,
                    "consensus": {"rule": "either", "min_agreement": 1,
                                  "min_confidence": 0.0, "conflict_margin": 1.0}})


def test_a_replay_request_approved_today_executes_as_shown(
        sqlite_url: str, tmp_path: Path, contrarian: FakeOpenAIServer) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 1200)
    overrides = _overrides(contrarian)
    request = None
    for stop_after in (100, 300, 900):
        replay(sqlite_url, data, stop_after=stop_after, **overrides)
        j = Journal.open(sqlite_url)
        pending = j.approvals.all("pending")
        j.close()
        if pending:
            request = pending[-1]  # the newest: days of replay time left
            break
    assert request is not None, "the contrarian model queued nothing"
    shown = ApprovalRequest.from_payload(request.intent)
    assert shown.clock == "replay"
    j = Journal.open(sqlite_url)
    try:
        outcome = decide(j, request.id, approve=True, operator="ann", note="checked the chart",
                         now=datetime.now(UTC),  # today: years after the bars
                         feedback=settings_for(sqlite_url, **overrides)
                         .guardrails.weight_feedback)
    except ApprovalError as exc:  # before the fix: "expired", judged on the wall clock
        pytest.fail(f"a replay's request was judged on the wall clock: {exc}")
    finally:
        j.close()
    assert outcome.status == "approved"
    replay(sqlite_url, data, stop_after=5, **overrides)
    j = Journal.open(sqlite_url)
    try:
        done = j.approvals.get_approval(request.id)
        assert done is not None and done.status == "executed", done
        order = j.orders.get_order(done.client_order_id or "")
        assert order is not None
        assert (order.intent.side, order.intent.volume, order.intent.stop_loss,
                order.intent.take_profit) == (shown.side, shown.volume, shown.stop_loss,
                                              shown.take_profit)
    finally:
        j.close()
