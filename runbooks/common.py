"""Shared pieces of the `dta` commands: exit codes, options, loading settings and journal."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from executor.journal.store import Journal
    from executor.settings import Settings

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_JOURNAL, EXIT_NOT_FOUND, EXIT_REFUSED = 0, 1, 2, 3, 4, 5

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Settings TOML file "
                      "(default: $DTA_CONFIG, config/dta.toml, /etc/dta/dta.toml).")]
JournalOpt = Annotated[str | None, typer.Option("--journal-url",
                       help="Journal database URL (overrides journal.url).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"dta: {message}", err=True)
    raise typer.Exit(code)


def load(config: Path | None, **overrides: Any) -> Settings:
    from executor.errors import ConfigError
    from executor.settings import load_settings

    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


def settings_for(config: Path | None, journal_url: str | None) -> Settings:
    return load(config, journal={"url": journal_url} if journal_url else None)


def journal_for(settings: Settings, *, migrate: bool) -> Journal:
    from executor.errors import JournalError
    from executor.journal.store import Journal

    try:
        return Journal.open(settings.journal.url, migrate_schema=migrate)
    except JournalError as exc:
        fail(str(exc), EXIT_JOURNAL)


def operator_name(operator: str | None) -> str:
    return operator or os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown"


def print_out(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        typer.echo(text)
