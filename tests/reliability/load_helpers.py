"""A live-like daemon over 500 symbols whose ensemble calls LLMs through the real openai and
anthropic SDKs, for the load test.

The 500 streams, the in-memory live feed and the executor come from the benchmarks
(``benchmarks/bench_latency.py``, as ``bench_many_symbols`` uses them), so the test
measures the cycle the benchmark measures. What is added here: fake LLM servers whose
429 answers carry ``Retry-After`` or not, a breaker clock on which cycles are a bar apart,
and a warm start from the journal (the restart path) instead of a catch-up cycle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from fakes.llm_servers import (
    Behaviour,
    Fail,
    FakeAnthropicServer,
    FakeOpenAIServer,
    Reply,
    Responder,
    stage_responder,
)
from support.builders import a_proposal
from support.daemon_helpers import settings_for

from benchmarks.bench_latency import (
    MANY_SYMBOL_OVERRIDES,
    LiveFeed,
    Stream,
    TimedPaperBroker,
    build_executor,
    derived_bars,
    force_live_polls,
    load_sample,
)
from domain import Bar, Decision, Direction, MarketSnapshot, Proposal
from ensemble.ensemble import Ensemble
from executor.daemon import RealtimeExecutor
from executor.journal.store import Journal
from executor.settings import Settings

START = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)

def many_symbol_settings(url: str, **overrides: Any) -> Settings:
    """The example settings with the benchmark's account-wide limits for many streams (no
    drawdown halt or exposure cap stops decisions half-way; every check still runs)."""
    return settings_for(url, **MANY_SYMBOL_OVERRIDES, **overrides)


# --------------------------------------------------------------------------- fake LLMs


class _RetryAfterSwitch:
    """A 429 carries ``Retry-After: <retry_after>`` seconds, or no such header when it is
    None (both are documented: OpenAI and Anthropic send it on most rate limits, not on
    all). The fakes' other answers are untouched."""

    retry_after: str | None = "1"

    def _send(self, h: BaseHTTPRequestHandler, status: int, payload: bytes,
              content_type: str = "application/json", extra: dict[str, str] | None = None,
              ) -> None:
        if status == 429:
            extra = {k: v for k, v in (extra or {}).items() if k != "retry-after"}
            if self.retry_after is not None:
                extra["retry-after"] = self.retry_after
        super()._send(h, status, payload, content_type, extra)  # type: ignore[misc]


class RetryAfterOpenAIServer(_RetryAfterSwitch, FakeOpenAIServer):
    pass


class RetryAfterAnthropicServer(_RetryAfterSwitch, FakeAnthropicServer):
    pass


def rate_limited(_body: dict[str, Any]) -> Behaviour:
    return Fail(429)


def contrary_after(delay: float, confidence: float = 0.99) -> Responder:
    """A latency spike: a well-formed answer *against* the proposal, at ``confidence``,
    after ``delay`` seconds. Should it ever count, it would show as that vote."""
    return slow(stage_responder(agree=False, confidence=confidence), delay)


def slow(responder: Responder, delay: float) -> Responder:
    """The same answers, each ``delay`` seconds late."""

    def respond(body: dict[str, Any]) -> Behaviour:
        answer = responder(body)
        return replace(answer, delay=delay) if isinstance(answer, Reply) else answer

    return respond


# --------------------------------------------------------------------------- clock


