"""The status view's reads (``executor/status_view.py``): plain SQL on a ``DirectReader``,
one function per fact, rows as dicts with timestamps aware UTC and JSON parsed.

Each read states the rule it mirrors from the journal's repositories, so the view shows
what the daemon itself would read: the newest trading-state event (``trading_state.py``),
the newest activating parameter event (``guardrails/params.py``), the newest operator
event per provider and the newest breaker transition (``provider_calls.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.orders import OrderState
from executor.journal.direct import DirectReader, as_json, utc
from executor.journal.values import OPERATOR_ACTIONS

# Orders sent and not finished: what the guardrails count as working.
WORKING_STATES = tuple(s.value for s in OrderState if not s.terminal)  # may still fill


def trading_state(r: DirectReader, scope: str = "global") -> dict[str, Any] | None:
    rows = r.rows("SELECT state, operator, reason, trigger, at FROM trading_state_events "
                  "WHERE scope = :scope ORDER BY id DESC LIMIT 1", scope=scope)
    return {**rows[0], "at": utc(rows[0]["at"])} if rows else None


def last_run(r: DirectReader) -> dict[str, Any] | None:
    rows = r.rows("SELECT id, mode, status, account, started_at, ended_at FROM runs "
                  "ORDER BY id DESC LIMIT 1")
    if not rows:
        return None
    return {**rows[0], "started_at": utc(rows[0]["started_at"]),
            "ended_at": utc(rows[0]["ended_at"])}


def streams(r: DirectReader) -> list[dict[str, Any]]:
    """Per (symbol, timeframe): bars journaled, the newest bar's time and close."""
    rows = r.rows("SELECT symbol, timeframe, count(*) AS n, max(time) AS last FROM bars "
                  "GROUP BY symbol, timeframe ORDER BY symbol, timeframe")
    out = []
    for row in rows:
        close = r.scalar("SELECT close FROM bars WHERE symbol = :s AND timeframe = :tf AND "
                         "time = :t", s=row["symbol"], tf=row["timeframe"], t=row["last"])
        out.append({"symbol": row["symbol"], "timeframe": row["timeframe"],
                    "bars": int(row["n"]), "last": utc(row["last"]),
                    "close": float(close) if close is not None else None})
    return out


def rejected_counts(r: DirectReader) -> dict[str, int]:
    """Rejected bars by reason; ``unparseable_row`` counts the file rows that did not
    parse (journaled once, by the first run over the file)."""
    return {row["reason"]: int(row["n"]) for row in r.rows(
        "SELECT reason, count(*) AS n FROM rejected_bars GROUP BY reason ORDER BY reason")}


def order_counts(r: DirectReader) -> dict[str, int]:
    return {row["state"]: int(row["n"]) for row in r.rows(
        "SELECT state, count(*) AS n FROM orders GROUP BY state ORDER BY state")}


def working_orders(r: DirectReader, account: str) -> list[dict[str, Any]]:
    marks = ", ".join(f":s{i}" for i in range(len(WORKING_STATES)))
    rows = r.rows("SELECT client_order_id, symbol, side, volume, filled_volume, state, "
                  "price, stop_loss, take_profit, created_at FROM orders WHERE account = "
                  f":account AND state IN ({marks}) ORDER BY created_at", account=account,
                  **{f"s{i}": s for i, s in enumerate(WORKING_STATES)})
    return [{**row, "created_at": utc(row["created_at"])} for row in rows]


def account_fills(r: DirectReader, account: str) -> list[dict[str, Any]]:
    """The account's fills in time order (as ``OrderRepository.fills(account=...)``)."""
    rows = r.rows("SELECT f.fill_id, f.client_order_id, f.symbol, f.side, f.time, f.price, "
                  "f.volume, f.fee, f.kind, f.realized_pnl FROM fills f WHERE "
                  "f.client_order_id IN (SELECT client_order_id FROM orders WHERE account "
                  "= :account) ORDER BY f.time, f.fill_id", account=account)
    return [{**row, "time": utc(row["time"])} for row in rows]


