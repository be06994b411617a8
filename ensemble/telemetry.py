"""One record per provider call, and where those records go.

Every call the ensemble makes (or decides not to make: ``breaker_open``) becomes a
``ProviderCall``. The calls of a decision ride on ``Decision.calls`` so the journal can
store them next to the decision; the same records stream to a ``TelemetrySink`` as they
happen (an answer that arrives after its decision's deadline reaches only the sink, as
``late``). A sink must never fail a decision: the ensemble swallows and counts its errors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol


class CallOutcome(StrEnum):
    OK = "ok"  # a valid answer (a local provider may still abstain: see ``abstained``)
    INVALID = "invalid"  # answered, but the output failed validation: an abstention
    TIMEOUT = "timeout"  # no answer by the decision's deadline (or the SDK timed out)
    LATE = "late"  # the answer arrived after the deadline: recorded, ignored
    ERROR = "error"  # transport or API error; ``error_class`` names it
    BREAKER_OPEN = "breaker_open"  # not called: the provider's circuit breaker is open
    NO_RECORDING = "no_recording"  # replay mode and nothing was recorded for this prompt


# Outcomes that count against a provider's availability (its circuit breaker).
FAILURE_OUTCOMES = frozenset({CallOutcome.TIMEOUT, CallOutcome.ERROR})


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """What one provider was asked at one stage of one decision, and what came of it.

    ``input_json`` is the persona input the prompt was rendered from and ``raw_text`` the
    provider's answer exactly as received, so a chain can be replayed and audited. Secrets
    never appear here: adapters scrub error messages of the key.
    """

    decision_key: str
    stage: str
    provider: str
    provider_class: str
    kind: str
    model: str
    outcome: CallOutcome
    abstained: bool = False
    reason: str | None = None  # why it abstained, was rejected, or failed
    error_class: str | None = None
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    template_id: str | None = None
    template_version: str | None = None
    template_hash: str | None = None
    request_key: str | None = None
    raw_text: str | None = None
    input_json: str | None = None
    output_json: str | None = None
    replayed: bool = False

    def to_dict(self, *, timing: bool = True) -> dict[str, Any]:
        """JSON-able view; ``timing=False`` drops the measured latency (replays compare)."""
        out = asdict(self)
        out["outcome"] = self.outcome.value
        if not timing:
            del out["latency_ms"]
        return out


# No single call consumes more tokens than the largest context windows offered (about 2M):
# a count above this is a broken or hostile server, not a bill.
MAX_TOKENS_PER_CALL = 4_000_000


def token_count(value: object, name: str, *, limit: int = MAX_TOKENS_PER_CALL,
                ) -> tuple[int, str | None]:
    """A provider-reported token count as ``(count, problem)``: an int in ``[0, limit]``
    is taken as is; anything else (negative, absurd, a float, a string, a bool, missing)
    is untrusted input we cannot bill, so it counts as 0 and ``problem`` says why. A
    bad count never fails the call: the answer is judged on its own."""
    if value is None:
        return 0, f"{name} missing"
    if isinstance(value, bool) or not isinstance(value, int):
        return 0, f"{name} {str(value)[:40]!r} is not an integer"
    if value < 0:
        return 0, f"{name} {value} is negative"
    if value > limit:
        return 0, f"{name} {value} is above any possible call ({limit})"
    return value, None


def call_cost(tokens_in: int, tokens_out: int, price_in_per_1k: float,
              price_out_per_1k: float) -> float:
    """Cost from pinned per-1K-token prices (never from a price the provider reports).
    Counts are validated at the adapter (``token_count``); one that still is negative
    (a recording made before that) costs nothing rather than a negative amount, which
    a Prometheus counter refuses."""
    return (max(tokens_in, 0) / 1000.0 * price_in_per_1k
            + max(tokens_out, 0) / 1000.0 * price_out_per_1k)


class TelemetrySink(Protocol):
    def record_call(self, call: ProviderCall) -> None:
        """Store or count one call. Called from worker threads too: be thread-safe."""
        ...


class InMemorySink:
    """Keeps every call; for tests, benchmarks and ``capability_matrix`` over a session."""

    def __init__(self) -> None:
        self._calls: list[ProviderCall] = []
        self._lock = threading.Lock()

    def record_call(self, call: ProviderCall) -> None:
        with self._lock:
            self._calls.append(call)

    @property
    def calls(self) -> tuple[ProviderCall, ...]:
        with self._lock:
            return tuple(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


class MultiSink:
    """Fans each call out to several sinks (e.g. the journal and Prometheus)."""

    def __init__(self, sinks: Iterable[TelemetrySink]) -> None:
        self.sinks = tuple(sinks)

    def record_call(self, call: ProviderCall) -> None:
        for sink in self.sinks:
            sink.record_call(call)


class PrometheusSink:
    """Counters and a latency histogram per provider, in a ``prometheus_client`` registry.

    ``prometheus_client`` is imported here, not at module import, so the CLI stays fast.
    Pass a fresh ``CollectorRegistry`` in tests; the default is the process-global one.
    """

    def __init__(self, registry: Any = None, *, namespace: str = "dta") -> None:
        import prometheus_client as prom

        kw: dict[str, Any] = {"namespace": namespace}
        if registry is not None:
            kw["registry"] = registry
        self.calls = prom.Counter("provider_calls_total", "Provider calls by outcome",
                                  ["provider", "model", "stage", "outcome"], **kw)
        self.latency = prom.Histogram(
            "provider_latency_seconds", "Provider call latency (answered calls)",
            ["provider", "model"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), **kw)
        self.tokens = prom.Counter("provider_tokens_total", "Tokens by direction",
                                   ["provider", "model", "direction"], **kw)
        self.cost = prom.Counter("provider_cost_total", "Cost from pinned prices",
                                 ["provider", "model"], **kw)
        self.abstentions = prom.Counter("provider_abstentions_total",
                                        "Calls that did not yield a vote",
                                        ["provider", "stage"], **kw)

    def record_call(self, call: ProviderCall) -> None:
        self.calls.labels(call.provider, call.model, call.stage, call.outcome.value).inc()
        if call.outcome not in (CallOutcome.BREAKER_OPEN, CallOutcome.NO_RECORDING):
            self.latency.labels(call.provider, call.model).observe(call.latency_ms / 1000.0)
        if call.tokens_in:
            self.tokens.labels(call.provider, call.model, "in").inc(call.tokens_in)
        if call.tokens_out:
            self.tokens.labels(call.provider, call.model, "out").inc(call.tokens_out)
        if call.cost:
            self.cost.labels(call.provider, call.model).inc(call.cost)
        if call.abstained and call.outcome is not CallOutcome.LATE:
            self.abstentions.labels(call.provider, call.stage).inc()
