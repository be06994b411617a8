"""`dta shadow report`: what we would have done against what the EA did."""

# No `from __future__ import annotations`: see runbooks/cli.py.

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from domain.errors import EXIT_CONFIG
from runbooks.common import (
    ConfigOpt,
    JournalOpt,
    JsonOpt,
    fail,
    journal_for,
    print_out,
    settings_for,
)

app = typer.Typer(help="Shadow mode beside the desk's Expert Advisor.", no_args_is_help=True)


def shadow_pairs(journal: Any, account: str, since: datetime | None,
                 window: timedelta) -> list[Any]:
    from domain import timeframe_seconds
    from executor.shadow import EaDeal, OurEntry, pair

    ours = [OurEntry(client_order_id=r["client_order_id"], symbol=r["symbol"],
                     time=r["bar_time"] + timedelta(seconds=timeframe_seconds(r["timeframe"])),
                     side=r["side"], price=r["entry"], sl=r["stop_loss"], tp=r["take_profit"],
                     tags=tuple(r["tags"] or ()))
            for r in journal.queries.entry_orders_with_proposals(account, since)]
    deals = [EaDeal(d.ticket, d.symbol, d.time, d.side, d.price, d.volume, d.entry, d.sl, d.tp,
                    d.magic, d.comment) for d in journal.ea_deals.all(since)]
    return pair(ours, deals, window=window)


@app.command("report")
def report(since: Annotated[str | None, typer.Option(help="ISO date/time (UTC) to start "
                            "from.")] = None,
           report_dir: Annotated[Path | None, typer.Option("--report", help="Also write a "
                                 "self-contained HTML report with CSV/JSON exports here.")]
           = None,
           config: ConfigOpt = None, journal_url: JournalOpt = None,
           as_json: JsonOpt = False) -> None:
    """Pairing summary: direction agreement, timing, entry/stop/target differences,
    slippage and structure (BOS/SMS) agreement, plus each pair."""
    from datetime import UTC

    from executor.shadow import summarize

    settings = settings_for(config, journal_url)
    start = None
    if since:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            fail(f"--since {since!r}: use an ISO date like 2023-01-31 or 2023-01-31T08:00",
                 EXIT_CONFIG)
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
    journal = journal_for(settings, migrate=False)
    try:
        pairs = shadow_pairs(journal, settings.account, start,
                             timedelta(minutes=settings.shadow.pairing_window_minutes))
    finally:
        journal.close()
    summary = summarize(pairs)
    rows = [{"ours": p.ours.client_order_id if p.ours else None,
             "ea_ticket": p.ea.ticket if p.ea else None,
             "symbol": p.ours.symbol if p.ours else p.ea.symbol if p.ea else None,
             "our_side": p.ours.side if p.ours else None, "ea_side": p.ea.side if p.ea else None,
             "timing_s": p.timing_s, "entry_diff": p.entry_diff, "slippage": p.slippage,
             "structure_agrees": p.structure_agrees} for p in pairs]
    agreement = summary["direction_agreement"]
    text = (f"ours {summary['our_entries']}, EA {summary['ea_entries']}, matched "
            f"{summary['matched']} (only ours {summary['only_ours']}, only EA "
            f"{summary['only_ea']})\n"
            f"direction agreement: {'n/a' if agreement is None else f'{agreement:.0%}'}\n"
            f"timing (EA - ours, s): {summary['timing_s']}\n"
            f"entry diff: {summary['entry_diff']}; slippage: {summary['slippage']}\n"
            f"stop diff: {summary['sl_diff']}; target diff: {summary['tp_diff']}\n"
            f"structure agreement: {summary['structure_agreement']}")
    if report_dir is not None:
        written = _write_report(report_dir, settings.account, summary, rows)
        text += f"\nreport: {written}"
    print_out({"summary": summary, "pairs": rows}, as_json, text)


def _write_report(out: Path, account: str, summary: dict[str, Any],
                  rows: list[dict[str, Any]]) -> Path:
    from executor.reports.html import Badge, Report, Section, table_from_dicts, write_report

    agreement = summary["direction_agreement"]
    status = "idle" if agreement is None else "ok" if agreement >= 0.6 else "degraded"
    flat = [{"figure": k, "value": v if not isinstance(v, dict) else
             ", ".join(f"{kk} {vv:.6g}" for kk, vv in v.items())} for k, v in summary.items()]
    section = Section(
        id="shadow", title="Shadow pairing against the EA",
        notes=("Our intents (nothing sent) paired with the EA's entries on the same symbol "
               "within the pairing window; timing is EA minus ours, slippage is the EA's "
               "fill against the market we decided on (positive: worse for the EA).",),
        badges=(Badge("direction agreement", status,
                      "n/a" if agreement is None else f"{agreement:.0%}"),),
        tables=(table_from_dicts("shadow_summary", "Summary", flat),
                table_from_dicts("shadow_pairs", "Pairs", rows)))
    written = write_report(Report(f"Shadow report — {account}", (("account", account),),
                                  (section,)), out, "shadow.html")
    return written.html
