"""Delivery through apprise, off the trading thread.

The cycle's side is ``send``: ``put_nowait`` on a bounded queue, nothing else; a full
queue drops the notice with a counted, logged warning rather than wait (the journal, not
the message, is the record). One worker thread delivers: each notice to each destination,
and a failed attempt is tried again after ``backoff * 2**(attempt-1)`` seconds, up to
``attempts``, without holding up the notices behind it (retries wait in a schedule, not in
a sleep). A destination that hangs costs the worker its timeout, never the cycle.

Secrets: the destination URLs hold the services' tokens. Every message is scrubbed of
every configured secret and of each token inside the URLs before apprise sees it, our own
log lines name a destination by its scheme and number only (``json#1``), and apprise's own
log records (``logging.getLogger("apprise")``, which at debug level print request URLs,
payloads and responses) are scrubbed and re-emitted as structlog events at warning and
above (``AppriseLogBridge``). Apprise's ``secure_logging`` stays on as a second line.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import structlog

from executor.log_setup import SecretScrubber
from executor.notify.notice import Notice
from executor.notify.settings import tokens, url_tokens
from executor.settings import MIN_SECRET_LENGTH

log = structlog.get_logger("dta.notify")

_STOP = object()


@dataclass
class _Destination:
    label: str  # "json#1": what our logs call it
    plugin: Any  # apprise's NotifyBase for one URL


@dataclass(order=True)
class _Attempt:
    due: float
    seq: int
    notice: Notice = field(compare=False)
    destination: _Destination = field(compare=False)
    attempt: int = field(compare=False, default=1)


def url_secrets(url: str, plugin: Any = None) -> set[str]:
    """``url_tokens`` plus what apprise itself masks in its privacy view of the URL (each
    plugin knows which of its parts are private: Slack's three tokens, Discord's)."""
    out = url_tokens(url)
    if plugin is not None:
        full = plugin.url(privacy=False)
        out.add(full)
        out |= set(_location(full)) - set(_location(plugin.url(privacy=True)))
    return {s for s in out if len(s) >= MIN_SECRET_LENGTH}


def _location(url: str) -> list[str]:
    """The tokens of a URL's host and path (its query holds options, not secrets)."""
    parts = urlsplit(url)
    return tokens(parts.netloc + parts.path)


