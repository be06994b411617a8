"""Per-provider circuit breaker.

closed -> open when, over the last ``window_s`` seconds, at least ``min_calls`` calls were
made and the share of failures (errors, timeouts, calls slower than ``slow_call_ms``)
reached ``failure_rate``; an ensemble resolves an unset ``slow_call_ms`` from its deadline
(``EnsembleConfig.effective_breaker``). open -> half-open once ``cooldown_s`` has passed:
one probe call at a time is let through. half-open -> closed after ``half_open_probes``
good probes; half-open -> open again (a fresh cooldown) on a failed one.

Every transition is told to ``listener`` (if set) as a ``BreakerTransition``: the daemon
queues them and journals them as provider events (``ensemble/late.py``), since the breaker
lives in the daemon's process and ``dta providers status`` runs in another. The listener
is called under the breaker's lock and must only queue.

The clock is injectable (``time.monotonic`` by default) so tests can step through the
cooldown without sleeping. The breaker is the state owner for a provider's availability;
it is updated only by the thread evaluating a decision, and read by ``health()`` from any
thread, hence the lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ensemble.config import BreakerConfig

_MAX_WINDOW = 10_000  # calls kept per window; a replay at full speed must not grow it


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerStatus:
    state: BreakerState
    calls_in_window: int
    failures_in_window: int
    opened_for_s: float | None
    trips: int


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """A breaker changed state (``previous`` None: the breaker was just made)."""

    provider: str
    previous: BreakerState | None
    state: BreakerState
    reason: str


class CircuitBreaker:
    def __init__(self, name: str, config: BreakerConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.listener: Callable[[BreakerTransition], None] | None = None
        self._state = BreakerState.CLOSED
        self._window: deque[tuple[float, bool]] = deque()
        self._failures = 0  # failures in ``_window``, kept in step with it (O(1) per call)
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe_successes = 0
        self._trips = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ queries

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._tick()
            return self._state

    def status(self) -> BreakerStatus:
        with self._lock:
            self._tick()
            now = self.clock()
            self._trim(now)
            opened = now - self._opened_at if self._state is not BreakerState.CLOSED else None
            return BreakerStatus(self._state, len(self._window), self._failures, opened,
                                 self._trips)

    # ------------------------------------------------------------------ transitions

    def allow(self) -> bool:
        """May a call go out now? In half-open, grants the single probe slot."""
        with self._lock:
            self._tick()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            return False

    def release(self) -> None:
        """A call ``allow`` let through was not made after all (it never left the queue):
        nothing to judge the provider by, so nothing is counted, and a half-open probe
        slot it held is free again."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._probe_in_flight = False

    def record(self, ok: bool, latency_ms: float = 0.0) -> None:
        """The outcome of a call that ``allow`` let through."""
        slow = self.config.slow_call_ms  # None: no slow-call rule (see BreakerConfig)
        good = ok and (slow is None or latency_ms <= slow)
        with self._lock:
            now = self.clock()
            if self._state is BreakerState.HALF_OPEN:
                self._probe_in_flight = False
                if good:
                    self._probe_successes += 1
                    if self._probe_successes >= self.config.half_open_probes:
                        self._state = BreakerState.CLOSED
                        self._clear()
                        self._tell(BreakerState.HALF_OPEN,
                                   f"{self._probe_successes} good probe(s)")
                else:
                    self._open(now, "the half-open probe was slow" if ok
                               else "the half-open probe failed")
                return
            if self._state is BreakerState.OPEN:
                return  # a call let through before the trip: already accounted for
            self._window.append((now, good))
            self._failures += not good
            self._trim(now)
            if (len(self._window) >= self.config.min_calls
                    and self._failures / len(self._window) >= self.config.failure_rate):
                self._open(now, f"{self._failures} of the last {len(self._window)} calls "
                                f"failed or were slow within {self.config.window_s:g} s "
                                f"(failure_rate {self.config.failure_rate:g})")

    def reset(self) -> None:
        with self._lock:
            previous = self._state
            self._state = BreakerState.CLOSED
            self._clear()
            self._probe_in_flight = False
            if previous is not BreakerState.CLOSED:
                self._tell(previous, "reset")

    def announce(self, reason: str) -> None:
        """Tell the listener the current state (e.g. a breaker just built: closed)."""
        with self._lock:
            self._tick()
            if self.listener is not None:
                self.listener(BreakerTransition(self.name, None, self._state, reason))

    # ------------------------------------------------------------------ internals

    def _open(self, now: float, reason: str) -> None:
        previous = self._state
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._probe_in_flight = False
        self._probe_successes = 0
        self._clear()
        self._trips += 1
        self._tell(previous, reason)

    def _tick(self) -> None:
        if (self._state is BreakerState.OPEN
                and self.clock() - self._opened_at >= self.config.cooldown_s):
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
            self._probe_successes = 0
            self._tell(BreakerState.OPEN,
                       f"cooldown of {self.config.cooldown_s:g} s over: probing")

    def _tell(self, previous: BreakerState, reason: str) -> None:
        if self.listener is not None:
            self.listener(BreakerTransition(self.name, previous, self._state, reason))

    def _clear(self) -> None:
        self._window.clear()
        self._failures = 0

    def _trim(self, now: float) -> None:
        horizon = now - self.config.window_s
        window = self._window
        while window and (window[0][0] < horizon or len(window) > _MAX_WINDOW):
            _, ok = window.popleft()
            self._failures -= not ok
