"""``dta status``: where the account stands, from the journal: trading state, mode and
clearance, equity and PnL, positions, working orders, each stream's last bar and its age,
rejected rows, pending approvals with their time left, open incidents, providers.

Everything it shows is ``executor.status_view.StatusView`` (the console's Overview page
shows the same value). It must answer in under 300 ms on the `make run` journal (issue 18),
so it reads the journal through the database driver alone (``executor/journal/direct.py``)
and imports neither SQLAlchemy nor the daemon's machinery
(``tests/integration/test_startup_imports.py``).
"""

# No `from __future__ import annotations`: see runbooks/cli.py.

from typing import TYPE_CHECKING, Any

import typer

from runbooks.common import ConfigOpt, JournalOpt, JsonOpt, print_out, settings_for

if TYPE_CHECKING:
    from executor.status_view import StatusView


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def status(config: ConfigOpt = None, journal_url: JournalOpt = None, as_json: JsonOpt = False,
           ) -> None:
    """Trading state, mode, equity and PnL, positions, working orders, streams and their
    ages, rejected rows, pending approvals, open incidents, providers."""
    from datetime import UTC, datetime

    from domain.errors import EXIT_JOURNAL, JournalError
    from executor.journal.direct import open_direct
    from executor.status_view import build_status_view
    from runbooks.common import fail

    settings = settings_for(config, journal_url)
    try:
        with open_direct(settings.journal.url) as reader:
            view = build_status_view(reader, settings, datetime.now(UTC))
    except JournalError as exc:
        fail(str(exc), EXIT_JOURNAL)
    print_out(view.as_dict(), as_json, "\n".join(status_lines(view)))


def status_lines(view: "StatusView") -> list[str]:
    """The view as text for people: money with two decimals and thousands separators,
    ages in human units ("3 min", "2 h 5 min"), times to the minute in UTC."""
    from executor.status_view import human_duration as ago

    cleared = "" if view.cleared_mode == view.mode else f", cleared for {view.cleared_mode}"
    lines = [f"account {view.account}  mode {view.mode}{cleared}  strategy {view.strategy}",
             f"trading state: {_state_text(view)}",
             f"params: {_params_text(view)}"]
    run = view.last_run
    if run:
        lines.append(f"last run #{run['id']}: {run['mode']} {run['status']}, started "
                     f"{_when(run['started_at'])} ({ago(_age(view, run['started_at']))} ago)")
    lines += _equity_lines(view)
    lines.append("working orders: " + (", ".join(
        f"{o.client_order_id} {o.symbol} {o.side} {o.filled_volume:g}/{o.volume:g} {o.state}"
        for o in view.working_orders) or "none"))
    lines.append("streams:" if view.streams else "streams: no bars journaled")
    for s in view.streams:
        lines.append(f"  {s.name}: {s.bars:,} bar{'s' if s.bars != 1 else ''}, last bar "
                     f"{_when(s.last_bar)}, closed {ago(s.age_s)} ago"
                     + (f"  STALE (no bar for over {ago(s.stale_after_s)})" if s.stale else ""))
    lines.append("rows rejected: " + (f"{view.rejected_total:,} (" + ", ".join(
        f"{reason} {n:,}" for reason, n in view.rejected.items()) + ")"
        if view.rejected else "none"))
    lines.append(f"approvals pending: {len(view.approvals) or 'none'}")
    lines += [f"  #{a.id} {a.symbol} {a.direction}: {ago(a.time_left_s)} left on the "
              f"{a.clock} clock; {a.why}" for a in view.approvals]
    lines.append(f"incidents open: {len(view.incidents) or 'none'}")
    lines += [f"  #{i.id} {i.severity} {i.kind} ({i.status}, {ago(i.age_s)} ago): "
              f"{i.message}" for i in view.incidents]
    lines.append("providers: " + (", ".join(
        f"{p.provider} {'on' if p.in_rotation else 'OFF'} (breaker {p.breaker})"
        for p in view.providers) or "none configured"))
    return lines


def _state_text(view: "StatusView") -> str:
    from executor.status_view import human_duration

    ts = view.trading_state
    if ts.since is None:
        return str(ts.state)
    who = ts.operator if ts.trigger in (None, "manual") else f"{ts.operator} ({ts.trigger})"
    return (f"{ts.state} by {who} for {human_duration(_age(view, ts.since))} "
            f"(since {_when(ts.since)}): {ts.reason}")


def _params_text(view: "StatusView") -> str:
    if view.active_version is None:
        return f"no version active yet; the settings' set is {view.settings_params_hash}"
    return (f"v{view.active_version} active ({view.active_hash}), {view.param_versions} "
            f"version{'s' if view.param_versions != 1 else ''}")


def _equity_lines(view: "StatusView") -> list[str]:
    e = view.equity
    if e.equity is None:
        lines = [f"equity: unknown ({e.basis}: no baseline journaled for {e.day})"]
    else:
        lines = [f"equity {e.equity:,.2f}" + (f" (from {e.start:,.2f})" if e.start else "")
                 + f": realised {e.realised:+,.2f}, unrealised {e.unrealised:+,.2f}"
                 + (f", fees {e.fees:,.2f}" if e.fees else "")
                 + (f", funding {e.funding:+,.2f}" if e.funding else "")]
        if e.day_pnl is not None:
            lines.append(f"today ({e.day} UTC): PnL {e.day_pnl:+,.2f} from {e.day_start:,.2f}")
    lines.append("positions: " + (", ".join(
        f"{p.symbol} {p.volume:+g} lots @ {p.avg_price:.5g}"
        + (f" (mark {p.mark:.5g}, {p.unrealised:+,.2f})" if p.mark is not None else "")
        for p in view.positions) or "flat"))
    return lines


def _when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"


def _age(view: Any, moment: Any) -> float | None:
    return (view.now - moment).total_seconds() if moment is not None else None
