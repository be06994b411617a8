"""One time budget per SDK call, the SDK's own retries included.

Both SDKs retry inside ``create`` (``max_retries``, 0..3 here) and, before a retry, sleep
what the error answer's ``retry-after-ms`` / ``Retry-After`` asks (the anthropic SDK any
length, the openai SDK up to two minutes) or their backoff (0.5 s doubling, at most 8 s),
with ``time.sleep``. The per-request ``timeout`` bounds each attempt, not that sleep nor
the sum of the attempts. So a call could hold its ensemble worker long after its decision
stopped waiting, for a retry whose answer could only arrive late and never count.

An adapter runs each call inside ``budget(seconds)`` (the ``timeout`` the member computed:
at most the decision's deadline plus ``late_grace_ms``), and two event hooks on the SDK's
HTTP client (``hooks(...)``, public ``httpx`` API, run in the calling thread) enforce that
cut-off for the call in progress on the thread:

- response: an error answer whose retry would start at or after the cut-off gets
  ``x-should-retry: false``, which both SDKs obey before retrying: the SDK raises the error
  at once (a 429 stays a ``RateLimitError``), exactly as with ``max_retries = 0``. A retry
  that fits goes out as the SDK would send it.
- request: each attempt's timeouts are clamped to the time left, and an attempt that would
  start at or after the cut-off (a retry after a backoff that followed a timeout or a
  dropped connection, where no answer carried a header to act on) is not sent: the
  adapter's ``spent`` error is raised instead, which the SDK does not retry and the
  adapter reports as a timeout.

A total time, not only per operation: ``httpx`` timeouts bound each connect, write and
read, and a read timeout fires only on silence (https://www.python-httpx.org/advanced/
timeouts/), so a server sending a few bytes just inside every read timeout held its worker
for as long as it liked. So each call in ``budget`` is also watched: one watchdog thread
holds the cut-offs, and when a call passes its own, the sockets its attempt in progress
uses are shut down (``socket.shutdown``, which wakes a thread blocked in ``recv`` on
Linux, unlike ``close``): the read ends at once, the SDK raises a connection error, and
``budget`` reports it as the timeout it is. The sockets are those of the request's
connection, taken from ``httpcore``'s documented ``trace`` request extension
(``connect_tcp`` / ``start_tls`` return the stream) and ``network_stream`` response
extension (a connection reused from the pool), and let go when the response is closed
(``response_closed``), so a pooled connection that another call takes later is never
touched. A reused connection still waiting for its first header byte is bounded by the
clamped read timeout instead.

Outside ``budget`` the hooks do nothing. No SDK or ``httpx`` import here: the hooks only
read and write headers and the documented ``timeout``, ``trace`` and ``network_stream``
extensions.
"""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import itertools
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from domain.errors import ProviderCallError

# The SDKs' backoff when an error answer names no wait: INITIAL_RETRY_DELAY * 2**n capped
# at MAX_RETRY_DELAY, minus up to 25 % jitter (openai/_constants.py, anthropic/_constants.py).
_INITIAL_RETRY_DELAY = 0.5
_MAX_RETRY_DELAY = 8.0

_local = threading.local()


def cutoff() -> float | None:
    """The ``time.monotonic()`` cut-off of the call in progress on this thread, if any."""
    value: float | None = getattr(_local, "cutoff", None)
    return value


class _Attempt:
    """One HTTP attempt of a watched call: the ``trace`` extension of its request, which
    collects the network streams the attempt reads from until its response is closed."""

    __slots__ = ("call", "previous", "request", "spent", "streams")

    def __init__(self, call: _Call, previous: Any, spent: Callable[[Any], BaseException],
                 request: Any) -> None:
        self.call = call
        self.previous = previous  # a trace callback someone else installed: still called
        self.streams: list[Any] = []
        self.spent = spent
        self.request = request

    def __call__(self, name: str, info: dict[str, Any]) -> None:
        if self.previous is not None:
            self.previous(name, info)
        if name.endswith(("connect_tcp.complete", "start_tls.complete")):
            self.add(info.get("return_value"))
        elif name.endswith(("response_closed.complete", "response_closed.failed")):
            with _watch.lock:
                self.streams.clear()
                self.call.attempts.discard(self)
        elif name.endswith(".failed") and self.call.cut:
            # The read (or write) failed because the watchdog ended it: raise the error
            # the SDK passes through unretried, in place of a connection error that it
            # would retry after a backoff sleep, past the cut-off.
            raise self.spent(self.request)

    def add(self, stream: Any) -> None:
        if stream is None:
            return
        with _watch.lock:
            self.streams.append(stream)
            self.call.attempts.add(self)
            if self.call.expired:  # connected after the cut-off: end it now
                self.call.cut = True
                _shut(stream)


class _Call:
    __slots__ = ("attempts", "cut", "cutoff", "done", "expired")

    def __init__(self, cutoff: float) -> None:
        self.cutoff = cutoff
        self.expired = False
        self.cut = False  # the watchdog shut a connection of this call down
        self.done = False
        self.attempts: set[_Attempt] = set()


