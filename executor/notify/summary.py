"""The daily summary: the last 24 hours of one account in one message, sent at
``notifications.daily_summary_at`` (UTC, wall clock).

It runs on a thread of its own with a journal connection of its own (``Journal.open`` on
the same URL), so its queries never share the trading cycle's session or wait for its
lock. A journal only this process can see (in-memory SQLite) gets no summary.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

import structlog

from executor.journal.day_figures import DayFigures, day_figures
from executor.notify.notice import Notice

log = structlog.get_logger("dta.notify")

_DAY = timedelta(days=1)


def next_summary_at(now: datetime, at: time) -> datetime:
    """The first ``at`` (UTC) strictly after ``now``."""
    today = datetime.combine(now.astimezone(UTC).date(), at, tzinfo=UTC)
    return today if today > now else today + _DAY


def _money(x: float) -> str:
    return f"{x:+,.2f}"


def _counts(counts: dict[str, int], empty: str = "none") -> str:
    shown = [f"{v} {k}" for k, v in sorted(counts.items()) if v]
    return ", ".join(shown) if shown else empty


def summary_notice(account: str, f: DayFigures, console_url: str) -> Notice:
    equity = ("day-start equity unknown" if f.start_equity is None
              else f"equity at the day's start {f.start_equity:,.2f}")
    approvals = dict(f.approvals)
    queued = approvals.pop("queued", 0)
    lines = [
        f"Daily summary {f.since:%Y-%m-%d %H:%M} to {f.until:%Y-%m-%d %H:%M} UTC.",
        f"PnL: realised {_money(f.realised_pnl)}, fees {f.fees:,.2f}"
        + (f", funding {_money(f.funding)}" if f.funding else "")
        + f", net {_money(f.net_pnl)} over {f.fills} fill(s); {equity}.",
        f"Orders: {sum(f.orders.values())} ({_counts(f.orders)}).",
        f"Approvals: {queued} queued; decided: {_counts(approvals)}.",
        f"Incidents: {sum(f.incidents.values())} opened ({_counts(f.incidents)}); "
        f"{f.open_incidents} open now.",
    ]
    return Notice("daily_summary", "info", f"[DTA INFO] {account}: daily summary",
                  "\n".join(lines), link=console_url,
                  facts={"orders": sum(f.orders.values()), "fills": f.fills})


class DailySummary:
    """Sleeps until the next summary time, composes, hands the notice to ``send``."""

    def __init__(self, *, journal_url: str, account: str, at: time, console_url: str,
                 send: Callable[[Notice], object],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.journal_url = journal_url
        self.account = account
        self.at = at
        self.console_url = console_url
        self.send = send
        self.now = now
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dta-notify-summary",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def run_once(self, until: datetime) -> Notice:
        """Compose the summary of the 24 hours before ``until`` and send it."""
        from executor.journal.store import Journal

        journal = Journal.open(self.journal_url, migrate_schema=False, create=False)
        try:
            figures = day_figures(journal.uow, self.account, until - _DAY, until)
            journal.rollback()
        finally:
            journal.close()
        notice = summary_notice(self.account, figures, self.console_url)
        self.send(notice)
        self.sent += 1
        return notice

    def _run(self) -> None:
        while True:
            due = next_summary_at(self.now(), self.at)
            if self._stop.wait(max(0.0, (due - self.now()).total_seconds())):
                return
            try:
                self.run_once(due)
            except Exception as exc:  # a journal hiccup costs one summary, not the thread
                log.error("daily_summary_failed", error=exc.__class__.__name__)
