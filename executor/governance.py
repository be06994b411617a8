"""Gathering the evidence for a promotion from the journal (the clearance veto itself is
``guardrails.clearance``).

paper -> shadow is judged on the paper record; shadow -> live on the shadow record plus
its pairing with the EA. Only runs of the source mode on this account count.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from domain import timeframe_seconds
from executor.journal.store import Journal
from executor.settings import GovernanceSettings
from executor.shadow import EaDeal, OurEntry, pair, summarize
from guardrails.promotion import Evidence, ThresholdResult, evaluate, missing_signoffs

FAILED_OUTCOMES = ("error", "timeout", "invalid")


def signoffs_for(journal: Journal, account: str, strategy: str,
                 mode: str) -> list[tuple[str, str]]:
    """(role, person) sign-offs for ``mode`` since the last promotion or demotion."""
    signed: list[tuple[str, str]] = []
    for c in journal.clearances.clearances(account, strategy):
        if c.action in ("promote", "demote"):
            signed = []
        elif c.action == "signoff" and c.mode == mode and c.role:
            signed.append((c.role, c.person))
    return signed


def refusal(gov: GovernanceSettings, person: str | None, role: str) -> str | None:
    """Why ``person`` may not act in ``role`` (None: they may). Acting needs a name given
    explicitly (never a login name guessed from the environment); with
    ``[governance.people]`` configured, a listed person who holds the role."""
    name = (person or "").strip()
    if not name:
        return "needs an identified person: give --operator NAME"
    if gov.people:
        if name not in gov.people:
            return f"{name!r} is not listed in [governance.people]"
        if role not in gov.people[name]:
            held = ", ".join(gov.people[name]) or "none"
            return f"{name!r} does not hold the {role!r} role (holds: {held})"
    return None


def gather_evidence(journal: Journal, account: str, source_mode: str, *,
                    contract_size: float, initial_balance: float,
                    pairing_window: timedelta) -> Evidence:
    from executor.reports.metrics import compute_metrics, reconstruct_trades

    runs = journal.queries.run_ids(source_mode, account)
    orders = journal.queries.orders_in_runs(runs)
    coids = {o.client_order_id for o in orders}
    fills = [f for f in journal.orders.fills() if f.client_order_id in coids]
    book = reconstruct_trades(orders, fills, contract_size)
    metrics = compute_metrics(book.closed, initial_balance=initial_balance)
    outcomes = journal.queries.provider_outcomes()
    total = sum(outcomes.values())
    failed = sum(n for o, n in outcomes.items() if o in FAILED_OUTCOMES)
    serious = [i for i in journal.incidents.all("open") if i.severity in ("high", "critical")]
    agreement = None
    if source_mode == "shadow":
        ours = [OurEntry(r["client_order_id"], r["symbol"],
                         r["bar_time"] + timedelta(seconds=timeframe_seconds(r["timeframe"])),
                         r["side"], r["entry"], r["stop_loss"], r["take_profit"],
                         tuple(r["tags"] or ()))
                for r in journal.queries.entry_orders_with_proposals(account)
                if r["client_order_id"] in coids]
        deals = [EaDeal(d.ticket, d.symbol, d.time, d.side, d.price, d.volume, d.entry, d.sl,
                        d.tp, d.magic, d.comment) for d in journal.ea_deals.all()]
        agreement = summarize(pair(ours, deals, window=pairing_window))["direction_agreement"]
    return Evidence(
        days=len(journal.queries.bar_dates(runs)), decisions=journal.queries.decision_count(runs),
        trades=metrics.trades, max_drawdown_pct=metrics.max_drawdown_pct,
        expectancy_r=metrics.expectancy_r,
        provider_error_rate=(failed / total) if total else None,
        open_serious_incidents=len(serious), direction_agreement=agreement)


def assess(journal: Journal, *, account: str, strategy: str, target: str,
           thresholds: dict[str, Any], roles: list[str], contract_size: float,
           initial_balance: float, pairing_window: timedelta,
           ) -> tuple[Evidence, list[ThresholdResult], list[str]]:
    source = "paper" if target == "shadow" else "shadow"
    evidence = gather_evidence(journal, account, source, contract_size=contract_size,
                               initial_balance=initial_balance, pairing_window=pairing_window)
    # Not a threshold: no configuration can waive the source mode's own record.
    record = ThresholdResult(f"{source}_record", evidence.days > 0 and evidence.decisions > 0,
                             f"{evidence.days} day(s), {evidence.decisions} decision(s) of "
                             f"{source} runs on {account} (need some)")
    results = [record, *evaluate(evidence, thresholds)]
    missing = missing_signoffs(roles, signoffs_for(journal, account, strategy, target))
    return evidence, results, missing


def evidence_dict(evidence: Evidence) -> dict[str, Any]:
    return asdict(evidence)
