"""`dta tune` (the closed loop) and `dta audit` (the nightly self-audit)."""

# No `from __future__ import annotations`: see runbooks/cli.py.

import json
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer

from domain.errors import EXIT_CONFIG, EXIT_REFUSED
from runbooks.common import (
    ConfigOpt,
    JournalOpt,
    JsonOpt,
    fail,
    journal_for,
    operator_name,
    print_out,
    settings_for,
)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune)
    app.command("audit")(audit)


def tune(flat_band: Annotated[float, typer.Option(help="|R| at or below this is flat.")] = 0.1,
         eta: Annotated[float, typer.Option(help="Largest weight change per run.")] = 0.2,
         min_trades: Annotated[int, typer.Option(help="Trades a threshold must keep.")] = 10,
         operator: Annotated[str | None, typer.Option()] = None,
         config: ConfigOpt = None, journal_url: JournalOpt = None,
         as_json: JsonOpt = False) -> None:
    """Tag decisions by outcome, score providers, and propose new weights and thresholds as
    a parameter version with its evidence. Never activates it: `dta params activate`."""
    from executor.tuning import tune as run_tune

    if not 0 < eta < 1:
        fail("--eta must be between 0 and 1", EXIT_CONFIG)
    settings = settings_for(config, journal_url)
    gw = settings.guardrails.weight_feedback
    journal = journal_for(settings, migrate=False)
    try:
        result = run_tune(journal, contract_size=settings.paper.contract_size,
                          author=f"dta tune ({operator_name(operator)})", flat_band=flat_band,
                          eta=eta, min_factor=gw.min_factor, max_factor=gw.max_factor,
                          min_trades=min_trades)
    finally:
        journal.close()
    ev = result.evidence
    data = {"proposed_version": result.version.version if result.version else None,
            "evidence": ev}
    if result.version is None:
        print_out(data, as_json, f"no proposal: {ev.get('reason')}")
        raise typer.Exit(EXIT_REFUSED)
    lines = [f"proposed v{result.version.version} (not active; review with `dta params diff "
             f"{ev['from_version']} {result.version.version}`)",
             f"outcomes: {ev['outcomes']}"]
    for name, rate in ev["hit_rates"].items():
        lines.append(f"  {name}: hit rate {'-' if rate is None else f'{rate:.0%}'} "
                     f"({ev['votes'].get(name, 0)} votes), weight "
                     f"{ev['weights']['current'][name]} -> {ev['weights']['proposed'][name]}")
    mc = ev["min_confidence"]
    lines.append(f"  consensus.min_confidence {mc['current']} -> {mc['proposed']}")
    print_out(data, as_json, "\n".join(lines))


def audit(day: Annotated[str | None, typer.Option(help="UTC day to audit (default: "
                         "yesterday).")] = None,
          config: ConfigOpt = None, journal_url: JournalOpt = None,
          as_json: JsonOpt = False) -> None:
    """Self-audit of one day: each provider's signals against what the market did next;
    a regression opens an incident and writes a tuning proposal (never activated)."""
    from executor.tuning import audit as run_audit
    from executor.tuning import tune as run_tune

    settings = settings_for(config, journal_url)
    try:
        the_day = date.fromisoformat(day) if day else (datetime.now(UTC) - timedelta(days=1)
                                                       ).date()
    except ValueError:
        fail(f"--day {day!r}: use YYYY-MM-DD", EXIT_CONFIG)
    journal = journal_for(settings, migrate=False)
    try:
        report = run_audit(journal, the_day)
        if report["regressions"]:
            incident = journal.incidents.open_incident("high", "self_audit:regression",
                                                       "; ".join(report["regressions"]), report)
            result = run_tune(journal, contract_size=settings.paper.contract_size,
                              author="dta audit")
            report["incident_id"] = incident
            report["proposed_version"] = result.version.version if result.version else None
    finally:
        journal.close()
    print_out(report, as_json, json.dumps(report, indent=2, sort_keys=True, default=str))