class AppriseLogBridge(logging.Handler):
    """apprise's log records, scrubbed, as structlog events (it logs through the standard
    library; without this its warnings reached stderr unscrubbed via ``lastResort``)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.scrubbers: list[SecretScrubber] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record: say so, without its arguments
            text = str(record.msg)
        for scrubber in list(self.scrubbers):
            text = scrubber.scrub(text)
        log.warning("apprise_log", apprise_level=record.levelname.lower(), message=text)


_BRIDGE = AppriseLogBridge()


@contextlib.contextmanager
def apprise_logs_scrubbed(urls: Iterable[str], secrets: Iterable[str] = ()) -> Iterator[None]:
    """While apprise parses ``urls`` (it logs an unparseable one whole), its log records
    go through the bridge, scrubbed of the URLs and their tokens."""
    hidden = set(secrets)
    for url in urls:
        hidden |= url_tokens(url)
    scrubber = SecretScrubber(s for s in hidden if len(s) >= MIN_SECRET_LENGTH)
    _install_bridge(scrubber)
    try:
        yield
    finally:
        _remove_bridge(scrubber)


def _install_bridge(scrubber: SecretScrubber) -> None:
    logger = logging.getLogger("apprise")
    if _BRIDGE not in logger.handlers:
        logger.addHandler(_BRIDGE)
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    _BRIDGE.scrubbers.append(scrubber)


def _remove_bridge(scrubber: SecretScrubber) -> None:
    if scrubber in _BRIDGE.scrubbers:
        _BRIDGE.scrubbers.remove(scrubber)


def _load(urls: Iterable[str], timeout: float) -> list[tuple[str, _Destination | None]]:
    """One apprise plugin per URL, so a retry goes only where delivery failed."""
    import apprise

    asset = apprise.AppriseAsset(app_id="DTA executor", app_desc="DTA executor",
                                 secure_logging=True, storage_mode="memory")
    out: list[tuple[str, _Destination | None]] = []
    for n, url in enumerate(urls, start=1):
        plugin = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
        label = f"{url.partition('://')[0] or '?'}#{n}"
        if plugin is None:  # never the URL itself: it holds a token
            log.error("notification_url_unusable", destination=label)
            out.append((url, None))
            continue
        plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout
        out.append((url, _Destination(label, plugin)))
    return out


class NotificationSender:
    def __init__(self, urls: Iterable[str], *, secrets: Iterable[str] = (), attempts: int = 5,
                 backoff: float = 2.0, timeout: float = 10.0, queue_size: int = 1000,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.attempts = attempts
        self.backoff = backoff
        self.now = now
        urls = list(urls)
        with apprise_logs_scrubbed(urls, secrets):
            loaded = _load(urls, timeout)
        self.destinations = [d for _url, d in loaded if d is not None]
        hidden = set(secrets)
        for url, d in loaded:  # an unusable URL is still a secret
            hidden |= url_secrets(url, d.plugin if d is not None else None)
        self.scrubber = SecretScrubber(s for s in hidden if len(s) >= MIN_SECRET_LENGTH)
        self.delivered = 0  # (notice, destination) pairs accepted
        self.failed = 0  # pairs given up after every attempt
        self.dropped = 0  # notices not queued: the queue was full
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._retries: list[_Attempt] = []
        self._seq = itertools.count()
        self._deadline: float | None = None  # set by ``close``: give up retries after it
        _install_bridge(self.scrubber)
        self._thread = threading.Thread(target=self._run, name="dta-notify", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the cycle's side

    def send(self, notice: Notice) -> bool:
        """Hand over without blocking; False when the queue is full (dropped, counted)."""
        try:
            self._queue.put_nowait(notice)
            return True
        except queue.Full:
            self.dropped += 1
            log.warning("notification_dropped_queue_full", notice=notice.event,
                        dropped=self.dropped)
            return False

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued and retry what failed until ``timeout``; then stop."""
        self._deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("notification_queue_not_flushed", queued=self._queue.qsize())
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 0.5)
        if not self._thread.is_alive():  # a worker still stuck in a send may yet log
            _remove_bridge(self.scrubber)

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        stopping = False
        while True:
            if not stopping:
                item = self._next_item()
                if item is _STOP:
                    stopping = True
                elif item is not None:
                    for d in self.destinations:
                        self._attempt(_Attempt(0.0, next(self._seq), item, d))
            if stopping and not self._retries:
                return
            self._due_retries()
            if stopping and self._retries:
                self._wait_for_retry()

    def _next_item(self) -> Any:
        wait = None
        if self._retries:
            wait = max(0.0, self._retries[0].due - time.monotonic())
        try:
            return self._queue.get(timeout=wait)
        except queue.Empty:
            return None

    def _wait_for_retry(self) -> None:
        due = self._retries[0].due
        if self._deadline is not None and due > self._deadline:
            for pending in self._retries:  # no time left before the process exits
                self._give_up(pending)
            self._retries.clear()
            return
        time.sleep(max(0.0, due - time.monotonic()))

    def _due_retries(self) -> None:
        while self._retries and self._retries[0].due <= time.monotonic():
            self._attempt(heapq.heappop(self._retries))

    def _attempt(self, a: _Attempt) -> None:
        try:
            self._try(a)
        except Exception as exc:  # a bug here must not end the worker (and its queue)
            log.error("notification_worker_error", error=exc.__class__.__name__)

    def _try(self, a: _Attempt) -> None:
        ok = self._deliver(a.notice, a.destination)
        if ok:
            self.delivered += 1
            log.info("notification_delivered", notice=a.notice.event,
                     destination=a.destination.label, attempt=a.attempt)
            return
        log.warning("notification_attempt_failed", notice=a.notice.event,
                    destination=a.destination.label, attempt=a.attempt)
        if a.attempt >= self.attempts:
            self._give_up(a)
            return
        due = time.monotonic() + self.backoff * 2 ** (a.attempt - 1)
        heapq.heappush(self._retries, _Attempt(due, next(self._seq), a.notice,
                                               a.destination, a.attempt + 1))

    def _give_up(self, a: _Attempt) -> None:
        self.failed += 1
        log.error("notification_undelivered", notice=a.notice.event,
                  destination=a.destination.label, attempts=a.attempt)

    def _deliver(self, notice: Notice, destination: _Destination) -> bool:
        from apprise import NotifyType

        title = self.scrubber.scrub(notice.title)
        body = self.scrubber.scrub(notice.text(self.now()))
        try:
            return bool(destination.plugin.notify(body=body, title=title,
                                                  notify_type=NotifyType(notice.notify_type)))
        except Exception as exc:  # a plugin bug must not end the worker
            log.warning("notification_plugin_error", destination=destination.label,
                        error=exc.__class__.__name__)
            return False
