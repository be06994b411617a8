"""``dta``: the operator's command line. Thin over ``executor``; heavy imports stay inside
the commands so ``dta --help`` is fast.

Exit codes: one per meaning, ``domain.errors.EXIT_CODES`` (the table in runbooks/README.md).
"""

# No `from __future__ import annotations` in the command modules: typer reads every
# command's signature at start-up (twice), and string annotations cost an eval (a
# compile) each, on every `dta` invocation (benchmarks/README.md). Names that exist only
# for type checking are quoted instead.

import gc
import sys
from typing import Annotated

import typer

from domain.errors import EXIT_INTERRUPTED
from runbooks.common import DtaGroup

# rich_markup_mode=None: plain help text, without importing rich (keeps `dta --help` fast).
app = typer.Typer(help="DTA executor: run the trading daemon and operate it.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, cls=DtaGroup)


def _print_version(value: bool) -> None:
    """``dta --version``: the installed package's version (pyproject.toml), so an operator
    can say which build made a journal or an incident without reading pip's output."""
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"dta {version('dta-executor')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("dta (version unknown: the dta-executor package is not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True,
                       callback=_print_version, help="Print the version and exit.")] = False,
) -> None:
    """DTA executor: run the trading daemon and operate it."""


def _register_groups() -> None:
    """Every command lives in the module named for its job (``runbooks/*_cli.py``); `dta
    --help` lists them in the order they are added here."""
    from runbooks import (
        approvals_cli,
        console_cli,
        governance_cli,
        params_cli,
        providers_cli,
        reconcile_cli,
        replay_cli,
        run_cli,
        setup_cli,
        shadow_cli,
        status_cli,
        trace_cli,
        trading_state_cli,
        tune_cli,
    )

    app.add_typer(setup_cli.config_app, name="config")
    app.add_typer(setup_cli.db_app, name="db")
    app.add_typer(trading_state_cli.app, name="trading-state")
    app.add_typer(params_cli.app, name="params")
    app.add_typer(providers_cli.app, name="providers")
    app.add_typer(shadow_cli.app, name="shadow")
    governance_cli.register(app)
    replay_cli.register(app)
    tune_cli.register(app)
    app.add_typer(approvals_cli.app, name="approvals")
    app.add_typer(approvals_cli.incidents_app, name="incidents")
    run_cli.register(app)
    status_cli.register(app)
    trace_cli.register(app)
    reconcile_cli.register(app)
    setup_cli.register(app)
    app.add_typer(console_cli.app, name="console")


_register_groups()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    finally:
        # The command is done (journal closed, output written). Interpreter shutdown would
        # now run full garbage collections over every object the imports made (pydantic,
        # SQLAlchemy, the table models), a noticeable part of `dta status`
        # (benchmarks/README.md); frozen objects are skipped and the OS takes the memory
        # back at once. atexit handlers, weakref finalizers and stream flushes still run.
        gc.freeze()


if __name__ == "__main__":
    main()
