"""`dta providers`: health from the journal's call telemetry, and taking a degraded
provider out of rotation and back (a running daemon follows within a second)."""

# No `from __future__ import annotations`: see runbooks/cli.py.

import time
from datetime import UTC, datetime
from statistics import median
from typing import Annotated, Any

import typer

from domain.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_REFUSED
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

app = typer.Typer(help="Signal providers: status, disable, enable, probe.", no_args_is_help=True)


def _configured(journal: Any, settings: Any) -> dict[str, dict[str, Any]]:
    from guardrails.params import active_version

    active = active_version(journal.params)
    content = active.content if active else settings.parameter_set().values
    return dict(content.get("ensemble", {}).get("providers", {}))


def breaker_state(event: Any, cooldown_s: float, now: datetime) -> str:
    """The breaker's state from its newest journaled transition (the breaker lives in the
    daemon's process). An open breaker whose cooldown is over is half-open: that is what
    the breaker itself reports from then on, and its next call is the probe (the daemon
    journals the transition when it asks the breaker again, at its next decision)."""
    if event is None:
        return "closed"  # never journaled: no daemon has built it, or it never changed
    state = str(event.action).removeprefix("breaker_")
    at = event.at if event.at.tzinfo is not None else event.at.replace(tzinfo=UTC)
    if state == "open" and (now - at).total_seconds() >= cooldown_s:
        return "half_open"
    return state


def provider_rows(journal: Any, settings: Any) -> list[dict[str, Any]]:
    """Each configured provider: rotation, weight, recent outcomes, latency, breaker."""
    configured = _configured(journal, settings)
    disabled = journal.provider_calls.disabled_providers()
    breakers = journal.provider_calls.breaker_events()
    cooldown_s = settings.ensemble.breaker.cooldown_s
    now = datetime.now(UTC)
    rows = []
    for name, cfg in configured.items():
        calls = journal.provider_calls.all(name, limit=100)
        outcomes: dict[str, int] = {}
        for c in calls:
            outcomes[c.outcome] = outcomes.get(c.outcome, 0) + 1
        latencies = [c.latency_ms for c in calls if c.outcome == "ok"]
        last = calls[-1] if calls else None
        rows.append({
            "provider": name, "kind": cfg.get("kind"), "weight": cfg.get("weight"),
            "in_rotation": name not in disabled,
            "disabled_by": disabled[name].operator if name in disabled else None,
            "disabled_reason": disabled[name].reason if name in disabled else None,
            "recent_calls": len(calls), "outcomes": outcomes,
            "latency_p50_ms": round(median(latencies), 3) if latencies else None,
            "breaker": breaker_state(breakers.get(name), cooldown_s, now),
            "breaker_since": breakers[name].at.isoformat() if name in breakers else None,
            "breaker_reason": breakers[name].reason if name in breakers else None,
            "last_call": last.at.isoformat() if last else None,
        })
    return rows


@app.command("status")
def status(config: ConfigOpt = None, journal_url: JournalOpt = None,
           as_json: JsonOpt = False) -> None:
    """Each provider: in rotation or disabled, weight, recent outcomes, latency, breaker."""
    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        rows = provider_rows(journal, settings)
    finally:
        journal.close()
    text = "\n".join(
        f"{r['provider']:<14} {'IN ROTATION' if r['in_rotation'] else 'DISABLED':<12} "
        f"weight {r['weight']}  calls {r['recent_calls']} {r['outcomes']}  "
        f"p50 {r['latency_p50_ms']} ms  breaker {r['breaker']}"
        + (f"  ({r['disabled_by']}: {r['disabled_reason']})" if not r["in_rotation"] else "")
        for r in rows) or "no providers configured"
    print_out(rows, as_json, text)


def _toggle(name: str, action: str, reason: str, operator: str | None, config: Any,
            journal_url: str | None) -> None:
    if not reason.strip():
        fail("--reason must not be empty", EXIT_CONFIG)
    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        if name not in _configured(journal, settings):
            fail(f"no provider {name!r} in the active parameter set", EXIT_NOT_FOUND)
        disabled = name in journal.provider_calls.disabled_providers()
        if disabled == (action == "disable"):
            fail(f"provider {name!r} is already {'disabled' if disabled else 'in rotation'}",
                 EXIT_REFUSED)
        journal.provider_calls.record_provider_event(name, action, operator_name(operator),
                                                     reason.strip())
    finally:
        journal.close()
    typer.echo(f"provider {name} {action}d")


@app.command("disable")
def disable(name: str, reason: Annotated[str, typer.Option(help="Why (journaled).")],
            operator: Annotated[str | None, typer.Option()] = None, config: ConfigOpt = None,
            journal_url: JournalOpt = None) -> None:
    """Take a provider out of rotation; the rest of its class carries on."""
    _toggle(name, "disable", reason, operator, config, journal_url)


@app.command("enable")
def enable(name: str, reason: Annotated[str, typer.Option(help="Why (journaled).")],
           operator: Annotated[str | None, typer.Option()] = None, config: ConfigOpt = None,
           journal_url: JournalOpt = None) -> None:
    """Put a provider back into rotation."""
    _toggle(name, "enable", reason, operator, config, journal_url)


