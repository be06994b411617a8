"""Breaker transitions are journaled, and `dta providers status` shows the breaker's real
state (issue 16, defect 5).

The breaker lives in the daemon's process; `dta providers status` runs in another and
used to guess from the last journaled call: right after the third HTTP 500 opened the
breaker, the last call was an ``error`` and it printed "closed"; it never showed
half-open. Driven here through the real daemon and the ``openai`` SDK against the
loopback server answering the documented 500 ``server_error``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import Fail, FakeOpenAIServer, stage_responder
from support.daemon_helpers import AlwaysBuy, registered, settings_for
from support.samples import write_sample_head
from typer.testing import CliRunner

from executor.journal.store import Journal
from executor.provider_state import breaker_state
from executor.wiring import build_daemon
from runbooks.cli import app
from runbooks.providers_cli import provider_rows

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-breaker-journal-0123456789"
COOLDOWN_S = 0.5
runner = CliRunner()


@pytest.fixture
def always_buy() -> Iterator[type[AlwaysBuy]]:
    yield from registered(AlwaysBuy)


@pytest.fixture
def failing_gpt() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(stage_responder(), api_key=KEY) as server:
        server.push(Fail(500), Fail(500), Fail(500))  # then valid answers
        yield server


def _status(url: str, settings: Any) -> dict[str, str]:
    journal = Journal.open(url, migrate_schema=False)
    try:
        return {r["provider"]: r["breaker"] for r in provider_rows(journal, settings)}
    finally:
        journal.close()


def test_breaker_transitions_are_journaled_and_status_reads_them(
        journal_url: str, tmp_path: Path, failing_gpt: FakeOpenAIServer,
        always_buy: type[AlwaysBuy]) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 120)
    settings = settings_for(journal_url, openai_api_key=KEY, strategy={
        "name": always_buy.name, "params": {}}, ensemble={
        "deadline_ms": 2000, "prompts_dir": str(ROOT / "config" / "prompts"),
        "breaker": {"min_calls": 3, "failure_rate": 0.5, "cooldown_s": COOLDOWN_S,
                    "half_open_probes": 2},
        "providers": [
            {"name": "structure", "kind": "structure"},
            {"name": "gpt", "kind": "openai", "model": "gpt-500",
             "base_url": failing_gpt.base_url}]})
    journal = Journal.open(journal_url)
    seen: list[dict[str, str]] = []
    try:
        daemon = build_daemon(settings, journal, data=data)
        executor = daemon.executor
        assert daemon.feed is not None
        executor.start()
        ensemble = executor.c.ensemble

        def gpt_calls() -> int:
            return sum(1 for r in failing_gpt.requests)

        def cycle_until(n_requests: int) -> None:
            while gpt_calls() < n_requests:
                t = daemon.feed.next_close_time()
                assert t is not None
                executor.run_cycle(t)
            for hook in executor.before_cycle:  # what the next cycle starts with
                hook(t)

        cycle_until(3)  # three 500s: the breaker opens
        gpt = next(m for m in ensemble.members if m.name == "gpt")
        assert gpt.breaker.state.value == "open"
        journal.commit()
        seen.append(_status(journal_url, settings))
        # The CLI, in its own process's view: the journal only.
        out = runner.invoke(app, ["providers", "status", "--json", "--config",
                                  str(ROOT / "config" / "dta.example.toml"),
                                  "--journal-url", journal_url])
        assert out.exit_code == 0, out.output
        cli = {r["provider"]: r for r in json.loads(out.stdout)}
        assert cli["gpt"]["breaker"] == "open", cli["gpt"]
        assert "3 of the last 3 calls failed" in cli["gpt"]["breaker_reason"]

        time.sleep(COOLDOWN_S + 0.1)
        cycle_until(4)  # cooldown over: one good probe of two, still half-open
        assert gpt.breaker.state.value == "half_open"
        journal.commit()
        seen.append(_status(journal_url, settings))
        cycle_until(5)  # the second good probe closes it
        journal.commit()
        seen.append(_status(journal_url, settings))
        executor.stop("completed")
    finally:
        journal.close()
    # Before: "closed" after the three 500s (the last call was an error), and never
    # half-open.
    assert [s["gpt"] for s in seen] == ["open", "half_open", "closed"], seen
    assert all(s["structure"] == "closed" for s in seen), seen

    reader = Journal.open(journal_url, migrate_schema=False)
    try:
        events = [(e.action, e.reason) for e in _events(reader) if e.provider == "gpt"]
        assert events[0] == ("breaker_closed", "new -> closed: ensemble built"), events
        assert [a for a, r in events if not r.startswith("new")] == [
            "breaker_open", "breaker_half_open", "breaker_closed"], events
        assert all(e.operator == "system" for e in _events(reader))
        # Breaker events neither disable a provider nor look like an operator's change
        # (which would rebuild the ensemble and reset every breaker).
        assert reader.provider_calls.disabled_providers() == {}
        assert reader.provider_calls.latest_provider_event_id() == 0
    finally:
        reader.close()


def _events(journal: Journal) -> list[Any]:
    from sqlalchemy import select

    from executor.journal.models import ProviderEventRow

    table = ProviderEventRow.__table__  # type: ignore[attr-defined]
    with journal.uow.engine.connect() as conn:
        return list(conn.execute(select(table).order_by(table.c.id)))


def test_an_open_breaker_past_its_cooldown_reads_half_open() -> None:
    from datetime import UTC, datetime

    at = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
    assert breaker_state("breaker_open", at, 30.0, at + timedelta(seconds=29)) == "open"
    assert breaker_state("breaker_open", at, 30.0, at + timedelta(seconds=30)) == "half_open"
    assert breaker_state(None, None, 30.0, at) == "closed"
