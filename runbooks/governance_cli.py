"""`dta promote` and `dta demote`: the promotion gate, enforced by the daemon."""

# No `from __future__ import annotations`: see runbooks/cli.py.

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from domain.errors import EXIT_CONFIG, EXIT_REFUSED
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

if TYPE_CHECKING:
    from executor.journal.store import Journal
    from executor.settings import Settings
    from guardrails.promotion import Evidence, ThresholdResult


def register(app: typer.Typer) -> None:
    app.command("promote")(promote)
    app.command("demote")(demote)


def promote(
    account: Annotated[str | None, typer.Argument(help="Account (default: the settings').")]
    = None,
    to: Annotated[str | None, typer.Option(help="shadow | live")] = None,
    sign_off: Annotated[str | None, typer.Option("--sign-off", help="Your role, to record "
                        "your sign-off (e.g. trading, compliance, platform).")] = None,
    person: Annotated[str | None, typer.Option("--person", "--operator", help="Who signs, "
                      "or promotes once every role has signed (required for either; with "
                      "[governance.people], a person holding that role, or 'operator' to "
                      "promote).")] = None,
    note: Annotated[str | None, typer.Option(help="Sign-off note (journaled).")] = None,
    history: Annotated[bool, typer.Option("--history", help="Show the append-only history.")]
    = False,
    config: ConfigOpt = None, journal_url: JournalOpt = None, as_json: JsonOpt = False,
) -> None:
    """Check the evidence for a promotion, record a sign-off, and promote only when every
    configured role has signed and every threshold passes."""
    settings = settings_for(config, journal_url)
    acct = account or settings.account
    strategy = settings.strategy.name
    journal = journal_for(settings, migrate=True)
    try:
        if history:
            _print_history(journal, acct, as_json)
            return
        target = _next_step(journal, acct, strategy, to)
        if sign_off is not None:
            _sign_off(settings, journal, acct, strategy, target, sign_off, person, note)
        gate = _gate(settings, journal, acct, strategy, target, person)
    finally:
        journal.close()
    _print_gate(gate, acct, strategy, target, as_json)
    if not gate.promoted:
        raise typer.Exit(EXIT_REFUSED)


@dataclass(frozen=True)
class _Gate:
    """The promotion gate's answer: the evidence, each threshold, who has not signed, why
    the person may not promote (None: they may), and whether the promotion was made."""

    evidence: "Evidence"
    results: "list[ThresholdResult]"
    missing: list[str]
    promoter: str | None
    promoted: bool


def _print_history(journal: "Journal", acct: str, as_json: bool) -> None:
    rows = [{"at": c.at.isoformat(), "action": c.action, "mode": c.mode,
             "role": c.role, "person": c.person, "note": c.note,
             "strategy": c.strategy} for c in journal.clearances.clearances(acct)]
    print_out(rows, as_json, "\n".join(
        f"{r['at']} {r['action']:<8} {r['mode']:<7} {r['role'] or '-':<11} "
        f"{r['person']}: {r['note']}" for r in rows) or "no history")


def _next_step(journal: "Journal", acct: str, strategy: str, to: str | None) -> str:
    """``to`` if it is the next step from the mode the account is cleared for."""
    from guardrails.clearance import cleared_mode

    if to not in ("shadow", "live"):
        fail("--to must be shadow or live", EXIT_CONFIG)
    current = cleared_mode(journal.clearances, acct, strategy)
    if (current, to) not in (("paper", "shadow"), ("shadow", "live")):
        fail(f"{acct}/{strategy} is cleared for {current}: the next step is "
             f"{'shadow' if current == 'paper' else 'none'}, not {to}", EXIT_REFUSED)
    return to


def _sign_off(settings: "Settings", journal: "Journal", acct: str, strategy: str, to: str,
              role: str, person: str | None, note: str | None) -> None:
    """Journal ``person``'s sign-off in ``role``: a configured role, a note, and a person
    who has not signed for this step in another role."""
    from executor.governance import signoffs_for

    gov = settings.governance
    if role not in gov.roles:
        fail(f"--sign-off {role!r}: roles are {', '.join(gov.roles)}", EXIT_CONFIG)
    if not (note or "").strip():
        fail("a sign-off needs --note", EXIT_CONFIG)
    signer = identified(settings, person, role)
    other = [r for r, p in signoffs_for(journal, acct, strategy, to)
             if p == signer and r != role]
    if other:
        fail(f"{signer} already signed as {other[0]} for {to}: each role needs a "
             "different person", EXIT_REFUSED)
    journal.clearances.record_clearance(account=acct, strategy=strategy, action="signoff",
                                        mode=to, role=role, person=signer, note=note or "")


