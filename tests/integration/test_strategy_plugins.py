"""A desk's own TradeLogic, from outside our package: by import path or by an installed
``dta.strategies`` entry point, its parameters checked at settings load and part of the
parameter set's hash, trading in paper mode through the real daemon."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemon_helpers import drive
from typer.testing import CliRunner

from domain.errors import ConfigError
from executor.journal.store import Journal
from executor.settings import Settings, load_settings
from executor.wiring import build_daemon
from runbooks.cli import app
from strategies.registry import StrategyLoadError, build_strategy, resolve_strategy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "dta.example.toml"
runner = CliRunner()

# The desk's package: nothing of it lives under our tree; it imports only our public seams.
DESK_LOGIC = '''\
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from domain import Direction, MarketSnapshot, Proposal
from strategies.logic import StrategyContext


class DeskBreakout:
    """Go with a close outside the range of the last ``lookback`` bars, from flat."""

    name = "desk_breakout"

    def __init__(self, *, lookback: int = 20, risk_reward: float = 2.0,
                 stop_atr: float = 1.0) -> None:
        if lookback < 2:
            raise ValueError(f"lookback must be >= 2, got {lookback}")
        self.lookback, self.risk_reward, self.stop_atr = lookback, risk_reward, stop_atr

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        prior = snapshot.bars[-self.lookback - 1:-1]
        if not ctx.position.is_flat or snapshot.atr is None or len(prior) < self.lookback:
            return ()
        close = snapshot.bar.close
        if close > max(b.high for b in prior):
            direction = Direction.LONG
        elif close < min(b.low for b in prior):
            direction = Direction.SHORT
        else:
            return ()
        risk = direction.sign * self.stop_atr * snapshot.atr
        side = "bullish" if direction is Direction.LONG else "bearish"
        return (Proposal(strategy=self.name, symbol=snapshot.symbol,
                         timeframe=snapshot.timeframe, bar_time=snapshot.bar.time,
                         direction=direction, entry=close, stop=close - risk,
                         target=close + risk * self.risk_reward,
                         reason=f"close through the {self.lookback}-bar range",
                         tags=(f"bos_{side}",)),)


class DeskBreakoutToo(DeskBreakout):
    """Another class with the same parameters."""


class DeskParams(BaseModel):
    model_config = ConfigDict(frozen=True)

    lookback: int = Field(default=20, ge=2)
    risk_reward: float = Field(default=2.0, gt=0)


class DeskModelBreakout(DeskBreakout):
    """The same logic with its parameters declared as a pydantic model."""

    Params = DeskParams

    def __init__(self, *, lookback: int, risk_reward: float) -> None:
        super().__init__(lookback=lookback, risk_reward=risk_reward)


class Helper:
    """Not a strategy: no on_bar."""


class Nameless:
    def __init__(self) -> None:
        pass

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        return ()
'''

BREAKOUT = "deskpkg.logic:DeskBreakout"


def _forget_desk() -> None:
    for module in [m for m in sys.modules if m == "deskpkg" or m.startswith("deskpkg.")]:
        del sys.modules[module]


def write_desk_package(where: Path) -> Path:
    package = where / "deskpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""The desk\'s strategies."""\n')
    (package / "logic.py").write_text(DESK_LOGIC)
    (package / "broken.py").write_text("import numpy_that_is_not_installed\n")
    return where


