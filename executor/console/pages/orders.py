"""Orders: the filterable order list (and, per order, its trace). The pattern a page
module follows (see ``pages/__init__.py``): a router, a data function over the journal,
a template."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from domain import OrderState
from executor.console.web import SignedIn, console_of, render
from executor.journal.store import Journal

router = APIRouter()
MAX_ROWS = 500


def orders_data(journal: Journal, *, state: str = "", symbol: str = "", side: str = "",
                limit: int = MAX_ROWS) -> dict[str, Any]:
    """The newest orders matching the filters (empty: any), newest first."""
    states = [OrderState(state)] if state in {s.value for s in OrderState} else None
    rows = [o for o in journal.orders.all(states=states)
            if (not symbol or o.intent.symbol == symbol)
            and (not side or o.intent.side.value == side)]
    shown = [{"client_order_id": o.client_order_id, "symbol": o.intent.symbol,
              "side": o.intent.side.value, "volume": o.intent.volume, "state": o.state.value,
              "bar_time": o.intent.bar_time, "price": o.avg_fill_price,
              "stop_loss": o.intent.stop_loss, "take_profit": o.intent.take_profit,
              "filled": o.filled_volume, "reason": o.reason}
             for o in reversed(rows[-limit:])]
    return {"orders": shown, "total": len(rows),
            "filters": {"state": state, "symbol": symbol, "side": side},
            "states": [s.value for s in OrderState]}


@router.get("/orders", response_class=HTMLResponse)
def orders_page(request: Request, user: SignedIn, state: str = "", symbol: str = "",
                side: str = "") -> Response:
    with console_of(request).journal() as j:
        data = orders_data(j, state=state, symbol=symbol.strip(), side=side)
    return render(request, "orders.html", user, page="orders", **data)


@router.get("/orders/list", response_class=HTMLResponse)
def orders_fragment(request: Request, user: SignedIn, state: str = "", symbol: str = "",
                    side: str = "") -> Response:
    """The table alone: what a live update (``dta:orders``) re-renders."""
    with console_of(request).journal() as j:
        data = orders_data(j, state=state, symbol=symbol.strip(), side=side)
    return render(request, "partials/orders_table.html", user, **data)


def trace_data(journal: Journal, client_order_id: str) -> dict[str, Any] | None:
    """Everything behind one order (``journal.queries.trace``: bar, snapshot, proposal,
    decision, provider calls, verdict, state history, fills) and its chart: the order and
    its fills drawn on the bars around it, with its stop and target."""
    trace = journal.queries.trace(client_order_id)
    if trace is None:
        return None
    order, proposal = trace["order"], trace.get("proposal") or {}
    timeframe = proposal.get("timeframe") or (trace.get("bar") or {}).get("timeframe")
    return {"trace": trace, "order": order,
            "chart": _trace_chart(journal, trace, timeframe) if timeframe else None}


def _trace_chart(journal: Journal, trace: dict[str, Any], timeframe: str) -> dict[str, Any]:
    from datetime import datetime, timedelta

    from domain import timeframe_seconds
    from executor.console.charts import chart

    order = trace["order"]
    bar_time = datetime.fromisoformat(order["bar_time"])
    fills = [{**f, "time": datetime.fromisoformat(f["time"])} for f in trace["fills"]]
    last = max([bar_time, *(f["time"] for f in fills)])
    until = last + timedelta(seconds=20 * timeframe_seconds(timeframe))
    bars = journal.runs.bars_until(order["symbol"], timeframe, until, 160)
    buy = order["side"] == "buy"
    markers = [{"time": bar_time, "position": "belowBar" if buy else "aboveBar",
                "color": "#6cb4ff", "shape": "arrowUp" if buy else "arrowDown",
                "text": f"{order['side']} {order['volume']}"}]
    markers += [{"time": f["time"], "position": "inBar", "color": "#f0a030",
                 "shape": "circle", "text": f"{f['kind']} {f['price']}"} for f in fills]
    entry = order.get("avg_fill_price") or (trace.get("proposal") or {}).get("entry")
    return chart(bars, snapshot=trace.get("snapshot"), markers=markers,
                 levels={"entry": entry, "stop": order.get("stop_loss"),
                         "target": order.get("take_profit")})


@router.get("/orders/{client_order_id}", response_class=HTMLResponse)
def order_trace_page(request: Request, client_order_id: str, user: SignedIn) -> Response:
    from fastapi import HTTPException

    with console_of(request).journal() as j:
        data = trace_data(j, client_order_id)
    if data is None:
        raise HTTPException(404, f"no order {client_order_id}")
    return render(request, "order_trace.html", user, page="orders", **data)