def _gate(settings: "Settings", journal: "Journal", acct: str, strategy: str, to: str,
          person: str | None) -> _Gate:
    """Assess the evidence and sign-offs; promote (journaled) when all pass and ``person``
    may act as the operator."""
    from executor.governance import assess, evidence_dict, refusal, signoffs_for
    from executor.settings import OPERATOR_ROLE

    gov = settings.governance
    thresholds = (gov.to_shadow if to == "shadow" else gov.to_live).model_dump()
    evidence, results, missing = assess(
        journal, account=acct, strategy=strategy, target=to, thresholds=thresholds,
        roles=gov.roles, contract_size=settings.paper.contract_size,
        initial_balance=settings.paper.initial_balance,
        pairing_window=timedelta(minutes=settings.shadow.pairing_window_minutes))
    failing = [r for r in results if not r.passed]
    # The promotion itself is an operator's act: without one, the gate only reports.
    promoter = refusal(gov, person, OPERATOR_ROLE)
    promoted = not failing and not missing and promoter is None
    if promoted:
        signers = {r: p for r, p in reversed(signoffs_for(journal, acct, strategy, to))}
        journal.clearances.record_clearance(
            account=acct, strategy=strategy, action="promote", mode=to,
            person=(person or "").strip(), note="all thresholds passed; signed by "
            + ", ".join(f"{r} ({signers.get(r, '?')})" for r in gov.roles),
            evidence=evidence_dict(evidence))
    return _Gate(evidence, results, missing, promoter, promoted)


def _print_gate(gate: _Gate, acct: str, strategy: str, to: str, as_json: bool) -> None:
    from executor.governance import evidence_dict

    results, missing = gate.results, gate.missing
    data: dict[str, Any] = {
        "account": acct, "strategy": strategy, "to": to, "promoted": gate.promoted,
        "evidence": evidence_dict(gate.evidence),
        "thresholds": [{"name": r.name, "passed": r.passed, "detail": r.detail}
                       for r in results],
        "missing_signoffs": missing}
    lines = [f"{acct}/{strategy} -> {to}: {'PROMOTED' if gate.promoted else 'not promoted'}"]
    lines += [f"  {'ok  ' if r.passed else 'FAIL'} {r.name}: {r.detail}" for r in results]
    if missing:
        lines.append(f"  missing sign-offs: {', '.join(missing)}")
    if all(r.passed for r in results) and not missing and gate.promoter is not None:
        lines.append(f"  ready to promote, but the promotion {gate.promoter}")
        data["promoter"] = gate.promoter
    print_out(data, as_json, "\n".join(lines))


def demote(
    account: Annotated[str | None, typer.Argument(help="Account (default: the settings').")]
    = None,
    to: Annotated[str, typer.Option(help="paper | shadow")] = "paper",
    reason: Annotated[str, typer.Option(help="Why (journaled).")] = "",
    operator: Annotated[str | None, typer.Option()] = None,
    config: ConfigOpt = None, journal_url: JournalOpt = None,
) -> None:
    """Immediate: one operator and a reason; trading goes REDUCING at once and a running
    daemon stops sending at its next decision."""
    from guardrails.clearance import cleared_mode
    from guardrails.promotion import RANK
    from guardrails.state import TradingState, set_state

    if not reason.strip():
        fail("--reason is required", EXIT_CONFIG)
    if to not in ("paper", "shadow"):
        fail("--to must be paper or shadow", EXIT_CONFIG)
    settings = settings_for(config, journal_url)
    acct = account or settings.account
    strategy = settings.strategy.name
    journal = journal_for(settings, migrate=True)
    try:
        current = cleared_mode(journal.clearances, acct, strategy)
        if RANK[to] >= RANK[current]:
            fail(f"{acct}/{strategy} is cleared for {current}; demoting to {to} changes "
                 "nothing", EXIT_REFUSED)
        who = operator_name(operator)
        journal.clearances.record_clearance(account=acct, strategy=strategy, action="demote",
                                            mode=to, person=who, note=reason)
        set_state(journal.trading_state, TradingState.REDUCING, operator=who,
                  reason=f"demoted to {to}: {reason}")
    finally:
        journal.close()
    typer.echo(f"{acct}/{strategy} demoted to {to}; trading REDUCING")