class BarApartClock:
    """The breakers' clock: wall time within a cycle, plus ``advance`` between cycles, so
    breaker windows and cooldowns see cycles a bar apart as the live scheduler runs them
    (a 30 s cooldown has passed by the next M15 bar), without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


# --------------------------------------------------------------------------- the daemon


@dataclass
class CycleRecord:
    phase: str
    seconds: float
    handled: int
    decisions: list[tuple[float, Decision]]  # (seconds in Ensemble.evaluate, decision)
    breakers_before: dict[str, str]
    breakers_after: dict[str, str]
    trips_after: dict[str, int]


@dataclass
class LoadDaemon:
    """``symbols`` M15 streams (the bench's derivation of the EURUSD sample) on one time
    grid, ``warm_bars`` of each already in the journal, then one bar per stream per cycle
    through ``RealtimeExecutor.run_cycle`` with the live commit cadence."""

    settings: Settings
    journal: Journal
    symbols: int = 500
    warm_bars: int = 40
    max_cycles: int = 40
    executor: RealtimeExecutor = field(init=False)
    broker: TimedPaperBroker = field(init=False)
    feed: LiveFeed = field(init=False)
    cycles: list[CycleRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        base = load_sample().bars
        streams: dict[Stream, list[Bar]] = {}
        for k in range(self.symbols):
            sym = f"SYN{k:03d}"
            streams[(sym, "M15")] = derived_bars(
                base, sym, "M15", START, self.warm_bars + self.max_cycles,
                row_offset=37 * k, price_offset=0.01 * k)
        # Warm start: the backlog is already journaled, as after a restart; start() rebuilds
        # every snapshot from it (state only: no strategy, no provider calls).
        for bars in streams.values():
            for bar in bars[:self.warm_bars]:
                self.journal.runs.record_bar(bar)
        self.journal.commit()
        self.feed = LiveFeed({k: v[self.warm_bars:] for k, v in streams.items()})
        self.broker = TimedPaperBroker(contract_size=self.settings.paper.contract_size,
                                       initial_balance=self.settings.paper.initial_balance)
        self.executor = build_executor(self.settings, self.journal, self.feed, list(streams),
                                       self.broker, mode="live")

    @property
    def ensemble(self) -> Ensemble:
        ensemble = self.executor.c.ensemble
        assert isinstance(ensemble, Ensemble)
        return ensemble

    def breakers(self) -> dict[str, str]:
        return {name: state for name, _cls, state in self.ensemble.health().providers}

    def trips(self) -> dict[str, int]:
        return {m.name: m.breaker.status().trips for m in self.ensemble.members}

    def warm_sdks(self) -> None:
        """One decision straight through the ensemble before the first cycle, so the SDKs'
        lazy first-request work is not billed to a measured decision."""
        stream = self.executor.streams[0]
        snapshot: MarketSnapshot = self.executor.cycle.snapshots[stream]
        close = snapshot.bar.close
        atr = snapshot.atr or 0.001
        proposal = a_proposal(strategy="warm_up", symbol=stream[0], timeframe=stream[1],
                              bar_time=snapshot.bar.time, direction=Direction.LONG, entry=close,
                              stop=close - atr, target=close + 2 * atr, reason="SDK warm-up")
        self.ensemble.evaluate(proposal, snapshot)

    def run_cycle(self, phase: str, before: Callable[[], None] | None = None) -> CycleRecord:
        """The next bar closes on every stream; one scheduler tick handles them all."""
        index = len(self.cycles)
        if index >= self.max_cycles:
            raise RuntimeError(f"only {self.max_cycles} bars per stream were generated")
        if before is not None:
            before()
        self.feed.release(1)
        force_live_polls(self.executor)
        timed: list[tuple[float, Decision]] = []
        ensemble = self.ensemble
        evaluate = ensemble.evaluate

        def timed_evaluate(proposal: Proposal, snapshot: MarketSnapshot) -> Decision:
            t = time.perf_counter()
            decision = evaluate(proposal, snapshot)
            timed.append((time.perf_counter() - t, decision))
            return decision

        ensemble.evaluate = timed_evaluate  # type: ignore[method-assign]
        breakers_before = self.breakers()
        now = START + (self.warm_bars + index + 1) * STEP + timedelta(
            seconds=self.settings.scheduler.settle_delay_seconds)
        try:
            t0 = time.perf_counter()
            handled = self.executor.run_cycle(now)
            seconds = time.perf_counter() - t0
        finally:
            del ensemble.evaluate  # back to the class's method
        record = CycleRecord(phase, seconds, handled, timed, breakers_before, self.breakers(),
                             self.trips())
        self.cycles.append(record)
        return record

