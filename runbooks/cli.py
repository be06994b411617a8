"""``dta``: the operator's command line. Thin over ``executor``; heavy imports stay inside
the commands so ``dta --help`` is fast.

Exit codes (stable, documented in the README):
  0 ok · 1 runtime failure · 2 invalid settings or usage · 3 journal unavailable or not
  migrated · 4 not found · 5 refused (e.g. trading state already that)
"""

# No `from __future__ import annotations` in the command modules: typer reads every
# command's signature at start-up (twice), and string annotations cost an eval (a
# compile) each, ~15 ms of every `dta` invocation for the 36 commands. Names that exist
# only for type checking are quoted instead.

import gc
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from domain.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_REFUSED
from runbooks.common import (
    ConfigOpt,
    DtaGroup,
    JournalOpt,
    JsonOpt,
    fail,
    journal_for,
    load,
    operator_name,
    print_out,
)

# rich_markup_mode=None: plain help text, without importing rich (keeps `dta --help` fast).
app = typer.Typer(help="DTA executor: run the trading daemon and operate it.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, cls=DtaGroup)
config_app = typer.Typer(help="Inspect settings.", no_args_is_help=True)
db_app = typer.Typer(help="Journal database maintenance.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")


def _register_groups() -> None:
    from runbooks import (
        approvals_cli,
        governance_cli,
        params_cli,
        providers_cli,
        replay_cli,
        shadow_cli,
        trading_state_cli,
        tune_cli,
    )

    app.add_typer(trading_state_cli.app, name="trading-state")
    app.add_typer(params_cli.app, name="params")
    app.add_typer(providers_cli.app, name="providers")
    app.add_typer(shadow_cli.app, name="shadow")
    governance_cli.register(app)
    replay_cli.register(app)
    tune_cli.register(app)
    app.add_typer(approvals_cli.app, name="approvals")
    app.add_typer(approvals_cli.incidents_app, name="incidents")


_register_groups()

_fail = fail
_settings = load
_journal = journal_for
_operator = operator_name
_print = print_out


def _journal_override(journal_url: str | None) -> dict[str, Any] | None:
    return {"url": journal_url} if journal_url else None


# ---------------------------------------------------------------------------------- run


@app.command()
def run(
    mode: Annotated[str | None, typer.Option(help="paper | shadow | live")] = None,
    config: ConfigOpt = None,
    data: Annotated[Path | None, typer.Option(help="Bar file to replay: MT5 CSV export or "
                    "ccxt-style OHLCV JSON (overrides data.path).")] = None,
    symbol: Annotated[str | None, typer.Option(help="Symbol, if not inferable.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Timeframe (M15, 1h...), if not "
                         "inferable.")] = None,
    journal_url: JournalOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the daemon. With a replay feed it replays the file at full speed through the live
    cycle and prints a summary; SIGTERM finishes the cycle in progress and exits 0."""
    data_over = {k: v for k, v in {"symbol": symbol, "timeframe": timeframe}.items() if v}
    settings = _settings(config, mode=mode, journal=_journal_override(journal_url),
                         data=data_over or None)
    from executor.engine.node import Node, RunAborted  # the process: lease .. exit code

    try:
        summary = Node(settings, data=data, warn=_warn).run()
    except RunAborted as exc:
        if exc.message is not None:
            _fail(exc.message, exc.code)
        raise typer.Exit(exc.code) from None
    _print(summary, as_json, _format_summary(summary))


def _warn(message: str) -> None:
    typer.echo(f"dta: {message}", err=True)


def _format_summary(s: dict[str, Any]) -> str:
    rejected = s["bars_rejected"]
    vetoes = s["vetoes"]
    lat = s["latency"]
    lines = [
        f"DTA executor — {s['mode']} run {s['status']} (account {s['account']}, "
        f"params {s['params_hash']})",
        f"  bars processed   {s['bars_processed']:>8}   ({s['bars_per_s']:,.0f} bars/s, "
        f"{s['elapsed_s']:.2f} s; gaps flagged {s['gaps_flagged']})",
        f"  bars rejected    {sum(rejected.values()):>8}   "
        + (", ".join(f"{k} {v}" for k, v in sorted(rejected.items())) or "none"),
        f"  proposals        {s['proposals']:>8}",
        f"  vetoes           {sum(vetoes.values()):>8}   "
        + (", ".join(f"{k} {v}" for k, v in sorted(vetoes.items())) or "none"),
        f"  orders           {sum(s['orders'].values()):>8}   now "
        + (", ".join(f"{k} {v}" for k, v in sorted(s["journal_orders_by_state"].items()))
           or "none"),
        f"  approvals        {s['approvals']['queued']:>8}   queued, "
        f"{s['approvals']['expired']} expired, {s['approvals']['executed']} executed",
        f"  fills            {s['fills']:>8}",
        f"  decision latency p50 {lat['p50_us']:.0f} us, p99 {lat['p99_us']:.0f} us per bar",
    ]
    if "pnl" in s:
        p = s["pnl"]
        lines.append(f"  PnL              realised {p['realized']:+,.2f}, unrealised "
                     f"{p['unrealized']:+,.2f}, equity {p['equity']:,.2f} "
                     f"(from {p['initial_balance']:,.2f})")
    if s.get("rollbacks"):
        lines.append(f"  rollbacks        {s['rollbacks']:>8}   (automatic)")
    lines.append(f"  trading state    {s['trading_state']}; parameter version "
                 f"{s['params_version']}")
    if s.get("errors"):
        lines.append(f"  errors           {s['errors']}")
    lines.append(f"  journal          {s['journal']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- status


@app.command()
def status(config: ConfigOpt = None, journal_url: JournalOpt = None, as_json: JsonOpt = False,
           ) -> None:
    """Mode, trading state, last bar per symbol and its age, open orders, positions, params."""
    from datetime import UTC, datetime

    from domain import OrderState
    from runbooks.providers_cli import provider_rows

    settings = _settings(config, journal=_journal_override(journal_url))
    journal = _journal(settings, migrate=False)
    try:
        ts = journal.trading_state()
        runs = journal.runs(1)
        bars = journal.bar_counts()
        now = datetime.now(UTC)
        for info in bars["processed"].values():
            last = datetime.fromisoformat(info["last"]) if info["last"] else None
            info["age_s"] = round((now - last).total_seconds(), 1) if last else None
        open_orders = journal.orders(settings.account, [
            OrderState.NEW, OrderState.SUBMITTING, OrderState.ACCEPTED,
            OrderState.PARTIALLY_FILLED, OrderState.UNKNOWN])
        data = {
            "account": settings.account,
            "configured_mode": settings.mode,
            "params_hash": settings.parameter_set().content_hash,
            "trading_state": {"state": ts.state, "operator": ts.operator, "reason": ts.reason,
                              "trigger": ts.trigger,
                              "since": ts.since.isoformat() if ts.since else None},
            "last_run": runs[0].model_dump(mode="json", exclude={"summary"}) if runs else None,
            "streams": bars["processed"],
            "bars_rejected": bars["rejected"],
            "open_orders": [{"client_order_id": o.client_order_id, "symbol": o.intent.symbol,
                             "side": o.intent.side.value, "state": o.state.value}
                            for o in open_orders],
            "positions": journal.net_positions(),
            "orders_by_state": journal.order_counts(),
            "params": _params_status(journal),
            "incidents_open": [{"id": i.id, "severity": i.severity, "kind": i.kind}
                               for i in journal.incidents("open")],
            "approvals_pending": len(journal.approvals("pending")),
            "providers": provider_rows(journal, settings),
        }
    finally:
        journal.close()
    ts_text = ts.state if ts.state == "ACTIVE" else (
        f"{ts.state} by {ts.operator} since {data['trading_state']['since']}: {ts.reason}")
    lines = [f"account {settings.account}  mode {settings.mode}  params {data['params_hash']}",
             f"trading state: {ts_text}"]
    run_row = data["last_run"]
    if run_row:
        lines.append(f"last run #{run_row['id']}: {run_row['mode']} {run_row['status']} "
                     f"started {run_row['started_at']}")
    for stream, info in data["streams"].items():
        lines.append(f"  {stream}: {info['count']} bars, last {info['last']} "
                     f"(age {info['age_s']} s)")
    lines.append(f"open orders: {len(open_orders)}; positions: {data['positions'] or 'flat'}")
    lines.append("providers: " + ", ".join(
        f"{p['provider']} {'on' if p['in_rotation'] else 'OFF'} (breaker {p['breaker']})"
        for p in data["providers"]))
    _print(data, as_json, "\n".join(lines))


def _params_status(journal: Any) -> dict[str, Any]:
    from guardrails.params import active_version

    active = active_version(journal)
    return {"active_version": active.version if active else None,
            "active_hash": active.hash if active else None,
            "versions": len(journal.param_versions())}


# ---------------------------------------------------------------------------------- trace


@app.command()
def trace(order_id: Annotated[str, typer.Argument(help="Client order id (dta...)")],
          config: ConfigOpt = None, journal_url: JournalOpt = None, as_json: JsonOpt = False,
          ) -> None:
    """The bar, snapshot, proposal, decision, verdict, order and fills behind one order."""
    settings = _settings(config, journal=_journal_override(journal_url))
    journal = _journal(settings, migrate=False)
    try:
        data = journal.trace(order_id)
    finally:
        journal.close()
    if data is None:
        _fail(f"no order {order_id!r} in the journal", EXIT_NOT_FOUND)
    _print(data, as_json, _format_trace(data))


def _format_trace(t: dict[str, Any]) -> str:
    from ensemble.provider_text import shown  # a rationale is untrusted provider text

    o = t["order"]
    lines = [f"order {o['client_order_id']}: {o['side']} {o['volume']} {o['symbol']} "
             f"{o['order_type']} state {o['state']} (SL {o['stop_loss']}, TP {o['take_profit']})"]
    if t["bar"]:
        b = t["bar"]
        lines.append(f"  bar       {b['time']} O {b['open']} H {b['high']} L {b['low']} "
                     f"C {b['close']}")
    if t["snapshot"]:
        s = t["snapshot"]
        lines.append(f"  snapshot  trend {s['trend']}, ATR {s['atr']}, last BOS "
                     f"{s['last_bos']}, last CHoCH {s['last_choch']}")
    if t["proposal"]:
        p = t["proposal"]
        lines.append(f"  proposal  {p['strategy']}: {p['direction']} entry {p['entry']} "
                     f"stop {p['stop']} target {p['target']} — {p['reason']}")
    if t["decision"]:
        d = t["decision"]
        lines.append(f"  decision  {d['direction']} confidence {d['confidence']:.2f}, "
                     f"{d['agreement']}/{d['voters']} agree, providers {d['provider_mix']}"
                     + (f", sized x{d['size_factor']:g} by risk review"
                        if d.get("size_factor", 1.0) != 1.0 else ""))
        for sig in d["signals"] or []:
            what = (f"abstained: {sig['abstain_reason']}" if sig["abstain_reason"]
                    else f"{sig['direction']} {sig['confidence']:.2f} — "
                         f"{shown(sig['rationale'])}")
            lines.append(f"            {sig['provider']}: {what}")
    for c in t.get("provider_calls") or []:
        prompt = (f"{c['template_id']} v{c['template_version']} #{(c['template_hash'] or '')[:12]}"
                  if c.get("template_id") else "no prompt (local)")
        lines.append(
            f"  call      {c['stage']} {c['provider']} ({c['model'] or c['provider_class']}): "
            f"{c['outcome']}{' (replayed)' if c.get('replayed') else ''}, "
            f"{c['latency_ms']:.0f} ms, tokens {c['tokens_in']}/{c['tokens_out']}, "
            f"cost {c['cost']:.6f}, {prompt}"
            + (f" — {c['error']}" if c.get("error") else ""))
    if t["verdict"]:
        v = t["verdict"]
        lines.append(f"  verdict   {'approved' if v['approved'] else 'vetoed'}")
        for c in v["checks"] or []:
            lines.append(f"            {c['name']}: {'pass' if c['passed'] else 'FAIL'} — "
                         f"{c['reason']}")
    lines.append(f"  params    {t['parameter_set']['hash']}")
    for e in t["order_events"]:
        lines.append(f"  event     {e['at']} {e['from_state']} -> {e['to_state']} {e['detail']}")
    for f in t["fills"]:
        lines.append(f"  fill      {f['time']} {f['kind']} {f['side']} {f['volume']} @ "
                     f"{f['price']} realised {f['realized_pnl']:+.2f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- reconcile


@app.command()
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

    settings = _settings(config, journal=_journal_override(journal_url))
    journal = _journal(settings, migrate=False)
    try:
        try:
            parts = build_live_parts(settings, journal)
        except ConfigError as exc:
            _fail(str(exc), EXIT_CONFIG)
        except LeaseError as exc:
            _fail(f"{exc} (stop the daemon, or let its start-up reconciliation run)",
                  EXIT_REFUSED)
        except VenueError as exc:
            _fail(f"cannot reach the broker: {exc}", EXIT_FAILURE)
        try:
            fills = journal.fills()
            parts.broker.restore(journal.orders(settings.account),
                                 [Fill(f.client_order_id, f.fill_id, f.symbol, OrderSide(f.side),
                                       f.time, f.price, f.volume, f.fee) for f in fills],
                                 [f.kind for f in fills])
            report = run_reconcile(journal, parts.broker, settings.account,
                                   settings=settings.broker.resolver)
            journal.commit()
            trigger = reconciliation_trigger(not report.refuse_to_trade,
                                             "; ".join(report.reasons))
            if (trigger is not None and trigger.state is not None
                    and set_state(journal, trigger.state, operator="dta reconcile",
                                  reason=trigger.reason, trigger=trigger.name)):
                journal.open_incident("critical", f"halted:{trigger.name}", trigger.reason)
        finally:
            parts.lease.release()
    finally:
        journal.close()
    data = report.summary()
    _print(data, as_json, json.dumps(data, indent=2, sort_keys=True, default=str))
    if report.refuse_to_trade:
        raise typer.Exit(EXIT_REFUSED)


# ---------------------------------------------------------------------------------- doctor


@app.command()
def doctor(config: ConfigOpt = None, journal_url: JournalOpt = None,
           as_json: JsonOpt = False) -> None:
    """Health of this installation; the exit code is the signal (0 ok, 8 degraded,
    9 unhealthy, 2 invalid settings)."""
    from domain.errors import JournalError
    from executor.doctor import exit_code, run_checks
    from executor.journal.store import Journal

    settings = _settings(config, journal=_journal_override(journal_url))
    journal = None
    error = None
    try:  # never creates a file or a schema: a missing journal is a finding
        journal = Journal.open(settings.journal.url, migrate_schema=False, create=False)
    except JournalError as exc:
        error = str(exc)
        try:  # an unmigrated journal is still worth inspecting
            from executor.journal.store import make_engine

            journal = Journal(make_engine(settings.journal.url, create=False))
        except Exception:
            journal = None
    try:
        findings = run_checks(settings, journal, error)
    finally:
        if journal is not None:
            journal.close()
    code = exit_code(findings)
    data = {"healthy": code == 0, "exit_code": code,
            "checks": [{"check": f.check, "status": f.status, "detail": f.detail}
                       for f in findings]}
    _print(data, as_json, "\n".join(f"{f.status.upper():<5} {f.check:<17} {f.detail}"
                                    for f in findings))
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------- config / db


@config_app.command("show")
def config_show(config: ConfigOpt = None, journal_url: JournalOpt = None,
                as_json: JsonOpt = False) -> None:
    """Effective settings (file + environment + .env + credentials), secrets masked."""
    settings = _settings(config, journal=_journal_override(journal_url))
    data = {"settings": settings.public_dict(), "content_hash": settings.content_hash,
            "params_hash": settings.parameter_set().content_hash}
    _print(data, True, "") if as_json else typer.echo(
        json.dumps(data, indent=2, sort_keys=True, default=str))


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None, journal_url: JournalOpt = None) -> None:
    """Apply journal migrations up to the current schema (safe to repeat)."""
    settings = _settings(config, journal=_journal_override(journal_url))
    from executor.journal import migrate

    journal = _journal(settings, migrate=True, create=True)
    try:
        rev = migrate.current_revision(journal.engine)
    finally:
        journal.close()
    typer.echo(f"journal at revision {rev} (head)")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        # The command is done (journal closed, output written). Interpreter shutdown would
        # now run full garbage collections over every object the imports made (~80k after
        # a journal command: pydantic, SQLAlchemy, the table models), ~90 ms of `dta
        # status`; frozen objects are skipped and the OS takes the memory back at once.
        # atexit handlers, weakref finalizers and stream flushes still run.
        gc.freeze()


if __name__ == "__main__":
    main()
