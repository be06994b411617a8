"""``dta run``: the trading daemon. The process it is (lease, start, reconciliation,
signals, stop, exit code) is the node's (``executor.engine.node``); the command parses its
options, calls the node and prints the run's summary.

Registered by ``runbooks.cli`` through ``register(app)``.
"""

# No `from __future__ import annotations`: see runbooks/cli.py.

from pathlib import Path
from typing import Annotated, Any

import typer

from runbooks.common import ConfigOpt, JournalOpt, JsonOpt, fail, load, print_out


def register(app: typer.Typer) -> None:
    app.command("run")(run)


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
    settings = load(config, mode=mode, journal={"url": journal_url} if journal_url else None,
                    data=data_over or None)
    from executor.engine.node import Node, RunAborted  # the process: lease .. exit code

    try:
        summary = Node(settings, data=data, warn=_warn).run()
    except RunAborted as exc:
        if exc.message is not None:
            fail(exc.message, exc.code)
        raise typer.Exit(exc.code) from None
    print_out(summary, as_json, _format_summary(summary))


def _warn(message: str) -> None:
    typer.echo(f"dta: {message}", err=True)


def _unparseable_line(rows: dict[str, Any], shown: int = 3) -> str:
    """How many rows of the file never became a bar, and why (the first few, by line)."""
    count = int(rows.get("count") or 0)
    first = list(rows.get("first") or [])[:shown]
    why = "; ".join(f"line {r['line']}: {r['reason']}" for r in first) or "none"
    more = f"; {count - len(first)} more in the journal's rejections" if count > len(first) \
        else ""
    return f"  unparseable rows {count:>8}   {why}{more}"


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
        _unparseable_line(s.get("unparseable_rows") or {}),
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
