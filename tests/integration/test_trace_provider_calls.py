"""`dta trace` shows each provider's call behind an order (issue 16, defect 6): prompt
version and template hash, tokens, cost, outcome and latency, read from ``provider_calls``,
which now keeps the template's content hash and whether the answer was replayed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.llm_servers import FakeOpenAIServer, stage_responder
from support.daemon_helpers import replay
from support.samples import write_sample_head
from typer.testing import CliRunner

from executor.journal.store import Journal
from runbooks.cli import app

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-trace-test-0123456789"


@pytest.fixture
def gpt() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(stage_responder(agree=True, confidence=0.8), api_key=KEY) as server:
        yield server


def test_trace_shows_each_provider_call(sqlite_url: str, tmp_path: Path,
                                        gpt: FakeOpenAIServer) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 400)
    ensemble = {"prompts_dir": str(ROOT / "config" / "prompts"), "providers": [
        {"name": "structure", "kind": "structure", "weight": 1.0},
        {"name": "gpt", "kind": "openai", "model": "gpt-trace", "weight": 1.0,
         "base_url": gpt.base_url, "timeout_s": 10,
         "price_in_per_1k": 0.01, "price_out_per_1k": 0.03}]}
    summary = replay(sqlite_url, data, openai_api_key=KEY, ensemble=ensemble)
    assert sum(summary["orders"].values()) > 0, summary
    j = Journal.open(sqlite_url)
    try:
        coid = j.orders.all()[0].client_order_id
    finally:
        j.close()
    runner = CliRunner()
    args = ["trace", coid, "--config", str(ROOT / "config/dta.example.toml"),
            "--journal-url", sqlite_url]
    data_json = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    calls = {c["provider"]: c for c in data_json["provider_calls"]}
    assert set(calls) >= {"structure", "gpt"}
    g = calls["gpt"]
    assert g["template_id"] and g["template_version"] and g["template_hash"]
    assert g["tokens_in"] > 0 and g["tokens_out"] > 0 and g["cost"] > 0
    assert g["outcome"] == "ok" and g["replayed"] is False and g["latency_ms"] > 0
    text = runner.invoke(app, args).stdout
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("call") and "gpt" in ln)
    assert g["template_hash"][:12] in line and f"v{g['template_version']}" in line
    assert f"tokens {g['tokens_in']}/{g['tokens_out']}" in line
