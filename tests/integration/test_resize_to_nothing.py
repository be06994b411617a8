"""A risk reviewer's resize to a sliver is a veto, not an order (issue 16, defect 4),
through the real OpenAI SDK against the loopback server: the model answers the risk stage
``{"action": "resize", "size_factor": 1e-9}``, which used to round to 0.0 lots, pass every
guardrail and reach the broker. The daemon rounds the volume down to the venue's step
before the checks; below the venue's minimum the ``order_volume`` check vetoes, with why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import Behaviour, FakeOpenAIServer, Reply, prompt_input, stage_responder
from sqlalchemy import select
from support.daemon_helpers import replay
from support.samples import write_sample_head

from executor.journal.models import OrderRow, VerdictRow
from executor.journal.store import Journal

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-resize-test-0123456789"


@pytest.fixture
def sliver_reviewer() -> Iterator[FakeOpenAIServer]:
    agree = stage_responder(agree=True, confidence=0.8)

    def respond(body: dict[str, Any]) -> Behaviour:
        inp = prompt_input(body)
        if inp is not None and inp.get("stage") == "risk":
            return Reply(json.dumps({"action": "resize", "size_factor": 1e-9,
                                     "reason": "size it down to almost nothing"}))
        return agree(body)

    with FakeOpenAIServer(respond, api_key=KEY) as server:
        yield server


def test_a_resize_to_a_sliver_is_vetoed_not_sent(sqlite_url: str, tmp_path: Path,
                                                 sliver_reviewer: FakeOpenAIServer) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 400)
    ensemble = {"prompts_dir": str(ROOT / "config" / "prompts"), "deadline_ms": 5000,
                "providers": [
                    {"name": "structure", "kind": "structure", "weight": 1.0},
                    {"name": "gpt", "kind": "openai", "model": "gpt-risk", "weight": 1.0,
                     "base_url": sliver_reviewer.base_url, "timeout_s": 10,
                     "stages": ["research", "risk"]}],
                "routing": [{"request": "research"},
                            {"request": "risk", "classes": ["reasoning"]}]}
    summary = replay(sqlite_url, data, openai_api_key=KEY, ensemble=ensemble,
                     paper={"volume_step": 0.01, "volume_min": 0.01})
    assert summary["decisions"] > 0
    assert summary["vetoes"].get("order_volume", 0) == summary["decisions"], summary
    j = Journal.open(sqlite_url)
    try:
        orders = list(j.uow.session.scalars(select(OrderRow)))
        reasons = [c["reason"] for v in j.uow.session.scalars(select(VerdictRow))
                   for c in (v.checks or []) if c["name"] == "order_volume"]
    finally:
        j.close()
    assert orders == []  # nothing reached the broker
    assert reasons and all("leaves nothing to send" in r for r in reasons), reasons[:3]
