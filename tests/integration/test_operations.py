"""Operations: no secret anywhere, doctor and status. (Notifications, which replaced the
incident webhook: tests/integration/test_notifications.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from prometheus_client import generate_latest
from sqlalchemy import MetaData, select
from support.daemon_helpers import EXAMPLE, settings_for
from support.samples import write_sample_head
from typer.testing import CliRunner

from executor.journal.store import Journal
from executor.log_setup import configure_logging
from executor.metrics import Metrics
from executor.sentry_setup import MASK, init_sentry
from runbooks.cli import app

runner = CliRunner()




SECRETS = {
    "DTA_OPENAI_API_KEY": "sk-openai-SECRET-111111",
    "DTA_ANTHROPIC_API_KEY": "sk-ant-SECRET-222222",
    "DTA_MT5_PASSWORD": "mt5-SECRET-333333",
    "DTA_MT5_BRIDGE_SECRET": "bridge-SECRET-444444",
    "DTA_EXCHANGE_API_KEY": "exkey-SECRET-555555",
    "DTA_EXCHANGE_API_SECRET": "exsecret-SECRET-666666",
    "DTA_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hooks/SECRET-777777",
    "DTA_NOTIFICATIONS__URLS": "json://desk:SECRET-pass-999@127.0.0.1:9/hooks/SECRET-101010",
    "DTA_SENTRY_DSN": "http://SECRET888888@127.0.0.1:9/1",
}


def test_no_secret_value_in_logs_metrics_sentry_cli_or_journal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        ) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 1500)
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    args = ["--config", str(EXAMPLE), "--journal-url", url]
    outputs: list[str] = []
    env = {"DTA_LOG_LEVEL": "debug"}
    for cmd in (["run", "--data", str(data), "--json"], ["status", "--json"], ["status"],
                ["config", "show"], ["doctor", "--json"], ["params", "list"],
                ["incidents", "list"], ["approvals", "list"]):
        result = runner.invoke(app, [*cmd, *args], env=env)
        assert result.exit_code in (0, 8), (cmd, result.output)
        outputs.append(result.output)

    # A debug log line that carries a secret in its values is scrubbed by the renderer.
    settings = settings_for(url)
    configure_logging("debug", settings.secret_values())
    import structlog

    structlog.get_logger("t").error("provider_failed",
                                    error=f"401 for key {SECRETS['DTA_OPENAI_API_KEY']}")
    outputs.append(capsys.readouterr().err)

    metrics = Metrics()
    metrics.bars_rejected.labels(reason="non_finite").inc()
    outputs.append(generate_latest(metrics.registry).decode())

    events: list[Any] = []

    class Capture(sentry_sdk.transport.Transport):
        def capture_envelope(self, envelope: Any) -> None:
            for item in envelope.items:
                events.append(item.payload.json)

    init_sentry(SECRETS["DTA_SENTRY_DSN"], secrets=settings.secret_values(),
                identifiers=[settings.account], release="test", environment="test",
                transport=Capture)
    try:
        raise RuntimeError(f"auth failed with {SECRETS['DTA_EXCHANGE_API_SECRET']} on "
                           f"account {settings.account}")
    except RuntimeError:
        sentry_sdk.capture_exception()
    sentry_sdk.capture_message(f"bridge secret {SECRETS['DTA_MT5_BRIDGE_SECRET']}")
    sentry_sdk.flush()
    sentry_sdk.get_client().close()
    assert len(events) == 2
    dumped = json.dumps(events)
    assert MASK in dumped and "paper-1" not in dumped
    outputs.append(dumped)

    j = Journal.open(url)
    meta = MetaData()
    meta.reflect(j.uow.engine)
    with j.uow.engine.connect() as conn:
        for table in meta.sorted_tables:
            outputs.append(json.dumps([list(r) for r in conn.execute(select(table))],
                                      default=str))
    j.close()

    blob = "\n".join(outputs)
    for name, value in SECRETS.items():
        assert value not in blob, f"{name} leaked"


def test_status_and_doctor_json_against_a_prepared_journal(tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 3000)
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    args = ["--config", str(EXAMPLE), "--journal-url", url]
    assert runner.invoke(app, ["run", "--data", str(data), *args]).exit_code == 0
    healthy = runner.invoke(app, ["doctor", "--json", *args])
    assert healthy.exit_code == 0, healthy.output
    report = json.loads(healthy.stdout)
    assert report["healthy"] and {c["check"] for c in report["checks"]} >= {
        "settings", "journal_schema", "journal_writable", "disk_space", "secret_files",
        "trading_state", "incidents", "broker"}

    runner.invoke(app, ["trading-state", "halt", "--reason", "broker outage", *args])
    degraded = runner.invoke(app, ["doctor", "--json", *args])
    assert degraded.exit_code == 8
    state = next(c for c in json.loads(degraded.stdout)["checks"]
                 if c["check"] == "trading_state")
    assert state["status"] == "warn" and "HALTED" in state["detail"]

    status = json.loads(runner.invoke(app, ["status", "--json", *args]).stdout)
    assert status["trading_state"]["state"] == "HALTED"
    assert status["streams"]["EURUSD/M15"]["count"] == 3000
    assert status["params"]["active_version"] == 1
    assert {p["provider"]: p["breaker"] for p in status["providers"]} == {
        "structure": "closed", "momentum": "closed"}

    env_file = tmp_path / ".env"
    env_file.write_text("DTA_OPENAI_API_KEY=sk-x-0123456789\n")
    env_file.chmod(0o644)
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        loose = runner.invoke(app, ["doctor", "--json", *args])
    finally:
        os.chdir(cwd)
    assert loose.exit_code == 9
    secrets = next(c for c in json.loads(loose.stdout)["checks"]
                   if c["check"] == "secret_files")
    assert secrets["status"] == "fail" and "chmod 600" in secrets["detail"]

    unmigrated = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    bad = runner.invoke(app, ["doctor", "--json", "--config", str(EXAMPLE), "--journal-url",
                              unmigrated])
    assert bad.exit_code == 9
    assert "dta db upgrade" in bad.stdout
