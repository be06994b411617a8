"""Alembic migrations run from code, so `dta db upgrade` and the daemon's start-up need no
alembic.ini on the VPS.

Alembic (a heavy import, plus executing every migration script to find the head) is
imported only by the functions that migrate. The read-only checks every `dta` command
makes (``current_revision``, ``head_revision``) need neither: the current revision is one
SELECT on ``alembic_version`` and the head is read from the scripts' ``revision`` /
``down_revision`` assignments as text (``revisions.py``; ``tests/integration/test_migrate.py``
holds it equal to what alembic computes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from domain.errors import JournalError
from executor.journal.revisions import MIGRATIONS, VERSION_TABLE, code_head

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MIGRATIONS", "VERSION_TABLE", "alembic_config", "current_revision",
           "head_revision", "upgrade"]


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
    return code_head()
