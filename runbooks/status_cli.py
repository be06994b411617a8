"""``dta status``: where the account stands, read from the journal: mode, trading state,
last bar per stream and its age, open orders, positions, parameter version, incidents,
approvals waiting, providers.

Registered by ``runbooks.cli`` through ``register(app)``; heavy imports stay inside the
command.
"""

# No `from __future__ import annotations`: see runbooks/cli.py.

from typing import Any

import typer

from runbooks.common import ConfigOpt, JournalOpt, JsonOpt, journal_for, print_out, settings_for


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def status(config: ConfigOpt = None, journal_url: JournalOpt = None, as_json: JsonOpt = False,
           ) -> None:
    """Mode, trading state, last bar per symbol and its age, open orders, positions, params."""
    from datetime import UTC, datetime

    from domain import OrderState
    from runbooks.providers_cli import provider_rows

    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        ts = journal.trading_state.trading_state()
        runs = journal.queries.runs(1)
        bars = journal.queries.bar_counts()
        now = datetime.now(UTC)
        for info in bars["processed"].values():
            last = datetime.fromisoformat(info["last"]) if info["last"] else None
            info["age_s"] = round((now - last).total_seconds(), 1) if last else None
        open_orders = journal.orders.all(settings.account, [
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
            "positions": journal.orders.net_positions(),
            "orders_by_state": journal.queries.order_counts(),
            "params": _params_status(journal),
            "incidents_open": [{"id": i.id, "severity": i.severity, "kind": i.kind}
                               for i in journal.incidents.all("open")],
            "approvals_pending": len(journal.approvals.all("pending")),
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
    print_out(data, as_json, "\n".join(lines))


def _params_status(journal: Any) -> dict[str, Any]:
    from guardrails.params import active_version

    active = active_version(journal.params)
    return {"active_version": active.version if active else None,
            "active_hash": active.hash if active else None,
            "versions": len(journal.params.param_versions())}
