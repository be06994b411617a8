"""Incident escalation to a chat webhook (Slack, Discord, Telegram-bridge compatible JSON).

Delivery happens on one background thread with a bounded queue: the trading cycle only
enqueues and never waits on the network. Each alert is retried with exponential backoff
up to ``attempts`` times; a full queue drops the newest alert with a log line (the
incident itself is always in the journal, which is the source of truth).
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("dta.alerts")


@dataclass(frozen=True, slots=True)
class Alert:
    severity: str
    kind: str
    message: str
    incident_id: int | None = None

    def payload(self, account: str) -> dict[str, Any]:
        text = f"[DTA {self.severity.upper()}] {account}: {self.kind} — {self.message}"
        # "text" is read by Slack and Mattermost, "content" by Discord; both are harmless
        # extras elsewhere.
        return {"text": text, "content": text, "severity": self.severity, "kind": self.kind,
                "account": account, "incident_id": self.incident_id}


class WebhookAlerter:
    def __init__(self, url: str, *, account: str, attempts: int = 5, backoff: float = 1.0,
                 timeout: float = 5.0, max_queue: int = 1000,
                 min_severity: str = "warning") -> None:
        self.url = url
        self.account = account
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.min_rank = _RANK.get(min_severity, 1)
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._run, name="dta-alerts", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> bool:
        """Enqueue without blocking; False when filtered out or the queue is full."""
        if _RANK.get(alert.severity, 3) < self.min_rank:
            return False
        try:
            self._queue.put_nowait(alert)
            return True
        except queue.Full:
            log.error("alert_dropped_queue_full", kind=alert.kind)
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Flush what is queued (bounded by ``timeout``), then stop the worker."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            self._deliver(alert)

    def _deliver(self, alert: Alert) -> None:
        body = json.dumps(alert.payload(self.account)).encode()
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        self.delivered += 1
                        log.info("alert_delivered", kind=alert.kind, attempt=attempt)
                        return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.warning("alert_attempt_failed", kind=alert.kind, attempt=attempt,
                            error=exc.__class__.__name__)
            if attempt < self.attempts:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        self.failed += 1
        log.error("alert_undelivered", kind=alert.kind, attempts=self.attempts)


_RANK = {"info": 0, "warning": 1, "high": 2, "critical": 3}
