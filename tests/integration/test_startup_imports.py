"""What a read-only `dta` command imports: only what it uses. Speed itself is measured in
benchmarks/bench_startup.py; these tests keep the heavy imports from creeping back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import structlog

from executor import lazy_log
from executor.journal.store import Journal

ROOT = Path(__file__).resolve().parents[2]
# alembic (and its mako templates) only migrates; the ensemble engine and the LLM SDKs only
# run in the daemon; structlog pulls in rich, pygments and attrs, and status logs nothing.
# SQLAlchemy, sqlmodel and the journal's table models (~350 ms of imports) would blow
# status's 300 ms (issue 18): it reads through the driver (executor/journal/direct.py).
NOT_FOR_STATUS = ("alembic", "mako", "ensemble.ensemble", "openai", "anthropic", "structlog",
                  "rich", "pygments", "sqlalchemy", "sqlmodel", "executor.journal.store",
                  "executor.journal.models", "ccxt", "pandas", "numpy", "apscheduler",
                  "sentry_sdk", "rpyc", "fastapi", "starlette", "jinja2", "apprise")


def test_status_imports_none_of_the_daemons_machinery(sqlite_url: str,
                                                      config_file: Path) -> None:
    Journal.open(sqlite_url).close()
    args = ["--config", str(config_file), "--journal-url", sqlite_url]
    code = ("import sys\n"
            f"sys.argv = ['dta', 'status', *{args!r}]\n"
            "from runbooks.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\n"
            "else:\n    code = 0\n"
            "import gc\n"
            "print(repr(code), gc.get_freeze_count() > 0)\n"
            f"print(json.dumps(sorted(m for m in {NOT_FOR_STATUS!r} if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    *_, exit_line, loaded = out.stdout.strip().splitlines()
    exit_code, frozen = exit_line.split()
    assert exit_code in ("0", "None"), out.stdout + out.stderr
    # main() freezes the heap when the command is done: shutdown skips its collections.
    assert frozen == "True"
    assert "account paper-1" in out.stdout and "trading state: ACTIVE" in out.stdout
    assert json.loads(loaded) == []


def test_the_lazy_logger_is_structlogs_logger() -> None:
    log = lazy_log.get_logger("dta.test", component="journal")
    with structlog.testing.capture_logs() as logs:
        log.warning("runs_marked_died", account="a", runs=[1])
        log.error("loud")  # (not debug: an earlier test's configure_logging may filter it)
    assert logs == [
        {"component": "journal", "event": "runs_marked_died", "account": "a", "runs": [1],
         "log_level": "warning"},
        {"component": "journal", "event": "loud", "log_level": "error"}]


def test_the_journals_logger_imports_structlog_on_its_first_call() -> None:
    code = ("import sys\n"
            "import executor.journal.store\n"
            "print('structlog' in sys.modules)\n"
            "from executor.journal import runs\n"
            "from executor.log_setup import configure_logging\n"
            "configure_logging('info')\n"
            "runs.log.warning('runs_marked_died', runs=[7])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
    event = json.loads(out.stderr.strip().splitlines()[-1])
    assert event["event"] == "runs_marked_died" and event["runs"] == [7]
    assert event["level"] == "warning"