def _shut(stream: Any) -> None:
    """Shut a stream's socket down both ways; the fd stays open (closing it is its owner's
    job, so no fd can be reused under another reader). ``socket.socket.shutdown`` directly:
    ``SSLSocket.shutdown`` would also drop its TLS state under the reading thread."""
    try:
        sock = stream.get_extra_info("socket")
        if isinstance(sock, socket.socket):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, AttributeError, ValueError):
        pass  # already closed: nothing left to end


class _Watchdog:
    """The cut-offs of the calls in progress, in a heap, and one daemon thread that ends
    each call still in progress at its cut-off. Per call: a heap push and, when it is the
    earliest, a wake-up; a call that finished is dropped lazily when its cut-off comes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._heap: list[tuple[float, int, _Call]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self.expired = 0  # calls ended at their cut-off (tests, diagnostics)

    def watch(self, call: _Call) -> None:
        with self.lock:
            earliest = not self._heap or call.cutoff < self._heap[0][0]
            heapq.heappush(self._heap, (call.cutoff, next(self._seq), call))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="dta-call-watchdog")
                self._thread.start()
            elif earliest:
                self._wake.notify()

    def _run(self) -> None:
        with self.lock:
            while True:
                if not self._heap:
                    self._wake.wait()
                    continue
                cutoff, _, call = self._heap[0]
                if call.done:
                    heapq.heappop(self._heap)
                    continue
                left = cutoff - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                heapq.heappop(self._heap)
                call.expired = True
                self.expired += 1
                for attempt in call.attempts:
                    for stream in attempt.streams:
                        call.cut = True
                        _shut(stream)


_watch = _Watchdog()


def _current() -> _Call | None:
    call: _Call | None = getattr(_local, "call", None)
    return call


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[float]:
    """Run an SDK call that must be over, retries included, ``seconds`` from now. An error
    the call ends with once its cut-off has passed is a timeout (``ProviderCallError``
    with ``timeout=True``): whatever the SDK made of its connection being ended."""
    previous, previous_call = cutoff(), _current()
    call = _Call(time.monotonic() + max(seconds, 0.0))
    _local.cutoff, _local.call = call.cutoff, call
    _watch.watch(call)
    try:
        yield call.cutoff
    except ProviderCallError as exc:
        if not call.cut:
            raise
        raise ProviderCallError(
            f"timed out: the call's budget (decision deadline + late grace, {seconds:.3f} s)"
            f" ran out while the answer was still arriving; its connection was closed "
            f"({exc.error_class})", error_class="CallBudgetSpent", timeout=True) from None
    finally:
        with _watch.lock:
            call.done = True
            call.attempts.clear()
        _local.cutoff, _local.call = previous, previous_call


def retry_wait(headers: Any, retries_taken: int) -> float:
    """How long the SDK would sleep before retrying this answer, at most (seconds): the
    first of ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date) that parses,
    if positive, else the backoff after ``retries_taken`` retries (as the SDKs do)."""
    named: float | None = None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            named = float(value) / divisor
            break
        except ValueError:
            continue
    if named is None and headers.get("retry-after") is not None:
        parsed = email.utils.parsedate_tz(headers["retry-after"])
        if parsed is not None:
            named = float(email.utils.mktime_tz(parsed)) - time.time()
    if named is not None and not math.isnan(named) and named > 0:
        return named
    return min(_INITIAL_RETRY_DELAY * 2.0 ** min(retries_taken, 32), _MAX_RETRY_DELAY)


def hooks(spent: Callable[[Any], BaseException]) -> dict[str, list[Callable[[Any], None]]]:
    """``event_hooks`` for the SDK's ``DefaultHttpxClient``. ``spent(request)`` is the
    error to raise for an attempt that would start after the cut-off: one the SDK passes
    through without retrying."""

    def on_request(request: Any) -> None:
        end = cutoff()
        if end is None:
            return
        left = end - time.monotonic()
        if left <= 0:
            raise spent(request)
        current = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {
            phase: left if current.get(phase) is None else min(float(current[phase]), left)
            for phase in ("connect", "read", "write", "pool")}
        call = _current()
        if call is not None:
            request.extensions["trace"] = _Attempt(call, request.extensions.get("trace"),
                                                   spent, request)

    def on_response(response: Any) -> None:
        end = cutoff()
        if end is None:
            return
        attempt = response.request.extensions.get("trace")
        if isinstance(attempt, _Attempt):  # a pooled connection: its stream only now
            stream = response.extensions.get("network_stream")
            if stream is not None and stream not in attempt.streams:
                attempt.add(stream)
        if response.status_code < 400:
            return
        try:
            taken = int(response.request.headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            taken = 0
        if time.monotonic() + retry_wait(response.headers, taken) >= end:
            response.headers["x-should-retry"] = "false"

    return {"request": [on_request], "response": [on_response]}
