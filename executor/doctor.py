"""`dta doctor`: is this VPS fit to trade? Each check says ok, warn or fail, and why.

The exit code is the health signal (0 ok, 8 degraded, 9 unhealthy), so a timer or a
monitoring agent can run it.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from domain.errors import EXIT_DEGRADED, EXIT_UNHEALTHY
from executor.journal.store import Journal
from executor.settings import Settings

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    status: str
    detail: str


def run_checks(settings: Settings, journal: Journal | None, journal_error: str | None,
               *, min_free_bytes: int = 1 << 30) -> list[Finding]:
    out = [Finding("settings", OK, f"valid (hash {settings.content_hash}, mode {settings.mode})")]
    if journal is None:
        out.append(Finding("journal", FAIL, journal_error or "cannot open the journal"))
        return out
    schema = _journal_schema(journal)
    out += [schema, _journal_writable(journal), _disk_space(settings, min_free_bytes),
            _secrets_permissions(settings)]
    if schema.status == OK:  # the rest reads tables an unmigrated journal may lack
        out += [_trading_state(journal), _incidents(journal)]
    out.append(_broker(settings))
    return out


def exit_code(findings: list[Finding]) -> int:
    if any(f.status == FAIL for f in findings):
        return EXIT_UNHEALTHY
    if any(f.status == WARN for f in findings):
        return EXIT_DEGRADED
    return 0


def _journal_schema(journal: Journal) -> Finding:
    current, head = journal.schema_revisions()
    if current != head:
        return Finding("journal_schema", FAIL,
                       f"at revision {current}, code expects {head}: run `dta db upgrade`")
    return Finding("journal_schema", OK, f"migrated (revision {head}, {journal.dialect})")


def _journal_writable(journal: Journal) -> Finding:
    """A real, committed write (the schema's version row rewritten with its own value):
    a write lock alone is granted on a file that cannot be written (immutable, read-only
    mount, a role without UPDATE), and only a commit reaches the storage."""
    try:
        if not journal.has_version_table():
            return Finding("journal_writable", FAIL, "no schema to write to: run "
                           "`dta db upgrade`")
        journal.probe_write()
    except Exception as exc:
        orig = getattr(exc, "orig", None) or exc
        return Finding("journal_writable", FAIL, f"cannot write: {orig.__class__.__name__}: "
                       f"{(str(orig).splitlines() or [''])[0]}")
    return Finding("journal_writable", OK, "a write committed")


def _disk_space(settings: Settings, min_free: int) -> Finding:
    url = make_url(settings.journal.url)
    path = Path(url.database).resolve().parent if url.get_backend_name() == "sqlite" and \
        url.database and url.database != ":memory:" else Path.cwd()
    while not path.exists() and path != path.parent:
        path = path.parent
    free = shutil.disk_usage(path).free
    detail = f"{free / (1 << 30):.1f} GiB free at {path}"
    if free < min_free // 4:
        return Finding("disk_space", FAIL, detail)
    if free < min_free:
        return Finding("disk_space", WARN, detail)
    return Finding("disk_space", OK, detail)


def _secrets_permissions(settings: Settings) -> Finding:
    loose: list[str] = []
    candidates = [Path(".env")]
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and Path(creds).is_dir():
        candidates += [p for p in Path(creds).iterdir() if p.is_file()]
    for path in candidates:
        if path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                loose.append(f"{path} is mode {mode:o} (readable by others; chmod 600)")
    if loose:
        return Finding("secret_files", FAIL, "; ".join(loose))
    count = sum(1 for v in settings.secret_values() if v)
    return Finding("secret_files", OK, f"{count} secret(s) configured; files private")


def _trading_state(journal: Journal) -> Finding:
    state = journal.trading_state.trading_state()
    if state.state == "ACTIVE":
        return Finding("trading_state", OK, "ACTIVE")
    return Finding("trading_state", WARN, f"{state.state} since {state.since}: "
                   f"{state.trigger} by {state.operator}: {state.reason}")


def _incidents(journal: Journal) -> Finding:
    serious = [i for i in journal.incidents.all("open") if i.severity in ("high", "critical")]
    if serious:
        newest = serious[-1]
        return Finding("incidents", WARN, f"{len(serious)} open high/critical incident(s); "
                       f"newest #{newest.id} {newest.kind}: {newest.message}")
    return Finding("incidents", OK, "no open high/critical incident")


def _broker(settings: Settings) -> Finding:
    if settings.mode == "paper":
        return Finding("broker", OK, "paper mode: simulated fills, nothing to reach")
    return Finding("broker", FAIL, f"mode {settings.mode}: no live broker adapter in this "
                   "build")


def now_utc() -> datetime:
    return datetime.now(UTC)