def account_costs(r: DirectReader, account: str) -> list[dict[str, Any]]:
    """The account's costs (funding payments) in time order (``CostRepository.costs``)."""
    rows = r.rows("SELECT time, amount, kind FROM costs WHERE account = :account ORDER BY "
                  "time, cost_id", account=account)
    return [{**row, "time": utc(row["time"])} for row in rows]


def day_baseline(r: DirectReader, account: str) -> dict[str, Any] | None:
    rows = r.rows("SELECT day, start_equity FROM day_baselines WHERE account = :account "
                  "ORDER BY day DESC LIMIT 1", account=account)
    return {"day": utc(rows[0]["day"]), "start_equity": float(rows[0]["start_equity"])} \
        if rows else None


def incidents(r: DirectReader, statuses: Sequence[str]) -> list[dict[str, Any]]:
    marks = ", ".join(f":s{i}" for i in range(len(statuses)))
    rows = r.rows("SELECT id, at, severity, kind, message, status, details FROM incidents "
                  f"WHERE status IN ({marks}) ORDER BY id",
                  **{f"s{i}": s for i, s in enumerate(statuses)})
    return [{**row, "at": utc(row["at"]), "details": as_json(row["details"])} for row in rows]


def pending_approvals(r: DirectReader) -> list[dict[str, Any]]:
    rows = r.rows("SELECT id, decision_id, symbol, direction, why, intent, created_at, "
                  "expires_at FROM approvals WHERE status = 'pending' ORDER BY id")
    return [{**row, "intent": as_json(row["intent"]), "created_at": utc(row["created_at"]),
             "expires_at": utc(row["expires_at"])} for row in rows]


def last_bar_time(r: DirectReader, symbol: str, timeframe: str) -> Any:
    return utc(r.scalar("SELECT max(time) FROM bars WHERE symbol = :s AND timeframe = :tf",
                        s=symbol, tf=timeframe))


def active_param_version(r: DirectReader,
                         activating: Sequence[str]) -> dict[str, Any] | None:
    """The version the newest activating event names, with its content."""
    marks = ", ".join(f":a{i}" for i in range(len(activating)))
    version = r.scalar(f"SELECT version FROM param_events WHERE action IN ({marks}) ORDER BY "
                       "id DESC LIMIT 1", **{f"a{i}": a for i, a in enumerate(activating)})
    if version is None:
        return None
    rows = r.rows("SELECT version, hash, content, bad FROM param_versions WHERE version = "
                  ":v", v=version)
    return {**rows[0], "content": as_json(rows[0]["content"]),
            "bad": bool(rows[0]["bad"])} if rows else None


def param_version_count(r: DirectReader) -> int:
    return int(r.scalar("SELECT count(*) FROM param_versions") or 0)


def provider_events(r: DirectReader) -> tuple[dict[str, dict[str, Any]],
                                              dict[str, dict[str, Any]]]:
    """(providers whose newest operator event is ``disable``, each provider's newest
    breaker transition), each with that event."""
    operator: dict[str, dict[str, Any]] = {}
    breaker: dict[str, dict[str, Any]] = {}
    for row in r.rows("SELECT provider, action, operator, reason, at FROM provider_events "
                      "ORDER BY id"):
        event = {**row, "at": utc(row["at"])}
        if row["action"] in OPERATOR_ACTIONS:
            operator[row["provider"]] = event
        elif str(row["action"]).startswith("breaker_"):
            breaker[row["provider"]] = event
    return {p: e for p, e in operator.items() if e["action"] == "disable"}, breaker


def clearance_events(r: DirectReader, account: str, strategy: str) -> list[dict[str, Any]]:
    return r.rows("SELECT action, mode FROM clearances WHERE account = :account AND "
                  "strategy = :strategy ORDER BY id", account=account, strategy=strategy)
