"""Orders with their state history and fills. The order row is journaled before a broker
sees the order (``insert_order``/``insert_sending`` commit durably unless the caller
commits with its next step); every transition adds an event; a fill is journaled once.
Statements on the order path are prepared (``prepared.py``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, func, select, update

from domain import Fill, Order, OrderIntent, OrderSide, OrderState, OrderType
from executor.journal.models import FillRow
from executor.journal.tables import FILLS, ORDER_EVENTS, ORDERS
from executor.journal.unit_of_work import UnitOfWork
from executor.journal.values import aware, utcnow

# Statements built once: parameters travel separately, so SQLAlchemy's compiled cache hits
# and a journal write costs one driver call, not a statement construction.
_UPDATE_ORDER = (
    update(ORDERS).where(ORDERS.c.client_order_id == bindparam("coid"))
    .values(state=bindparam("state"), filled_volume=bindparam("filled_volume"),
            avg_fill_price=bindparam("avg_fill_price"),
            broker_order_id=bindparam("broker_order_id"), reason=bindparam("reason"),
            updated_at=bindparam("updated_at")))
_SELECT_ORDER = select(ORDERS).where(ORDERS.c.client_order_id == bindparam("coid"))
_EVENT_KEYS = ("client_order_id", "at", "from_state", "to_state", "detail")


class OrderRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self.fill_listeners: list[Callable[[FillRow], None]] = []  # each new fill, committed

    def insert_order(self, order: Order, detail: str = "", *, commit: bool = True) -> None:
        """Write the order row; committed (durably) before the broker sees the order, here
        or by the router's next ``update_order``."""
        uow = self._uow
        with uow.lock:
            now = utcnow()
            uow.write(ORDERS, order_row(order, uow.run_id, now))
            uow.write(ORDER_EVENTS, dict(
                client_order_id=order.client_order_id, at=now, from_state=None,
                to_state=order.state.value, detail=detail))
            if commit:
                uow.commit(durable=True)

    def insert_sending(self, new: Order, sending: Order, detail: str, *,
                       commit: bool = True) -> None:
        """A new order's row already in ``sending``'s state, with both its events (created,
        then ``detail``): the rows ``insert_order(new)`` and ``set_order_state`` to
        ``sending`` leave, in one step. Nobody can see the row in between, as both are in
        one transaction. ``commit``: durably, now (before a real broker's call)."""
        uow = self._uow
        with uow.lock:
            now = utcnow()
            uow.write(ORDERS, order_row(sending, uow.run_id, now))
            coid = sending.client_order_id
            uow.writer(ORDER_EVENTS, _EVENT_KEYS).write_many(uow.dbapi(), (
                dict(client_order_id=coid, at=now, from_state=None,
                     to_state=new.state.value, detail="created"),
                dict(client_order_id=coid, at=now, from_state=new.state.value,
                     to_state=sending.state.value, detail=detail)))
            if commit:
                uow.commit(durable=True)

    def update_order(self, before: Order, after: Order, detail: str = "",
                     commit: bool = True) -> None:
        self.set_order_state(before.state, after, detail, commit=commit)

    def set_order_state(self, before: OrderState, after: Order, detail: str = "",
                        commit: bool = True) -> None:
        """Move a journaled order from state ``before`` to ``after`` (the row and an event)."""
        uow = self._uow
        with uow.lock:
            now = utcnow()
            p = uow.prep("update_order", lambda: _UPDATE_ORDER)
            p.write(uow.dbapi(), dict(
                coid=after.client_order_id, state=after.state.value,
                filled_volume=after.filled_volume, avg_fill_price=after.avg_fill_price,
                broker_order_id=after.broker_order_id, reason=after.reason, updated_at=now))
            uow.write(ORDER_EVENTS, dict(
                client_order_id=after.client_order_id, at=now, from_state=before.value,
                to_state=after.state.value, detail=detail))
            if commit:
                uow.commit(durable=True)

    def get_order(self, client_order_id: str) -> Order | None:
        row = self._uow.conn().execute(_SELECT_ORDER, {"coid": client_order_id}).first()
        return None if row is None else order_from_row(row)

    def order_state(self, client_order_id: str) -> OrderState | None:
        """The journaled state of one order (one indexed column read: the fill path asks
        this for every fill)."""
        p = self._uow.prep("order_state", lambda: select(ORDERS.c.state).where(
            ORDERS.c.client_order_id == bindparam("coid")))
        value = p.scalar(self._uow.dbapi(), {"coid": client_order_id})
        return None if value is None else OrderState(value)

    def all(self, account: str | None = None, states: Sequence[OrderState] | None = None,
            ) -> list[Order]:
        """Orders in creation order: all, of one account, in some states."""
        stmt = select(ORDERS).order_by(ORDERS.c.created_at, ORDERS.c.client_order_id)
        if account is not None:
            stmt = stmt.where(ORDERS.c.account == account)
        if states is not None:
            stmt = stmt.where(ORDERS.c.state.in_([s.value for s in states]))
        return [order_from_row(r) for r in self._uow.conn().execute(stmt)]

    def sent_at(self, client_order_id: str) -> datetime | None:
        """When the order first went to ``submitting`` (its send began)."""
        t = ORDER_EVENTS
        stmt = (select(t.c.at).where(t.c.client_order_id == client_order_id,
                                     t.c.to_state == OrderState.SUBMITTING.value)
                .order_by(t.c.id).limit(1))
        return aware(self._uow.conn().execute(stmt).scalar())

    def count_events(self, client_order_id: str, *, detail_prefix: str) -> int:
        """How many of the order's events have a detail starting with ``detail_prefix``."""
        t = ORDER_EVENTS
        stmt = (select(func.count()).select_from(t)
                .where(t.c.client_order_id == client_order_id,
                       t.c.detail.startswith(detail_prefix)))
        return int(self._uow.conn().execute(stmt).scalar() or 0)

    # ------------------------------------------------------------------ fills

    def record_fill(self, fill: Fill, kind: str, realized_pnl: float) -> bool:
        """Journal ``fill`` once; True when it was new. A fill id already journaled is a
        no-op, not an error: start-up reconciliation and the first poll after it can both
        see a deal made while the daemon was down (issue 15, defect 5)."""
        uow = self._uow
        known = uow.prep("fill_exists", lambda: select(FILLS.c.fill_id).where(
            FILLS.c.fill_id == bindparam("fill_id")))
        if known.rows(uow.dbapi(), {"fill_id": fill.fill_id}):
            return False
        values: dict[str, Any] = dict(
            fill_id=fill.fill_id, client_order_id=fill.client_order_id, symbol=fill.symbol,
            side=fill.side.value, time=fill.time, price=fill.price, volume=fill.volume,
            fee=fill.fee, kind=kind, realized_pnl=realized_pnl)
        uow.write(FILLS, values)
        if self.fill_listeners:  # once committed
            row = FillRow(**values)
            uow.after_commit += [partial(f, row) for f in self.fill_listeners]
        return True

    def fills(self, client_order_id: str | None = None, *,
              account: str | None = None) -> list[FillRow]:
        """Fills in time order: of one order, of one account's orders, or all."""
        stmt = select(FillRow).order_by(FillRow.time, FillRow.fill_id)  # type: ignore[arg-type]
        if client_order_id is not None:
            stmt = stmt.where(FILLS.c.client_order_id == client_order_id)
        if account is not None:
            stmt = stmt.where(FILLS.c.client_order_id.in_(
                select(ORDERS.c.client_order_id).where(ORDERS.c.account == account)))
        return list(self._uow.session.scalars(stmt))

    def net_positions(self) -> dict[str, float]:
        """Net lots per symbol from the journaled fills (an exit fill has the opposite side)."""
        out: dict[str, float] = {}
        for f in self.fills():
            out[f.symbol] = out.get(f.symbol, 0.0) + (f.volume if f.side == "buy" else -f.volume)
        return {s: round(v, 8) for s, v in out.items() if abs(v) > 1e-9}

    def fill_id_exists(self, fill_id: str) -> bool:
        return self._uow.session.get(FillRow, fill_id) is not None


