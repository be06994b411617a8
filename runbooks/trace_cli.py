"""``dta trace ORDER_ID``: the bar, snapshot, proposal, decision with its provider calls,
verdict, order events and fills behind one order.

Registered by ``runbooks.cli`` through ``register(app)``.
"""

# No `from __future__ import annotations`: see runbooks/cli.py.

from typing import Annotated, Any

import typer

from domain.errors import EXIT_NOT_FOUND
from runbooks.common import (
    ConfigOpt,
    JournalOpt,
    JsonOpt,
    fail,
    journal_for,
    print_out,
    settings_for,
)


def register(app: typer.Typer) -> None:
    app.command("trace")(trace)


def trace(order_id: Annotated[str, typer.Argument(help="Client order id (dta...)")],
          config: ConfigOpt = None, journal_url: JournalOpt = None, as_json: JsonOpt = False,
          ) -> None:
    """The bar, snapshot, proposal, decision, verdict, order and fills behind one order."""
    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        data = journal.queries.trace(order_id)
    finally:
        journal.close()
    if data is None:
        fail(f"no order {order_id!r} in the journal", EXIT_NOT_FOUND)
    print_out(data, as_json, _format_trace(data))


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
