"""The installation itself: ``dta doctor`` (its health), ``dta config show`` (the
effective settings, secrets masked) and ``dta db upgrade`` (the journal's schema).

Registered by ``runbooks.cli`` through ``register(app)``.
"""

# No `from __future__ import annotations`: see runbooks/cli.py.

import json

import typer

from runbooks.common import ConfigOpt, JournalOpt, JsonOpt, journal_for, print_out, settings_for

config_app = typer.Typer(help="Inspect settings.", no_args_is_help=True)
db_app = typer.Typer(help="Journal database maintenance.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def doctor(config: ConfigOpt = None, journal_url: JournalOpt = None,
           as_json: JsonOpt = False) -> None:
    """Health of this installation; the exit code is the signal (0 ok, 8 degraded,
    9 unhealthy, 2 invalid settings)."""
    from domain.errors import JournalError
    from executor.doctor import exit_code, run_checks
    from executor.journal.store import Journal

    settings = settings_for(config, journal_url)
    journal = None
    error = None
    try:  # never creates a file or a schema: a missing journal is a finding
        journal = Journal.open(settings.journal.url, migrate_schema=False, create=False)
    except JournalError as exc:
        error = str(exc)
        try:  # an unmigrated journal is still worth inspecting
            from executor.journal.store import make_engine

            journal = Journal(make_engine(settings.journal.url, create=False))
        except Exception:
            journal = None
    try:
        findings = run_checks(settings, journal, error)
    finally:
        if journal is not None:
            journal.close()
    code = exit_code(findings)
    data = {"healthy": code == 0, "exit_code": code,
            "checks": [{"check": f.check, "status": f.status, "detail": f.detail}
                       for f in findings]}
    print_out(data, as_json, "\n".join(f"{f.status.upper():<5} {f.check:<17} {f.detail}"
                                    for f in findings))
    raise typer.Exit(code)


@config_app.command("show")
def config_show(config: ConfigOpt = None, journal_url: JournalOpt = None,
                as_json: JsonOpt = False) -> None:
    """Effective settings (file + environment + .env + credentials), secrets masked."""
    settings = settings_for(config, journal_url)
    data = {"settings": settings.public_dict(), "content_hash": settings.content_hash,
            "params_hash": settings.parameter_set().content_hash}
    print_out(data, True, "") if as_json else typer.echo(
        json.dumps(data, indent=2, sort_keys=True, default=str))


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None, journal_url: JournalOpt = None) -> None:
    """Apply journal migrations up to the current schema (safe to repeat)."""
    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=True, create=True)
    try:
        rev, _head = journal.schema_revisions()
    finally:
        journal.close()
    typer.echo(f"journal at revision {rev} (head)")