def order_row(order: Order, run_id: int | None, now: datetime) -> dict[str, Any]:
    i = order.intent
    return dict(
        client_order_id=i.client_order_id, run_id=run_id, account=i.account,
        symbol=i.symbol, side=i.side.value, volume=i.volume,
        order_type=i.order_type.value, price=i.price, stop_loss=i.stop_loss,
        take_profit=i.take_profit, reduce_only=i.reduce_only, bar_time=i.bar_time,
        state=order.state.value, filled_volume=order.filled_volume,
        avg_fill_price=order.avg_fill_price, broker_order_id=order.broker_order_id,
        decision_id=i.decision_id, params_hash=i.params_hash,
        created_at=now, updated_at=now, reason=order.reason)


def order_from_row(row: Any) -> Order:
    intent = OrderIntent(
        client_order_id=row.client_order_id, account=row.account, symbol=row.symbol,
        side=OrderSide(row.side), volume=row.volume, order_type=OrderType(row.order_type),
        bar_time=row.bar_time, price=row.price, stop_loss=row.stop_loss,
        take_profit=row.take_profit, reduce_only=row.reduce_only, params_hash=row.params_hash,
        decision_id=row.decision_id)
    return Order(intent=intent, state=OrderState(row.state), filled_volume=row.filled_volume,
                 avg_fill_price=row.avg_fill_price, broker_order_id=row.broker_order_id,
                 reason=row.reason)
