"""`dta console`: the operator console, a web process of its own over the same journal
and settings as every other `dta` command (README "Console")."""

# No `from __future__ import annotations`: see runbooks/cli.py.

from typing import Annotated

import typer

from runbooks.common import ConfigOpt, JournalOpt, settings_for

app = typer.Typer(help="The operator console (web): approvals, orders, trading state.",
                  invoke_without_command=True)


@app.callback()
def console(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address (default console.host, "
                    "127.0.0.1; another needs TLS).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default console.port, 8787).")] = None,
    config: ConfigOpt = None, journal_url: JournalOpt = None,
) -> None:
    """Serve the console until stopped (Ctrl-C, SIGTERM)."""
    if ctx.invoked_subcommand is not None:
        return
    from executor.console.server import serve
    from strategies.registry import unchecked_strategy

    # Without resolving the strategy: a desk's plugin that no longer imports must not
    # keep people from the approvals and the trading state.
    with unchecked_strategy():
        settings = settings_for(config, journal_url)
    bind_host = host or settings.console.host
    bind_port = port or settings.console.port
    scheme = "https" if settings.console.tls else "http"
    typer.echo(f"dta console on {scheme}://{bind_host}:{bind_port}", err=True)
    serve(settings, host=bind_host, port=bind_port, journal_url=settings.journal.url)


@app.command("hash-password")
def hash_password(
    password: Annotated[str | None, typer.Option(help="The password (default: asked, "
                        "without echo).")] = None,
) -> None:
    """An argon2 hash for [console.users.NAME] password_hash (or the credential
    console_password_NAME)."""
    from executor.console.security import hash_password as make

    secret = password if password is not None else typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True)
    typer.echo(make(secret))
