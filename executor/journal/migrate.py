"""Alembic migrations run from code, so `dta db upgrade` and the daemon's start-up need no
alembic.ini on the VPS.

Alembic (a heavy import, plus executing every migration script to find the head) is
imported only by the functions that migrate. The read-only checks every `dta` command
makes (``current_revision``, ``head_revision``) need neither: the current revision is one
SELECT on ``alembic_version`` and the head is read from the scripts' ``revision`` /
``down_revision`` assignments as text (``tests/integration/test_migrate.py`` holds it equal to what
alembic computes).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from domain.errors import JournalError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"  # alembic's default; env.py does not change it


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    """The journal's schema revision, as alembic's ``MigrationContext.get_current_revision``
    reads it: None without a version table or with an empty one."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise JournalError(f"journal {engine.url.render_as_string(hide_password=True)} has "
                           f"more than one schema revision ({', '.join(sorted(rows))}); "
                           "resolve it with alembic before running `dta`")
    return rows[0] if rows else None


def head_revision(engine: Engine | None = None) -> str | None:
    """The revision the code expects. ``engine`` is accepted for the callers written
    against alembic's ``ScriptDirectory``; the scripts alone decide."""
    del engine
    return _code_head()


@cache
def _code_head() -> str | None:
    return _script_head(MIGRATIONS / "versions")


def _script_head(versions: Path) -> str | None:
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted(versions.glob("*.py")):
        values = _module_constants(script, ("revision", "down_revision"))
        if "revision" not in values:
            continue  # __init__.py and anything else that is not a migration
        revision = values["revision"]
        if not isinstance(revision, str):
            raise JournalError(f"migration {script.name}: revision is not a string")
        revisions.add(revision)
        down = values.get("down_revision")
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, tuple | list):  # a merge revision
            parents.update(str(d) for d in down)
    heads = revisions - parents
    if len(heads) > 1:
        raise JournalError(f"the journal migrations have more than one head: "
                           f"{', '.join(sorted(heads))}")
    return heads.pop() if heads else None


def _module_constants(script: Path, names: tuple[str, ...]) -> dict[str, object]:
    """Module-level ``name = <literal>`` assignments (annotated or not), without running
    the script."""
    out: dict[str, object] = {}
    for node in ast.parse(script.read_text(encoding="utf-8"), str(script)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            out[target.id] = ast.literal_eval(value)
    return out
