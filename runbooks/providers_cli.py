"""`dta providers`: health from the journal's call telemetry, and taking a degraded
provider out of rotation and back (a running daemon follows within a second)."""

# No `from __future__ import annotations`: see runbooks/cli.py.

import time
from datetime import UTC, datetime
from statistics import median
from typing import Annotated, Any

import typer

from domain.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_NOT_FOUND
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


def provider_rows(journal: Any, settings: Any) -> list[dict[str, Any]]:
    """Each configured provider: rotation, weight, recent outcomes, latency, breaker."""
    from executor.provider_state import breaker_state, configured_providers

    configured = configured_providers(journal, settings)
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
            "breaker": breaker_state(breakers[name].action if name in breakers else None,
                                     breakers[name].at if name in breakers else None,
                                     cooldown_s, now),
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
    from executor.provider_actions import set_rotation

    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        set_rotation(journal, settings, name, enable=action == "enable",
                     person=operator_name(operator), reason=reason)
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
    from executor.provider_state import configured_providers
    from executor.wiring import build_ensemble
    from guardrails.params import active_version
    from strategies.snapshot import SnapshotBuilder

    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        configured = configured_providers(journal, settings)
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
def matrix(
    config: ConfigOpt = None, journal_url: JournalOpt = None, as_json: JsonOpt = False,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    days: Annotated[float | None, typer.Option(help="The last N days of market time "
                    "before the journal's newest bar.")] = None,
    since: Annotated[datetime | None, typer.Option(help="Window start (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Window end, included (UTC).")]
    = None,
    horizon: Annotated[int, typer.Option(help="Bars ahead for the next-move hit rate.")] = 8,
    to_postgres: Annotated[str | None, typer.Option("--to-postgres", help="Also append the "
                           "matrix to a PostgreSQL table (URL; for shared analytics).")]
    = None,
    table: Annotated[str, typer.Option(help="Table for --to-postgres (schema.table "
                     "allowed).")] = "dta_provider_matrix",
) -> None:
    """Provider matrix over a window: status and breaker, latency p50/p99, errors and
    timeouts, tokens and cost per decision, hit rate against the market's next move,
    agreement with the ensemble and between providers. CSV, JSON or a PostgreSQL table."""
    from executor.provider_matrix import load_matrix, to_csv, to_json
    from executor.provider_matrix import to_postgres as export

    fmt = "json" if as_json else fmt
    if fmt not in ("table", "csv", "json"):
        fail(f"--format {fmt!r}: table, csv or json", EXIT_CONFIG)
    if horizon < 1:
        fail("--horizon must be at least 1 bar", EXIT_CONFIG)
    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        m = load_matrix(journal, settings, days=days, since=_utc(since), until=_utc(until),
                        horizon_bars=horizon)
    finally:
        journal.close()
    if to_postgres:
        from executor.journal.direct import shown_url

        written = export(m, to_postgres, table=table)
        typer.echo(f"{written} rows appended to {table} at {shown_url(to_postgres)}",
                   err=True)
    typer.echo(to_csv(m) if fmt == "csv" else to_json(m) if fmt == "json"
               else _matrix_table(m), nl=fmt == "table")


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _matrix_table(m: Any) -> str:
    def pct(v: Any) -> str:
        return "-" if v is None else f"{float(v):.0%}"

    def num(v: Any, unit: str = "") -> str:
        return "-" if v is None else f"{float(v):.3g}{unit}"

    window = (f"window {m.window.start or 'start'} .. {m.window.end or 'end'}, next move "
              f"{m.horizon_bars} bars")
    header = (f"{'provider':<14}{'status':<10}{'breaker':<10}{'calls':>7}{'p50':>11}"
              f"{'p99':>11}{'errors':>8}{'t/o':>5}{'$/dec':>9}{'tokens':>9}{'hit':>6}"
              f"{'agree':>7}")
    lines = [window, header] + [
        f"{r.provider:<14}{r.status + ('' if r.in_rotation else '*'):<10}{r.breaker:<10}"
        f"{r.calls:>7}{num(r.latency_p50_ms, ' ms'):>11}{num(r.latency_p99_ms, ' ms'):>11}"
        f"{r.errors:>8}{r.timeouts:>5}{num(r.cost_per_decision):>9}"
        f"{r.tokens_in + r.tokens_out:>9}{pct(r.hit_rate):>6}"
        f"{pct(r.agreement_with_ensemble):>7}" for r in m.rows]
    between = [f"  {r.provider} agrees with " + ", ".join(
        f"{o} {pct(v)}" for o, v in r.agreement.items()) for r in m.rows if r.agreement]
    out = lines + (["agreement between providers:", *between] if between else [])
    if any(not r.in_rotation for r in m.rows):
        out.append("* out of rotation (dta providers enable NAME --reason ...)")
    return "\n".join(out)