def write_distribution(site: Path, version: str = "1.2.0",
                       target: str = BREAKOUT) -> Path:
    """What `pip install` of the desk's package leaves in site-packages: the package and a
    dist-info whose entry_points.txt is the desk's pyproject
    ``[project.entry-points."dta.strategies"] desk_breakout = "deskpkg.logic:DeskBreakout"``."""
    if not (site / "deskpkg").exists():
        write_desk_package(site)
    for old in site.glob("desk_strategies-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"desk_strategies-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: desk-strategies\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[dta.strategies]\ndesk_breakout = {target}\n")
    (info / "top_level.txt").write_text("deskpkg\n")
    return site


def _on_path(where: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    _forget_desk()  # imported by an earlier test from another tmp dir
    monkeypatch.syspath_prepend(str(where))
    yield where
    _forget_desk()


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The desk's package on sys.path (as PYTHONPATH would put it), not installed."""
    yield from _on_path(write_desk_package(tmp_path / "desk"), monkeypatch)


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The desk's package installed as the distribution ``desk-strategies`` 1.2.0."""
    yield from _on_path(write_distribution(tmp_path / "site"), monkeypatch)


def desk_config(path: Path, strategy: str, params: dict[str, Any] | None = None, *,
                journal_url: str = "sqlite:///unused.sqlite", data: Path | None = None) -> Path:
    """The example settings with the desk's strategy in place of the example's."""
    text = EXAMPLE.read_text()
    section = f'[strategy]\nname = "{strategy}"\n'
    if params:
        section += "\n[strategy.params]\n" + "".join(
            f"{k} = {json.dumps(v)}\n" for k, v in params.items())
    text = re.sub(r"(?ms)^\[strategy\]\n.*?(?=^\[strategy\.snapshot\])", section + "\n", text)
    text = text.replace('url = "sqlite:///var/dta/journal.sqlite"', f'url = "{journal_url}"')
    if data is not None:
        text = text.replace('path = "config/samples/EURUSD_M15.csv"', f'path = "{data}"')
    path.write_text(text)
    return path


def settings_with(tmp_path: Path, strategy: str, params: dict[str, Any] | None = None,
                  **kw: Any) -> Settings:
    return load_settings(desk_config(tmp_path / "dta.toml", strategy, params, **kw))


def _trace(config: Path, journal_url: str) -> tuple[list[Any], dict[str, Any]]:
    """The run's orders, and `dta trace` of the first one."""
    journal = Journal.open(journal_url)
    try:
        orders = journal.orders.all()
    finally:
        journal.close()
    assert orders
    result = runner.invoke(app, ["trace", orders[0].client_order_id, "--json",
                                 "--config", str(config), "--journal-url", journal_url])
    assert result.exit_code == 0, result.output
    return orders, json.loads(result.stdout)


def test_import_path_strategy_trades_in_paper_mode(desk: Path, tmp_path: Path,
                                                  sqlite_url: str, sample_head: Path) -> None:
    config = desk_config(tmp_path / "dta.toml", BREAKOUT, {"lookback": 24},
                         journal_url=sqlite_url, data=sample_head)
    settings = load_settings(config)
    assert settings.mode == "paper"
    journal = Journal.open(sqlite_url)
    try:
        summary = drive(build_daemon(settings, journal))
    finally:
        journal.close()
    assert summary["bars_processed"] == 3000
    assert summary["proposals"] > 5 and sum(summary["orders"].values()) > 2

    orders, trace = _trace(config, sqlite_url)
    assert len(orders) == sum(summary["orders"].values())
    assert trace["proposal"]["strategy"] == "desk_breakout"
    assert trace["proposal"]["reason"] == "close through the 24-bar range"
    strategy = trace["parameter_set"]["content"]["strategy"]
    assert strategy["name"] == BREAKOUT
    assert strategy["params"] == {"lookback": 24, "risk_reward": 2.0, "stop_atr": 1.0}
    assert strategy["plugin"] == {"class": BREAKOUT, "entry_point": None,
                                  "distribution": None, "version": None}
    assert trace["order"]["params_hash"] == settings.parameter_set().content_hash


def test_entry_point_strategy_trades_through_dta_run(tmp_path: Path, sqlite_url: str,
                                                    sample_head: Path) -> None:
    """A fresh `dta run` process that finds the desk's distribution on its path, as after
    `pip install desk-strategies`: no wrapper script, no registry patching."""
    site = write_distribution(tmp_path / "site")
    config = desk_config(tmp_path / "dta.toml", "desk_breakout", journal_url=sqlite_url,
                         data=sample_head)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTA_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    done = subprocess.run([sys.executable, "-m", "runbooks.cli", "run", "--mode", "paper",
                           "--config", str(config), "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["bars_processed"] == 3000 and sum(summary["orders"].values()) > 2

    _forget_desk()
    sys.path.insert(0, str(site))  # for `dta trace` here, which loads the same settings
    try:
        orders, trace = _trace(config, sqlite_url)
    finally:
        sys.path.remove(str(site))
        _forget_desk()
    assert len(orders) == sum(summary["orders"].values())
    assert trace["proposal"]["strategy"] == "desk_breakout"
    strategy = trace["parameter_set"]["content"]["strategy"]
    assert strategy["name"] == "desk_breakout"
    assert strategy["params"] == {"lookback": 20, "risk_reward": 2.0, "stop_atr": 1.0}
    assert strategy["plugin"] == {"class": BREAKOUT, "entry_point": "desk_breakout",
                                  "distribution": "desk-strategies", "version": "1.2.0"}


def test_a_pydantic_params_model_checks_converts_and_fills(desk: Path, tmp_path: Path) -> None:
    name = "deskpkg.logic:DeskModelBreakout"
    settings = settings_with(tmp_path, name, {"lookback": "30"})
    assert settings.strategy.params == {"lookback": 30, "risk_reward": 2.0}
    built = build_strategy(name, settings.parameter_set().values["strategy"]["params"])
    assert (built.lookback, built.risk_reward) == (30, 2.0)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"lookback: Input should be greater than or equal"):
        settings_with(tmp_path, name, {"lookback": 1})
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) lookbak; it takes "
                                          r"lookback, risk_reward"):
        settings_with(tmp_path, name, {"lookbak": 30})


NOT_INSTALLED = "not a built-in (smc_ob_retest, swing_breakout), not an installed"


@pytest.mark.parametrize(("strategy", "params", "field", "says"), [
    ("desk_breakout_typo", {}, "strategy.name",
     f"unknown strategy 'desk_breakout_typo': {NOT_INSTALLED} 'dta.strategies' entry point "
     "(desk_breakout), and not an import path 'package.module:Class'"),
    ("deskpkg.nowhere:DeskBreakout", {}, "strategy.name",
     "cannot import module 'deskpkg.nowhere': ModuleNotFoundError: No module named "
     "'deskpkg.nowhere'"),
    ("deskpkg.broken:DeskBreakout", {}, "strategy.name",
     "cannot import module 'deskpkg.broken': ModuleNotFoundError: No module named "
     "'numpy_that_is_not_installed'"),
    ("deskpkg.logic:DeskBrekout", {}, "strategy.name",
     "module 'deskpkg.logic' has no attribute 'DeskBrekout'"),
    ("deskpkg.logic:Helper", {}, "strategy.name",
     "deskpkg.logic:Helper is not a TradeLogic: it has no on_bar(snapshot, ctx) method"),
    ("deskpkg.logic:Nameless", {}, "strategy.params",
     "'deskpkg.logic:Nameless' is not a TradeLogic: it has no name"),
    (BREAKOUT, {"lookback": 1}, "strategy.params",
     "bad parameters {'lookback': 1}: lookback must be >= 2, got 1"),
    (BREAKOUT, {"lookbak": 30}, "strategy.params",
     "bad parameters {'lookbak': 30}: DeskBreakout.__init__() got an unexpected keyword "
     "argument 'lookbak'"),
])
@pytest.mark.parametrize("command", ["doctor", "run"])
def test_each_bad_strategy_is_one_line_and_exit_2(installed: Path, tmp_path: Path,
                                                  command: str, strategy: str,
                                                  params: dict[str, Any], field: str,
                                                  says: str) -> None:
    db = tmp_path / "journal.sqlite"
    config = desk_config(tmp_path / "dta.toml", strategy, params,
                         journal_url=f"sqlite:///{db}")
    result = runner.invoke(app, [command, "--config", str(config)])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"dta: invalid settings in {config}:"
    [line] = lines[1:]  # the strategy's problem, on one line, at the setting that has it
    assert line.startswith(f"  {field}: Value error, ") and says in line, line
    assert not db.exists()  # refused before anything started


def test_a_parameter_change_is_checked_before_it_is_stored(desk: Path, tmp_path: Path,
                                                          sqlite_url: str) -> None:
    """`dta params propose` builds the version first: the desk's class refuses it there."""
    config = desk_config(tmp_path / "dta.toml", BREAKOUT, journal_url=sqlite_url)
    Journal.open(sqlite_url).close()
    args = ["--config", str(config), "--reason", "tighter"]
    bad = runner.invoke(app, ["params", "propose", "--set", "strategy.params.lookback=1", *args])
    assert bad.exit_code == 2
    assert "lookback must be >= 2, got 1" in bad.output
    good = runner.invoke(app, ["params", "propose", "--set", "strategy.params.lookback=30",
                               *args])
    assert good.exit_code == 0, good.output


def test_the_parameter_set_hash_names_the_plugin_and_its_parameters(
        installed: Path, tmp_path: Path) -> None:
    def params_hash(strategy: str, params: dict[str, Any] | None = None) -> str:
        return settings_with(tmp_path, strategy, params).parameter_set().content_hash

    by_entry_point = params_hash("desk_breakout")
    # Defaults are filled in: naming them changes nothing; changing one is a new version.
    assert params_hash("desk_breakout", {"lookback": 20}) == by_entry_point
    assert params_hash("desk_breakout", {"lookback": 21}) != by_entry_point
    assert params_hash("desk_breakout", {"risk_reward": 2.5}) != by_entry_point
    # The same class by import path is another name; another class, another strategy.
    assert params_hash(BREAKOUT) != by_entry_point
    assert params_hash("deskpkg.logic:DeskBreakoutToo") != params_hash(BREAKOUT)
    # A new release of the desk's distribution is a new version, its parameters unchanged.
    write_distribution(installed, version="1.3.0")
    released = params_hash("desk_breakout")
    assert released != by_entry_point
    # So is the entry point moved to another class of the same parameters.
    write_distribution(installed, version="1.3.0", target="deskpkg.logic:DeskBreakoutToo")
    assert params_hash("desk_breakout") != released
    assert settings_with(tmp_path, "desk_breakout").parameter_set().values["strategy"][
        "plugin"]["class"] == "deskpkg.logic:DeskBreakoutToo"


def test_builtin_parameter_sets_hash_as_before() -> None:
    """Journals made before plugins name their versions by these hashes: a built-in's
    parameter set gains nothing and keeps its parameters as given. (The guardrails'
    ``liquidation_buffer`` of issue 19 is one more limit, so it moved the hash from
    c8d00a2711caccae: an upgraded daemon registers the new content as a version.)"""
    example = load_settings(EXAMPLE)
    assert example.parameter_set().content_hash == "8ebd5899425e8bcb"
    assert set(example.parameter_set().values["strategy"]) == {"name", "params", "snapshot"}
    swing = load_settings(None, strategy={"name": "swing_breakout", "params": {}})
    assert swing.parameter_set().values["strategy"] == {
        "name": "swing_breakout", "params": {}, "snapshot": {}}


def test_builtins_come_first_and_a_doubly_claimed_name_is_refused(installed: Path) -> None:
    other = installed / "other_desk-0.1.dist-info"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: other-desk\nVersion: 0.1\n")
    (other / "entry_points.txt").write_text(
        "[dta.strategies]\nswing_breakout = deskpkg.logic:DeskBreakout\n"
        "desk_breakout = deskpkg.logic:DeskBreakoutToo\n")
    assert resolve_strategy("swing_breakout").origin is None  # no package takes it over
    with pytest.raises(StrategyLoadError, match=r"^strategy 'desk_breakout': the entry point "
                       r"is defined more than once \(desk-strategies 1.2.0, other-desk 0.1"):
        resolve_strategy("desk_breakout")


def test_a_broken_plugin_never_stands_between_an_operator_and_a_halt(
        installed: Path, tmp_path: Path, sqlite_url: str) -> None:
    """The desk's module stops importing while the daemon trades: `dta doctor` says so,
    but halting, reducing, activating and reading the history still work, on the same
    settings file, because those commands need nothing from the strategy."""
    config = desk_config(tmp_path / "dta.toml", "deskpkg.broken:DeskBreakout",
                         journal_url=sqlite_url)
    Journal.open(sqlite_url).close()  # the journal the daemon has been trading on
    assert runner.invoke(app, ["doctor", "--config", str(config)]).exit_code == 2
    args = ["--config", str(config)]
    halted = runner.invoke(app, ["trading-state", "halt", "--reason", "plugin broke", *args])
    assert halted.exit_code == 0, halted.output
    activated = runner.invoke(app, ["trading-state", "activate", "--reason", "fixed",
                                    "--operator", "ann", *args])
    assert activated.exit_code == 0, activated.output
    history = runner.invoke(app, ["trading-state", "history", "--json", *args])
    assert history.exit_code == 0, history.output
    assert [e["state"] for e in json.loads(history.stdout)] == ["ACTIVE", "HALTED"]
