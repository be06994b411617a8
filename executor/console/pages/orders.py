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
