"""After `make run`, every command the README lists next works as written, without
extra flags, and reads the settings and the journal the run used.

`make run` runs in a copy of the repository's Makefile and config/ (so the checkout's
own `var/` and `config/dta.toml` are never touched), with the test's interpreter as the
venv and this checkout's code on PYTHONPATH."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")


def readme_next_commands() -> list[str]:
    """The lines of the ``sh`` block the README marks as coming after `make run`."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- after make run -->\s*```sh\n(.*?)```", text, flags=re.DOTALL)
    assert block, "README.md: no `<!-- after make run -->` sh block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines()
            if line.strip()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A directory where `make run` has run, and the environment to run `dta` in it."""
    home = tmp_path_factory.mktemp("checkout")
    shutil.copy(ROOT / "Makefile", home)
    shutil.copy(ROOT / "pyproject.toml", home)
    shutil.copytree(ROOT / "config", home / "config",
                    ignore=shutil.ignore_patterns("dta.toml"))
    (home / ".venv").mkdir()
    (home / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    (home / ".venv" / ".installed-stamp").touch()  # newer than pyproject.toml: no install
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTA_")}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([MAKE or "make", "run"], cwd=home, env=env, capture_output=True,
                         text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "paper run completed" in run.stdout
    return home, env


def _dta(home: Path, env: dict[str, str], line: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(line, shell=True, cwd=home, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.mark.skipif(MAKE is None, reason="`make` is not on PATH (apt-get install -y make)")
def test_each_readme_command_after_make_run_exits_0(
        demo: tuple[Path, dict[str, str]]) -> None:
    home, env = demo
    with sqlite3.connect(home / "var" / "paper-demo.sqlite") as db:
        order_id = db.execute("SELECT client_order_id FROM orders LIMIT 1").fetchone()[0]
    commands = readme_next_commands()
    assert any(c.startswith(".venv/bin/dta status") for c in commands)
    for line in commands:
        done = _dta(home, env, line.replace("<client_order_id>", order_id))
        assert done.returncode == 0, f"{line}: exit {done.returncode}\n{done.stderr[-1500:]}"
        assert "--journal-url" not in line and "--config" not in line


@pytest.mark.skipif(MAKE is None, reason="`make` is not on PATH (apt-get install -y make)")
def test_commands_without_flags_read_the_runs_settings_and_journal(
        demo: tuple[Path, dict[str, str]]) -> None:
    home, env = demo
    bare = _dta(home, env, ".venv/bin/dta config show --json")
    as_run = _dta(home, env, ".venv/bin/dta config show --json --config "
                  "config/dta.example.toml --journal-url sqlite:///var/paper-demo.sqlite")
    assert bare.returncode == 0 and as_run.returncode == 0, bare.stderr + as_run.stderr
    ours, theirs = json.loads(bare.stdout), json.loads(as_run.stdout)
    assert ours["settings"]["journal"]["url"] == "sqlite:///var/paper-demo.sqlite"
    assert ours["content_hash"] == theirs["content_hash"]
    assert ours["settings"] == theirs["settings"]
