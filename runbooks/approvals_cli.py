"""`dta approvals` (the human in the loop) and `dta incidents`."""

# No `from __future__ import annotations`: see runbooks/cli.py.

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from domain.errors import EXIT_CONFIG, EXIT_NOT_FOUND, EXIT_REFUSED
from runbooks.common import (
    ConfigOpt,
    JournalOpt,
    JsonOpt,
    OperatorOpt,
    fail,
    identified,
    journal_for,
    operator_name,
    print_out,
    settings_for,
)

app = typer.Typer(help="Decisions waiting for an analyst: list, show, approve, reject.",
                  no_args_is_help=True)
incidents_app = typer.Typer(help="Incidents opened by triggers and rollbacks: list, show, "
                            "ack, resolve.",
                            no_args_is_help=True)


def _row(a: Any) -> dict[str, Any]:
    return {"id": a.id, "status": a.status, "symbol": a.symbol, "direction": a.direction,
            "decision_id": a.decision_id, "why": a.why,
            "created_at": a.created_at.isoformat(), "expires_at": a.expires_at.isoformat(),
            "operator": a.operator, "note": a.note,
            "decided_at": a.decided_at.isoformat() if a.decided_at else None,
            "client_order_id": a.client_order_id, "intent": a.intent,
            "clock": (a.intent or {}).get("clock", "wall")}


@app.command("list")
def list_(status: Annotated[str | None, typer.Option(help="pending | approved | rejected | "
                            "expired | executed (default: all)")] = None,
          config: ConfigOpt = None, journal_url: JournalOpt = None, as_json: JsonOpt = False,
          ) -> None:
    """Requests, oldest first."""
    journal = journal_for(settings_for(config, journal_url), migrate=False)
    try:
        rows = [_row(a) for a in journal.approvals.all(status)]
    finally:
        journal.close()
    text = "\n".join(f"#{r['id']:<4} {r['status']:<9} {r['symbol']} {r['direction']:<5} "
                     f"expires {r['expires_at']}  {r['why']}" for r in rows) or "no requests"
    print_out(rows, as_json, text)


@app.command("show")
def show(approval_id: int, config: ConfigOpt = None, journal_url: JournalOpt = None) -> None:
    """One request with the decision behind it (each provider's signal)."""
    import json

    from ensemble.provider_text import marked

    journal = journal_for(settings_for(config, journal_url), migrate=False)
    try:
        a = journal.approvals.get_approval(approval_id)
        if a is None:
            fail(f"no approval request #{approval_id}", EXIT_NOT_FOUND)
        data = _row(a)
        # Each rationale is the provider's text: marked, with its instruction flags.
        data["signals"] = [marked(s) for s in journal.decisions.decision_signals(a.decision_id)]
    finally:
        journal.close()
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _decide(approval_id: int, approve: bool, note: str, operator: str | None,
            config: Any, journal_url: str | None) -> None:
    """The rules live in ``executor.operator_actions`` (the console calls the same)."""
    from executor.operator_actions import decide_approval

    settings = settings_for(config, journal_url)
    identified(settings, operator)  # before the journal opens
    journal = journal_for(settings, migrate=False)
    try:
        outcome = decide_approval(journal, settings.governance,
                                  settings.guardrails.weight_feedback, approval_id,
                                  approve=approve, person=operator, note=note,
                                  now=datetime.now(UTC))
    finally:
        journal.close()
    extra = (f"; provider weights now {outcome.weights} (parameter v"
             f"{outcome.new_param_version})" if outcome.new_param_version else "")
    typer.echo(f"request #{approval_id} {outcome.status}{extra}")


@app.command("approve")
def approve(approval_id: int, note: Annotated[str, typer.Option(help="Why (journaled).")],
            operator: OperatorOpt = None,
            config: ConfigOpt = None, journal_url: JournalOpt = None) -> None:
    """Approve before the request expires; the daemon re-checks hard limits and sends it."""
    _decide(approval_id, True, note, operator, config, journal_url)


@app.command("reject")
def reject(approval_id: int, note: Annotated[str, typer.Option(help="Why (journaled).")],
           operator: OperatorOpt = None,
           config: ConfigOpt = None, journal_url: JournalOpt = None) -> None:
    """Reject; nothing is sent."""
    _decide(approval_id, False, note, operator, config, journal_url)


@incidents_app.command("list")
def incidents_list(status: Annotated[str | None, typer.Option(help="open | acknowledged | "
                                     "resolved")] = None,
                   config: ConfigOpt = None, journal_url: JournalOpt = None,
                   as_json: JsonOpt = False) -> None:
    """Incidents, oldest first."""
    journal = journal_for(settings_for(config, journal_url), migrate=False)
    try:
        rows = [{"id": i.id, "at": i.at.isoformat(), "severity": i.severity, "kind": i.kind,
                 "status": i.status, "message": i.message, "details": i.details}
                for i in journal.incidents.all(status)]
    finally:
        journal.close()
    print_out(rows, as_json, "\n".join(
        f"#{r['id']:<4} {r['at']} {r['severity']:<8} {r['status']:<12} {r['kind']}: "
        f"{r['message']}" for r in rows) or "no incidents")


@incidents_app.command("show")
def incidents_show(incident_id: int, config: ConfigOpt = None,
                   journal_url: JournalOpt = None) -> None:
    """One incident with its details and status history."""
    import json

    journal = journal_for(settings_for(config, journal_url), migrate=False)
    try:
        found = [i for i in journal.incidents.all() if i.id == incident_id]
    finally:
        journal.close()
    if not found:
        fail(f"no incident #{incident_id}", EXIT_NOT_FOUND)
    i = found[0]
    typer.echo(json.dumps({"id": i.id, "at": i.at.isoformat(), "severity": i.severity,
                           "kind": i.kind, "status": i.status, "message": i.message,
                           "details": i.details}, indent=2, sort_keys=True, default=str))


def _set_incident(incident_id: int, status: str, note: str, operator: str | None,
                  config: Any, journal_url: str | None) -> None:
    if not note.strip():
        fail("--note must not be empty", EXIT_CONFIG)
    journal = journal_for(settings_for(config, journal_url), migrate=False)
    try:
        current = [i for i in journal.incidents.all() if i.id == incident_id]
        if not current:
            fail(f"no incident #{incident_id}", EXIT_NOT_FOUND)
        if current[0].status == status or current[0].status == "resolved":
            fail(f"incident #{incident_id} is already {current[0].status}", EXIT_REFUSED)
        journal.incidents.set_incident_status(incident_id, status, operator_name(operator), note)
    finally:
        journal.close()
    typer.echo(f"incident #{incident_id} {status}")


@incidents_app.command("ack")
def incidents_ack(incident_id: int, note: Annotated[str, typer.Option(help="What you are "
                  "doing about it.")], operator: Annotated[str | None, typer.Option()] = None,
                  config: ConfigOpt = None, journal_url: JournalOpt = None) -> None:
    """Acknowledge: someone is on it."""
    _set_incident(incident_id, "acknowledged", note, operator, config, journal_url)


@incidents_app.command("resolve")
def incidents_resolve(incident_id: int, note: Annotated[str, typer.Option(help="How it was "
                      "resolved.")], operator: Annotated[str | None, typer.Option()] = None,
                      config: ConfigOpt = None, journal_url: JournalOpt = None) -> None:
    """Resolve with a note (trading is made ACTIVE again separately: `dta trading-state
    activate`)."""
    _set_incident(incident_id, "resolved", note, operator, config, journal_url)
