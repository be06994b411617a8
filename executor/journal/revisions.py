"""The schema revision the code expects, read from the migration scripts as text: no
alembic and no SQLAlchemy, so a read-only command (`dta status`, whose budget is 300 ms)
can check a journal's schema without importing either (``migrate.py`` uses it too)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from domain.errors import JournalError

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"  # alembic's default; env.py does not change it


@cache
def code_head() -> str | None:
    return script_head(MIGRATIONS / "versions")


def script_head(versions: Path) -> str | None:
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in sorted(versions.glob("*.py")):
        values = module_constants(script, ("revision", "down_revision"))
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


def module_constants(script: Path, names: tuple[str, ...]) -> dict[str, object]:
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
