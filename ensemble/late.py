"""Late answers, from the pool thread they arrive on to the thread that owns the journal.

An LLM answer that arrives after its decision's deadline is recorded as ``late`` (tokens
and cost included) and never counts. It arrives on an ensemble pool thread, while the
journal is a single session owned by the cycle thread and is not thread-safe. So
``LateCalls`` is a ``TelemetrySink`` that only queues late calls (thread-safe, bounded);
the owner of the journal calls ``write`` on its own thread (the daemon: at the start of
every cycle), which journals each as a ``provider_calls`` row, joined to its decision when
``decision_id`` can name it, and counts it in the metrics.

The rows have the columns the daemon writes for a decision's own calls
(``RealtimeExecutor._record_calls``), so reports and ``dta trace`` read them alike.

Breaker transitions take the same road (``breaker_transition``, given to
``Ensemble.watch_breakers``): a transition happens under a breaker's lock on whichever
thread asked it, and is journaled by ``write`` as a provider event whose action is
``breaker_<state>`` (operator ``system``), which ``dta providers status`` reads: the
breakers live in the daemon's process, the command runs in another.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ensemble.breaker import BreakerTransition
from ensemble.provider_text import stored
from ensemble.telemetry import CallOutcome, ProviderCall

BREAKER_ACTION_PREFIX = "breaker_"  # provider event actions: breaker_open, breaker_closed...


class CallJournal(Protocol):
    def record_provider_call(self, values: dict[str, Any]) -> None: ...

    def record_provider_event(self, provider: str, action: str, operator: str,
                              reason: str) -> None: ...


class CallCounter(Protocol):
    def provider_call(self, call: Any) -> None: ...


def call_row(call: ProviderCall, decision_id: int | None) -> dict[str, Any]:
    """The ``provider_calls`` row of ``call``."""
    return {
        "decision_id": decision_id, "stage": call.stage, "provider": call.provider,
        "provider_class": call.provider_class, "model": call.model,
        "template_id": call.template_id, "template_version": call.template_version,
        "template_hash": call.template_hash, "replayed": bool(call.replayed),
        "latency_ms": float(call.latency_ms), "tokens_in": int(call.tokens_in),
        "tokens_out": int(call.tokens_out), "cost": float(call.cost),
        "outcome": call.outcome.value, "abstained": bool(call.abstained),
        "error_class": call.error_class, "error": call.reason,
        "request_key": call.request_key,
        # Provider text, bounded and storable (``provider_text.stored``): an oversized
        # answer or a NUL must not fail the commit, nor grow a row per call without bound.
        "raw_text": None if call.raw_text is None else stored(call.raw_text),
        "input_json": call.input_json, "output_json": call.output_json,
    }


class LateCalls:
    """Queue of late calls; ``record_call`` from any thread, ``drain``/``write`` from the
    journal's. At most ``maxlen`` wait (a journal that is never drained, e.g. a one-off
    build, must not grow without bound): the oldest beyond it are dropped and counted."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._calls: deque[ProviderCall] = deque()
        self._transitions: deque[BreakerTransition] = deque(maxlen=maxlen)
        self._maxlen = maxlen
        self._lock = threading.Lock()
        self.dropped = 0

    def breaker_transition(self, transition: BreakerTransition) -> None:
        """Queue a breaker transition (any thread; called under the breaker's lock)."""
        self._transitions.append(transition)  # deque.append is atomic

    def record_call(self, call: ProviderCall) -> None:
        if call.outcome is not CallOutcome.LATE:
            return  # a decision's own calls are journaled with the decision
        with self._lock:
            if len(self._calls) >= self._maxlen:
                self._calls.popleft()
                self.dropped += 1
            self._calls.append(call)

    def __len__(self) -> int:
        with self._lock:
            return len(self._calls)

    def drain(self) -> list[ProviderCall]:
        with self._lock:
            calls = list(self._calls)
            self._calls.clear()
        return calls

    def write(self, journal: CallJournal, metrics: CallCounter | None,
              decision_id: Callable[[str], int | None]) -> int:
        """Journal and count every queued late call; on the journal's thread only.
        ``decision_id(decision_key)`` names the decision a call answered, or None."""
        while self._transitions:
            t = self._transitions.popleft()
            previous = "new" if t.previous is None else t.previous.value
            journal.record_provider_event(t.provider, BREAKER_ACTION_PREFIX + t.state.value,
                                          "system", f"{previous} -> {t.state.value}: "
                                                    f"{t.reason}")
        if not self._calls:  # the usual case, every cycle: no lock, nothing to do
            return 0
        calls = self.drain()
        ids: dict[str, int | None] = {}
        for call in calls:
            if call.decision_key not in ids:
                ids[call.decision_key] = decision_id(call.decision_key)
            if metrics is not None:
                metrics.provider_call(call)
            journal.record_provider_call(call_row(call, ids[call.decision_key]))
        return len(calls)