@app.command("probe")
def probe(name: str, config: ConfigOpt = None, journal_url: JournalOpt = None,
          as_json: JsonOpt = False) -> None:
    """Ask one provider about the latest journaled market once, outside the daemon."""
    from domain import Direction, Proposal
    from domain.errors import ConfigError
    from executor.wiring import build_ensemble
    from guardrails.params import active_version
    from strategies.snapshot import SnapshotBuilder

    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        configured = _configured(journal, settings)
        if name not in configured:
            fail(f"no provider {name!r} in the active parameter set", EXIT_NOT_FOUND)
        counts = journal.queries.bar_counts()["processed"]
        if not counts:
            fail("the journal has no bars to build a snapshot from", EXIT_FAILURE)
        symbol, timeframe = next(iter(counts)).split("/")
        builder = SnapshotBuilder()
        snapshot = None
        for bar in journal.runs.iter_bars(symbol, timeframe, limit=500):
            snapshot = builder.update(bar)
        active = active_version(journal.params)
        content = active.content if active else settings.parameter_set().values
    finally:
        journal.close()
    assert snapshot is not None
    atr = snapshot.atr or abs(snapshot.bar.high - snapshot.bar.low) or 1e-6
    proposal = Proposal("probe", symbol, timeframe, snapshot.bar.time, Direction.LONG,
                        snapshot.bar.close, snapshot.bar.close - atr,
                        snapshot.bar.close + 2 * atr, "operator probe")
    try:
        ensemble = build_ensemble(settings, content, only=name)
    except ConfigError as exc:  # the provider's settings: invalid settings, as anywhere
        fail(str(exc), exc.exit_code)
    started = time.perf_counter()
    decision = ensemble.evaluate(proposal, snapshot)
    elapsed_ms = (time.perf_counter() - started) * 1e3
    close = getattr(ensemble, "close", None)
    if callable(close):
        close()
    signal = decision.signals[0] if decision.signals else None
    ok = signal is not None and signal.abstain_reason is None
    data = {"provider": name, "ok": ok, "latency_ms": round(elapsed_ms, 3),
            "direction": signal.direction.value if signal else None,
            "confidence": signal.confidence if signal else None,
            "abstain_reason": signal.abstain_reason if signal else "no signal"}
    print_out(data, as_json, f"{name}: {'ok' if ok else 'NOT OK'} in {elapsed_ms:.1f} ms — "
              + (f"{data['direction']} {data['confidence']:.2f}" if ok
                 else str(data["abstain_reason"])))
    if not ok:
        raise typer.Exit(EXIT_FAILURE)


@app.command("register")
def register_(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The provider data register: destination, fields sent, retention, training use, last
    review, and warnings (overdue review, undeclared fields)."""
    from dataclasses import asdict

    from executor.data_register import register

    settings = settings_for(config, None)
    rows = register(settings)
    lines = []
    for r in rows:
        lines.append(f"{r.provider} ({r.kind}) -> {r.destination}"
                     + (f" [{r.region}]" if r.region else ""))
        if r.kind not in ("structure", "momentum", "smc_rules"):
            lines.append(f"  sends: {', '.join(r.sent_fields) or '-'}; declared: "
                         f"{', '.join(r.declared_fields) or '-'}")
            lines.append(f"  retention {r.retention_days} days, training use "
                         f"{r.training_use}, last review {r.last_review}")
        lines += [f"  WARNING {w}" for w in r.warnings]
    print_out([asdict(r) for r in rows], as_json, "\n".join(lines))


@app.command("matrix")
def matrix(config: ConfigOpt = None, journal_url: JournalOpt = None,
           as_json: JsonOpt = False) -> None:
    """Capability matrix from the journal: latency p50/p95, cost per 1K tokens, error and
    abstention rates, agreement with the ensemble, hit rate against trade outcomes."""
    from executor.reports.journal_data import load_run_data
    from executor.reports.metrics import reconstruct_trades
    from executor.reports.providers import provider_stats

    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        data = load_run_data(journal)
    finally:
        journal.close()
    book = reconstruct_trades(data.orders, data.fills, settings.paper.contract_size)
    rows = []
    for st in provider_stats(data.decisions, data.provider_calls, book.closed):
        tokens = st.tokens_in + st.tokens_out
        rows.append({
            "provider": st.provider, "class": st.provider_class, "model": st.model,
            "calls": st.calls, "latency_p50_ms": st.latency_p50_ms,
            "latency_p95_ms": st.latency_p95_ms,
            "cost_per_1k_tokens": (st.cost / tokens * 1000) if tokens else None,
            "cost": st.cost,
            "error_rate": (st.failures / st.calls) if st.calls else None,
            "invalid_rate": (st.invalid / st.calls) if st.calls else None,
            "abstention_rate": (st.abstentions / (st.abstentions + st.votes))
            if (st.abstentions + st.votes) else None,
            "agreement": st.agreement, "hit_rate": st.hit_rate, "hit_votes": st.hit_votes,
            "status": st.status})

    def pct(v: Any) -> str:
        return "-" if v is None else f"{float(v):.0%}"

    def num(v: Any, unit: str = "") -> str:
        return "-" if v is None else f"{float(v):.3g}{unit}"

    header = (f"{'provider':<14}{'status':<10}{'calls':>7}{'p50':>9}{'p95':>9}{'$/1K tok':>10}"
              f"{'errors':>8}{'abstain':>9}{'agree':>7}{'hit':>7}")
    lines = [header] + [
        f"{r['provider']:<14}{r['status']:<10}{r['calls']:>7}"
        f"{num(r['latency_p50_ms'], 'ms'):>9}{num(r['latency_p95_ms'], 'ms'):>9}"
        f"{num(r['cost_per_1k_tokens']):>10}{pct(r['error_rate']):>8}"
        f"{pct(r['abstention_rate']):>9}{pct(r['agreement']):>7}{pct(r['hit_rate']):>7}"
        for r in rows]
    print_out(rows, as_json, "\n".join(lines))
