"""Where each event comes from, and the one thing the trading thread does about it: build
a small ``Notice`` and ``put_nowait`` it on the sender's queue.

- approval queued: ``journal.approvals.listeners``, once the request's row commits (the
  queue is ``executor/engine/approvals.py``), so its link works;
- trading-state change: ``journal.trading_state.listeners``, this process's changes at
  once, another process's (`dta trading-state`, the console) at this daemon's next read
  of the state (every decision, and every housekeeping second);
- incident: ``journal.incidents.listeners``, once committed, and the out-of-band ones
  the journal could not hold (``RealtimeExecutor``);
- automatic rollback: the ``auto_rollback:<trigger>`` incident ``Triggers`` opens with it
  (``executor/engine/triggers.py``);
- fill (optional): ``journal.orders.fill_listeners``, once the fill's row commits;
- daily summary: ``DailySummary``'s own thread and journal connection.

An automatic trigger in this process (operator ``system``) always opens an incident with
its state change (``Triggers.fire``, a rollback, a fill surplus): that incident is the one
message, so its state change is not announced twice. An incident of kind ``halted:*`` or
``reducing:*`` is sent when either ``incident`` or ``trading_state`` is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from executor.notify import notice as notices
from executor.notify.sender import NotificationSender, apprise_logs_scrubbed
from executor.notify.settings import SEVERITY_RANK, NotificationSettings
from executor.notify.summary import DailySummary

if TYPE_CHECKING:
    from executor.journal.models import ApprovalRow, FillRow
    from executor.journal.store import Journal
    from executor.journal.trading_state import TradingStateRecord
    from executor.settings import Settings

log = structlog.get_logger("dta.notify")

_STATE_KINDS = ("halted:", "reducing:")


def legacy_url(url: str) -> str:
    """``alert_webhook_url`` (before apprise): a URL apprise knows natively (Slack,
    Discord webhooks) as it is; any other http(s) endpoint as apprise's JSON webhook."""
    import apprise

    with apprise_logs_scrubbed([url]):  # apprise logs a URL it cannot parse, whole
        native = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if native is not None:
        return url
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("http", "https"):
        return f"{'jsons' if scheme == 'https' else 'json'}://{rest}"
    return url


class NotificationHooks:
    """The listeners: each builds a ``Notice`` from values it is handed and queues it."""

    def __init__(self, settings: NotificationSettings, account: str,
                 sender: NotificationSender) -> None:
        self.s = settings
        self.account = account
        self.sender = sender

    def subscribe(self, journal: Journal) -> None:
        journal.incidents.listeners.append(self.on_incident)
        if self.s.wants("approval_queued"):
            journal.approvals.listeners.append(self.on_approval)
        if self.s.wants("trading_state"):
            journal.trading_state.listeners.append(self.on_trading_state)
        if self.s.wants("fill"):
            journal.orders.fill_listeners.append(self.on_fill)

    def on_approval(self, a: ApprovalRow) -> None:
        intent = a.intent or {}
        volume = intent.get("volume")
        self.sender.send(notices.approval_queued(
            account=self.account, console_url=self.s.console_url, approval_id=a.id or 0,
            symbol=a.symbol, direction=a.direction, why=a.why, created_at=a.created_at,
            expires_at=a.expires_at, clock=str(intent.get("clock", "wall")),
            volume=float(volume) if isinstance(volume, int | float) else None))

    def on_trading_state(self, r: TradingStateRecord) -> None:
        if r.operator == "system":
            return  # its incident is the message (see the module's docstring)
        self.sender.send(notices.trading_state(
            account=self.account, state=r.state, operator=r.operator, reason=r.reason,
            trigger=r.trigger, at=r.since, console_url=self.s.console_url))

    def on_incident(self, incident_id: int, severity: str, kind: str, message: str) -> None:
        if kind.startswith("auto_rollback:"):
            if self.s.wants("rollback"):
                self.sender.send(notices.rollback(
                    account=self.account, incident_id=incident_id, kind=kind,
                    message=message, to_version=None, console_url=self.s.console_url))
            return
        wanted = self.s.wants("incident") or (
            kind.startswith(_STATE_KINDS) and self.s.wants("trading_state"))
        if wanted and SEVERITY_RANK.get(severity, 3) >= SEVERITY_RANK[self.s.min_severity]:
            self.sender.send(notices.incident(
                account=self.account, incident_id=incident_id, severity=severity, kind=kind,
                message=message, console_url=self.s.console_url))

    def on_fill(self, f: FillRow) -> None:
        self.sender.send(notices.fill(
            account=self.account, client_order_id=f.client_order_id, symbol=f.symbol,
            side=f.side, volume=f.volume, price=f.price, kind=f.kind,
            realized_pnl=f.realized_pnl, time=f.time, console_url=self.s.console_url))


@dataclass
class Notifications:
    sender: NotificationSender
    hooks: NotificationHooks
    summary: DailySummary | None = None

    def close(self, timeout: float = 5.0) -> None:
        if self.summary is not None:
            self.summary.close()
        self.sender.close(timeout)


def start_notifications(settings: Settings, journal: Journal) -> Notifications | None:
    """The sender, its listeners and the daily summary; ``None`` with no destination."""
    s = settings.notifications
    urls = s.url_values()
    if settings.alert_webhook_url is not None:
        urls.append(legacy_url(settings.alert_webhook_url.get_secret_value()))
    if not urls:
        return None
    sender = NotificationSender(urls, secrets=settings.secret_values(), attempts=s.attempts,
                                backoff=s.backoff_seconds, timeout=s.timeout_seconds,
                                queue_size=s.queue_size)
    hooks = NotificationHooks(s, settings.account, sender)
    hooks.subscribe(journal)
    out = Notifications(sender, hooks)
    if s.wants("daily_summary") and not journal.uow.in_memory:
        out.summary = DailySummary(journal_url=settings.journal.url, account=settings.account,
                                   at=s.daily_summary_at, console_url=s.console_url,
                                   send=sender.send)
        out.summary.start()
    log.info("notifications_started", destinations=[d.label for d in sender.destinations],
             events=list(s.events))
    return out
