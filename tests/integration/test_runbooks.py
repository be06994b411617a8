"""Every command of every operator runbook, run against a journal prepared for its
situation. A runbook step that stops working fails here, not at 3 a.m."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from support.daemon_helpers import EXAMPLE, replay
from support.samples import write_sample_head
from typer.testing import CliRunner

from executor.journal.store import Journal
from runbooks.cli import app

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "runbooks"
FOREVER = {"approval_ttl_seconds": 4e8}  # requests stay pending past the wall clock

SCENARIO_OF = {
    "trading-state-recovery.md": "halted",
    "broker-outage.md": "halted",
    "lease-lost.md": "halted",
    "parameter-rollback.md": "changed",
    "quality-regression.md": "rolled_back",
    "wrong-signals.md": "active",
    "provider-outage.md": "active",
    "deploy-and-upgrade.md": "active",
    "secret-rotation.md": "active",
}
runner = CliRunner()


def _cli(url: str, *args: str) -> object:
    result = runner.invoke(app, [*args, "--config", str(EXAMPLE), "--journal-url", url])
    assert result.exit_code == 0, (args, result.output)
    return result


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runbooks")
    data = write_sample_head(base / "EURUSD_M15.csv", 8000)
    out = {}

    halted = base / "halted.sqlite"  # a daily-drawdown halt with its incident
    replay(f"sqlite:///{halted}", data, stop_after=3000,
           guardrails={"daily_drawdown_halt_pct": 0.05})
    out["halted"] = halted

    active = base / "active.sqlite"  # trading normally, analyst requests waiting
    replay(f"sqlite:///{active}", data, stop_after=6000, guardrails=FOREVER)
    out["active"] = active

    changed = base / "changed.sqlite"  # v2 activated by a person, not yet harmful
    url = f"sqlite:///{changed}"
    replay(url, data, stop_after=2000)
    _cli(url, "params", "propose", "--reason", "wider target", "--set",
         "strategy.params.risk_reward=3.0", "--activate", "--operator", "quant")
    replay(url, data, stop_after=500)
    out["changed"] = changed

    rolled = base / "rolled_back.sqlite"  # an automatic rollback fired
    url = f"sqlite:///{rolled}"
    replay(url, data, stop_after=2000, guardrails=FOREVER)
    _cli(url, "params", "propose", "--reason", "try 20x size", "--activate", "--operator", "quant",
         "--set", "paper.order_volume_lots=2.0", "--set", "guardrails.max_position_lots=2.0",
         "--set", "guardrails.max_gross_exposure_lots=5",
         "--set", "guardrails.max_order_notional=1000000",
         "--set", "guardrails.regression.drawdown_pct=2.0",
         "--set", "guardrails.daily_drawdown_halt_pct=50")
    replay(url, data, guardrails=FOREVER)
    out["rolled_back"] = rolled
    return out


def _steps(page: Path) -> list[tuple[str, int]]:
    """(command, expected exit code) for every `dta` line in the page's code blocks."""
    steps = []
    for block in re.findall(r"```sh\n(.*?)```", page.read_text(), flags=re.S):
        for line in block.splitlines():
            line = line.strip()
            if not line.startswith("dta "):
                continue
            expected = 0
            m = re.search(r"#\s*exit\s+(\d+)\s*$", line)
            if m:
                expected = int(m.group(1))
            steps.append((re.sub(r"\s+#.*$", "", line), expected))
    return steps


def _placeholders(url: str, last_output: str) -> dict[str, str]:
    j = Journal.open(url)
    try:
        incidents = j.incidents.all()
        open_ = [i for i in incidents if i.status != "resolved"]
        pending = j.approvals.all("pending")
        filled = [o for o in j.orders.all() if o.state.value == "filled"]
        values = {
            "INCIDENT_ID": str((open_ or incidents or [None])[0].id if (open_ or incidents)
                               else "0"),
            "APPROVAL_ID": str(pending[0].id if pending else "0"),
            "ORDER_ID": filled[-1].client_order_id if filled else "none",
        }
    finally:
        j.close()
    m = re.search(r"proposed v(\d+)", last_output)
    if m:
        values["NEW_VERSION"] = m.group(1)
    return values


def test_every_page_is_indexed_and_mapped() -> None:
    pages = sorted(p.name for p in RUNBOOKS.glob("*.md") if p.name != "README.md")
    assert pages == sorted(SCENARIO_OF)
    index = (RUNBOOKS / "README.md").read_text()
    for name in pages:
        assert f"({name})" in index
        assert _steps(RUNBOOKS / name), f"{name} has no dta command"


GUIDES = {ROOT / "docs" / "analyst-guide.md": "active"}


@pytest.mark.parametrize("page", [*sorted(SCENARIO_OF), *sorted(str(p) for p in GUIDES)])
def test_runbook_commands_run(page: str, scenarios: dict[str, Path], tmp_path: Path) -> None:
    path = Path(page) if page.startswith("/") else RUNBOOKS / page
    scenario = GUIDES.get(path) or SCENARIO_OF[page]
    journal = tmp_path / "journal.sqlite"
    shutil.copy(scenarios[scenario], journal)
    url = f"sqlite:///{journal}"
    last_output = ""
    assert _steps(path), f"{page} has no dta command"
    for command, expected in _steps(path):
        values = _placeholders(url, last_output)
        for key, value in values.items():
            command = command.replace("{" + key + "}", value)
        assert "{" not in command, f"unfilled placeholder in {command!r}"
        args = shlex.split(command)[1:]
        result = runner.invoke(app, [*args, "--config", str(EXAMPLE), "--journal-url", url])
        assert result.exit_code == expected, (page, command, result.output)
        last_output = result.output
