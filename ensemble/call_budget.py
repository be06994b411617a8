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

Outside ``budget`` the hooks do nothing. No SDK or ``httpx`` import here: the hooks only
read and write headers and the documented ``timeout`` request extension.
"""

from __future__ import annotations

import contextlib
import email.utils
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

# The SDKs' backoff when an error answer names no wait: INITIAL_RETRY_DELAY * 2**n capped
# at MAX_RETRY_DELAY, minus up to 25 % jitter (openai/_constants.py, anthropic/_constants.py).
_INITIAL_RETRY_DELAY = 0.5
_MAX_RETRY_DELAY = 8.0

_local = threading.local()


def cutoff() -> float | None:
    """The ``time.monotonic()`` cut-off of the call in progress on this thread, if any."""
    value: float | None = getattr(_local, "cutoff", None)
    return value


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[float]:
    """Run an SDK call that must be over, retries included, ``seconds`` from now."""
    previous = cutoff()
    _local.cutoff = time.monotonic() + max(seconds, 0.0)
    try:
        yield _local.cutoff
    finally:
        _local.cutoff = previous


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

    def on_response(response: Any) -> None:
        end = cutoff()
        if end is None or response.status_code < 400:
            return
        try:
            taken = int(response.request.headers.get("x-stainless-retry-count", "0"))
        except ValueError:
            taken = 0
        if time.monotonic() + retry_wait(response.headers, taken) >= end:
            response.headers["x-should-retry"] = "false"

    return {"request": [on_request], "response": [on_response]}
