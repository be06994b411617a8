"""``dta reconcile``: compare the journal with the live broker now, outside a running
daemon (which reconciles at its own start: ``executor.engine.startup``).

Registered by ``runbooks.cli`` through ``register(app)``.
"""

# No `from __future__ import annotations`: see runbooks/cli.py.

import json

import typer

from domain.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_REFUSED
from runbooks.common import (
    ConfigOpt,
    JournalOpt,
    JsonOpt,
    fail,
    journal_for,
    print_out,
    settings_for,
)


def register(app: typer.Typer) -> None:
    app.command("reconcile")(reconcile)


def reconcile(config: ConfigOpt = None, journal_url: JournalOpt = None,
              as_json: JsonOpt = False) -> None:
    """Compare the journal with the live broker now: adopt matches, record fills made while
    down, flag external orders; a position mismatch halts trading. Needs the account's
    lease, so it refuses (exit 5) while a daemon runs: the daemon reconciles at start."""
    from domain import Fill, OrderSide
    from domain.errors import ConfigError, LeaseError, VenueError
    from executor.engine.startup import reconcile as run_reconcile
    from executor.wiring import build_live_parts
    from guardrails.monitors import reconciliation_trigger
    from guardrails.state import set_state

    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        try:
            parts = build_live_parts(settings, journal)
        except ConfigError as exc:
            fail(str(exc), EXIT_CONFIG)
        except LeaseError as exc:
            fail(f"{exc} (stop the daemon, or let its start-up reconciliation run)",
                  EXIT_REFUSED)
        except VenueError as exc:
            fail(f"cannot reach the broker: {exc}", EXIT_FAILURE)
        try:
            fills = journal.orders.fills()
            parts.broker.restore(journal.orders.all(settings.account),
                                 [Fill(f.client_order_id, f.fill_id, f.symbol, OrderSide(f.side),
                                       f.time, f.price, f.volume, f.fee) for f in fills],
                                 [f.kind for f in fills])
            report = run_reconcile(journal, parts.broker, settings.account,
                                   settings=settings.broker.resolver)
            journal.commit()
            trigger = reconciliation_trigger(not report.refuse_to_trade,
                                             "; ".join(report.reasons))
            if (trigger is not None and trigger.state is not None
                    and set_state(journal.trading_state, trigger.state, operator="dta reconcile",
                                  reason=trigger.reason, trigger=trigger.name)):
                journal.incidents.open_incident("critical", f"halted:{trigger.name}",
                                                trigger.reason)
        finally:
            parts.lease.release()
    finally:
        journal.close()
    data = report.summary()
    print_out(data, as_json, json.dumps(data, indent=2, sort_keys=True, default=str))
    if report.refuse_to_trade:
        raise typer.Exit(EXIT_REFUSED)
