"""`dta trading-state`: ACTIVE, REDUCING or HALTED, for every account this journal trades.

One name everywhere: the commands, the journal table (``trading_state_events``), the code
(``guardrails.state.TradingState``), `dta status` and the runbooks all say ACTIVE,
REDUCING and HALTED. Making trading safer (halt, reduce from ACTIVE) is never refused;
relaxing it (activate, or reduce from HALTED) needs an identified operator.
"""

# No `from __future__ import annotations`: see runbooks/cli.py.

from typing import Annotated, Any

import typer

from domain.errors import EXIT_CONFIG
from runbooks.common import (
    ConfigOpt,
    JournalOpt,
    JsonOpt,
    fail,
    identified,
    journal_for,
    operator_name,
    print_out,
    settings_for,
)

app = typer.Typer(help="Trading state: ACTIVE, REDUCING (exits only) or HALTED; persists "
                  "across restarts.", no_args_is_help=True)

WhoOpt = Annotated[str | None, typer.Option("--operator",
                   help="Who (default: $SUDO_USER/$USER).")]
ReasonOpt = Annotated[str, typer.Option(help="Why (journaled).")]


def _settings(config: Any, journal_url: str | None) -> Any:
    """The settings without resolving the strategy: a desk's plugin that no longer imports
    must not stand between an operator and a halt."""
    from strategies.registry import unchecked_strategy

    with unchecked_strategy():
        return settings_for(config, journal_url)


def _move(target_name: str, reason: str, operator: str | None, config: Any,
          journal_url: str | None) -> None:
    """The rules live in ``executor.operator_actions`` (the console calls the same)."""
    from executor.operator_actions import change_trading_state

    if not reason.strip():
        fail("--reason must not be empty", EXIT_CONFIG)
    settings = _settings(config, journal_url)
    # An activation always needs an identified operator, checked before the journal opens.
    if target_name == "ACTIVE":
        identified(settings, operator)
    journal = journal_for(settings, migrate=True)
    try:
        change = change_trading_state(journal, settings.governance, target_name,
                                      person=operator, reason=reason,
                                      fallback_person=operator_name(operator))
    finally:
        journal.close()
    typer.echo(f"trading state {change.state} by {change.person}: {change.reason}")


@app.command("halt")
def halt(reason: ReasonOpt, operator: WhoOpt = None, config: ConfigOpt = None,
         journal_url: JournalOpt = None) -> None:
    """HALTED: block every order until an operator activates trading again."""
    _move("HALTED", reason, operator, config, journal_url)


@app.command("reduce")
def reduce(reason: ReasonOpt, operator: WhoOpt = None, config: ConfigOpt = None,
           journal_url: JournalOpt = None) -> None:
    """REDUCING: only orders that shrink exposure pass (from HALTED: an identified operator)."""
    _move("REDUCING", reason, operator, config, journal_url)


@app.command("activate")
def activate(
    reason: ReasonOpt,
    operator: Annotated[str | None, typer.Option(help="Who (required; with [governance."
                        "people], a person holding the 'operator' role).")] = None,
    config: ConfigOpt = None, journal_url: JournalOpt = None,
) -> None:
    """ACTIVE again; needs an identified operator and a reason."""
    _move("ACTIVE", reason, operator, config, journal_url)


@app.command("history")
def history(limit: Annotated[int, typer.Option(help="Newest events to show.")] = 20,
            config: ConfigOpt = None, journal_url: JournalOpt = None,
            as_json: JsonOpt = False) -> None:
    """The newest trading-state changes: when, to what, by whom (or which trigger), why."""
    settings = _settings(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        rows = [{"at": e.at.isoformat(), "state": e.state, "operator": e.operator,
                 "trigger": e.trigger, "reason": e.reason}
                for e in journal.trading_state.trading_state_events(limit)]
    finally:
        journal.close()
    text = "\n".join(f"{r['at']}  {r['state']:<8}  {r['trigger']} by {r['operator']}: "
                     f"{r['reason']}" for r in rows) or "no trading-state change journaled"
    print_out(rows, as_json, text)
