"""What a message says, one builder per event. Pure: plain values in, a ``Notice`` out, so
the journal hooks only hand values over and every wording is tested without a network.

Each notice names the account and carries a severity (which apprise renders as its
message type: info, warning or failure) and the link a person opens: the request's own
page (``{console_url}/approvals/{id}``) for an approval, the console's overview for the
rest (the one page every console has).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

_TYPE = {"info": "info", "warning": "warning", "high": "failure", "critical": "failure"}


@dataclass(frozen=True, slots=True)
class Notice:
    event: str  # approval_queued | trading_state | incident | rollback | fill | daily_summary
    severity: str  # info | warning | high | critical
    title: str
    body: str
    link: str | None = None
    # An approval on the wall clock: its time left is worked out when the message goes
    # out, not when it was queued (a retry may come minutes later).
    expires_at: datetime | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def notify_type(self) -> str:
        return _TYPE.get(self.severity, "info")

    def text(self, now: datetime | None = None) -> str:
        """The body as sent: the link last, the time left as of ``now`` when it runs on
        the wall clock."""
        body = self.body
        if self.expires_at is not None:
            left = self.expires_at - (now or datetime.now(UTC))
            body += f"\nTime left: {human_duration(left)} (expires {_at(self.expires_at)})."
        if self.link:
            body += f"\nOpen: {self.link}"
        return body


def human_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "none (expired)"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "",
             f"{minutes} min" if minutes else "", f"{secs} s" if secs and not days else ""]
    return " ".join(p for p in parts if p)


def _at(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _title(account: str, severity: str, what: str) -> str:
    return f"[DTA {severity.upper()}] {account}: {what}"


def approval_queued(*, account: str, console_url: str, approval_id: int, symbol: str,
                    direction: str, why: str, created_at: datetime, expires_at: datetime,
                    clock: str, volume: float | None = None) -> Notice:
    """A decision waits for a person: what, why, how long it has, and where to decide."""
    size = f" {volume:g} lots" if volume is not None else ""
    body = (f"Approval #{approval_id}: {direction.upper()}{size} {symbol} waits for a "
            f"decision.\nWhy: {why or 'not given'}.")
    wall = clock == "wall"
    if not wall:  # a replay's clock: its time is the bars', not ours
        body += (f"\nTime left: {human_duration(expires_at - created_at)} on the replay "
                 f"clock (expires at bar time {_at(expires_at)}).")
    return Notice("approval_queued", "warning",
                  _title(account, "warning", f"approval #{approval_id} queued ({symbol})"),
                  body, link=f"{console_url}/approvals/{approval_id}",
                  expires_at=expires_at if wall else None,
                  facts={"approval_id": approval_id, "symbol": symbol, "clock": clock})


def trading_state(*, account: str, state: str, operator: str | None, reason: str | None,
                  trigger: str | None, at: datetime | None, console_url: str) -> Notice:
    severity = {"HALTED": "critical", "REDUCING": "high"}.get(state, "info")
    how = f" (trigger {trigger})" if trigger and trigger != "manual" else ""
    when = f" at {_at(at)}" if at is not None else ""
    body = (f"Trading is {state}: set by {operator or 'unknown'}{how}{when}.\n"
            f"Why: {reason or 'not given'}.")
    return Notice("trading_state", severity,
                  _title(account, severity, f"trading {state}"), body, link=console_url,
                  facts={"state": state, "operator": operator, "trigger": trigger})


def incident(*, account: str, incident_id: int, severity: str, kind: str, message: str,
             console_url: str) -> Notice:
    ref = f"Incident #{incident_id}" if incident_id else "Incident (not journaled)"
    return Notice("incident", severity, _title(account, severity, kind),
                  f"{ref} ({kind}): {message}", link=console_url,
                  facts={"incident_id": incident_id, "kind": kind})


def rollback(*, account: str, incident_id: int, kind: str, message: str,
             to_version: int | None, console_url: str) -> Notice:
    """An automatic rollback is journaled as an ``auto_rollback:<trigger>`` incident."""
    trigger = kind.partition(":")[2] or kind
    version = f" to version {to_version}" if to_version is not None else ""
    body = (f"Parameters rolled back automatically{version} (trigger {trigger}); trading "
            f"is REDUCING until an operator releases it.\n{message}\n"
            f"Incident #{incident_id}.")
    return Notice("rollback", "high", _title(account, "high", f"automatic rollback ({trigger})"),
                  body, link=console_url,
                  facts={"incident_id": incident_id, "kind": kind, "to_version": to_version})


def fill(*, account: str, client_order_id: str, symbol: str, side: str, volume: float,
         price: float, kind: str, realized_pnl: float, time: datetime,
         console_url: str) -> Notice:
    pnl = f", realised {realized_pnl:+,.2f}" if realized_pnl else ""
    body = (f"{kind.capitalize()} fill: {side.upper()} {volume:g} {symbol} at {price:.5g}"
            f"{pnl} ({_at(time)}).\nOrder {client_order_id}.")
    return Notice("fill", "info", _title(account, "info", f"{side} {volume:g} {symbol} filled"),
                  body, link=console_url,
                  facts={"client_order_id": client_order_id})
