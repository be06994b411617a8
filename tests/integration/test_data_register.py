"""Provider data register: printed by `dta providers register`, warnings at start."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

from support.daemon_helpers import EXAMPLE
from support.samples import write_sample_head
from typer.testing import CliRunner

from executor.data_register import register
from executor.settings import load_settings
from runbooks.cli import app

ROOT = Path(__file__).resolve().parents[2]
RESEARCH_FIELDS = ["bar_time", "market", "proposal", "stage", "symbol", "timeframe"]


def _config(tmp_path: Path, prompts: Path, *, template: str = "research",
            declared: list[str] | None = None, review: str = "2026-10-01") -> Path:
    declared = RESEARCH_FIELDS if declared is None else declared
    text = Path(EXAMPLE).read_text().replace(
        'path = "config/samples/EURUSD_M15.csv"',
        f'path = "{ROOT / "config/samples/EURUSD_M15.csv"}"')
    text = text.replace("[[ensemble.providers]]", f'[ensemble]\nprompts_dir = "{prompts}"\n'
                        "deadline_ms = 500\n\n[[ensemble.providers]]", 1)
    text += (
        '\n[[ensemble.providers]]\nname = "gpt"\nkind = "openai"\nmodel = "gpt-test"\n'
        'base_url = "http://127.0.0.1:9/v1"\napi_key_name = "openai_api_key"\n'
        f'templates = {{ research = "{template}" }}\n'
        f"\n[governance.providers.gpt]\ndata_fields = {json.dumps(declared)}\n"
        f'region = "eu-west"\nretention_days = 30\ntraining_use = false\n'
        f"last_review = {review}\n")
    path = tmp_path / "dta.toml"
    path.write_text(text)
    return path


def _prompts(tmp_path: Path, extra_field: str | None = None) -> Path:
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "config" / "prompts", prompts)
    if extra_field:
        v1 = (prompts / "research.v1.md").read_text()
        v2 = v1.replace("version: 1", "version: 2").replace(
            "Proposal and market for ${symbol}:",
            "Proposal and market for ${symbol} on account ${" + extra_field + "}:")
        (prompts / "research.v2.md").write_text(v2)
    return prompts


def test_register_lists_what_leaves_the_vps(tmp_path: Path) -> None:
    settings = load_settings(_config(tmp_path, _prompts(tmp_path)))
    rows = {r.provider: r for r in register(settings, today=date(2026, 11, 25))}
    assert rows["structure"].destination.startswith("local")
    gpt = rows["gpt"]
    assert gpt.destination == "http://127.0.0.1:9/v1" and gpt.region == "eu-west"
    assert gpt.sent_fields == RESEARCH_FIELDS
    assert gpt.retention_days == 30 and gpt.training_use is False
    assert gpt.warnings == []
    out = CliRunner().invoke(app, ["providers", "register", "--json", "--config",
                                   str(_config(tmp_path, _prompts(tmp_path / "x")))])
    assert out.exit_code == 0, out.output
    assert {r["provider"] for r in json.loads(out.stdout)} == {"structure", "momentum", "gpt"}


def test_undeclared_field_and_overdue_review_warn(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path, extra_field="account_number")
    settings = load_settings(_config(tmp_path, prompts, template="research@2",
                                     review="2025-01-01"))
    [gpt] = [r for r in register(settings, today=date(2026, 11, 25)) if r.provider == "gpt"]
    assert "account_number" in gpt.sent_fields
    assert any("undeclared field(s): account_number" in w for w in gpt.warnings)
    assert any("older than 180 days" in w for w in gpt.warnings)


def test_daemon_warns_at_start(tmp_path: Path) -> None:
    prompts = _prompts(tmp_path, extra_field="account_number")
    cfg = _config(tmp_path, prompts, template="research@2")
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 400)
    r = CliRunner().invoke(app, ["run", "--config", str(cfg), "--data", str(data),
                                 "--journal-url", f"sqlite:///{tmp_path / 'j.sqlite'}"],
                           env={"DTA_OPENAI_API_KEY": "sk-test-0123456789"})
    assert r.exit_code == 0, r.output
    assert "warning: provider gpt: templates send undeclared field(s): account_number" in r.output
