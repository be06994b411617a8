"""Shared pieces of the `dta` commands: exit codes, options, loading settings and journal."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from executor.journal.store import Journal
    from executor.settings import Settings

from domain.errors import (  # one exit code per meaning, by the error's type
    EXIT_CONFIG,
    EXIT_JOURNAL,
    EXIT_REFUSED,
)
from executor.exit_codes import exit_code_for, one_line

__all__ = ["ConfigOpt", "DtaGroup", "JournalOpt", "JsonOpt", "OperatorOpt", "exit_code_for",
           "fail", "identified", "journal_for", "load", "one_line", "operator_name",
           "print_out", "settings_for"]

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Settings TOML file "
                      "(default: $DTA_CONFIG, config/dta.toml, /etc/dta/dta.toml).")]
JournalOpt = Annotated[str | None, typer.Option("--journal-url",
                       help="Journal database URL (overrides journal.url).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
OperatorOpt = Annotated[str | None, typer.Option(help="Who (required; with [governance.people], "
                        "a person holding the 'operator' role).")]


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"dta: {message}", err=True)
    raise typer.Exit(code)


def load(config: Path | None, **overrides: Any) -> Settings:
    from domain.errors import ConfigError
    from executor.settings import load_settings

    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def settings_for(config: Path | None, journal_url: str | None) -> Settings:
    return load(config, journal={"url": journal_url} if journal_url else None)


def journal_for(settings: Settings, *, migrate: bool, create: bool = False) -> Journal:
    """The settings' journal. Only ``dta db upgrade`` and a paper run pass ``create``: any
    other command on a journal that does not exist, or has no schema, exits 3 instead of
    acting on (or showing) an empty one."""
    from domain.errors import JournalError
    from executor.journal.store import Journal

    try:
        return Journal.open(settings.journal.url, migrate_schema=migrate, create=create)
    except JournalError as exc:
        fail(str(exc), EXIT_JOURNAL)


class DtaGroup(TyperGroup):
    """The top-level command group: an error escaping any command becomes one line and the
    exit code its type documents (README), not a traceback and exit 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            code = exit_code_for(exc)
            if code is None:
                raise
            typer.echo(f"dta: {one_line(exc)}", err=True)
            raise typer.Exit(code) from None


def operator_name(operator: str | None) -> str:
    """Who made a change that makes trading safer (engage, reduce, demote): recorded,
    falling back to the login name, because such a change must never be refused."""
    return operator or os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown"


def identified(settings: Settings, operator: str | None, role: str = "operator") -> str:
    """Who relaxes trading (release, parameter activation and rollback, approvals,
    promotion): named explicitly, and with ``[governance.people]`` a person holding
    ``role``. Missing: exit 2; not entitled: exit 5."""
    from executor.governance import refusal

    why = refusal(settings.governance, operator, role)
    if why is not None:
        fail(why, EXIT_CONFIG if not (operator or "").strip() else EXIT_REFUSED)
    assert operator is not None
    return operator.strip()


def print_out(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        typer.echo(text)
