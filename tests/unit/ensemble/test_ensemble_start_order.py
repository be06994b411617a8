"""Pooled calls start slowest first, when every one of them gets a worker at once.

Each SDK call spends ~0.5 ms of CPU under the GIL before its request is on the wire, so
the calls of a stage go out one after the other; the slowest one going out last adds the
others' CPU to the decision. Members keep a moving average of their own latency per stage
and the ensemble submits the slowest expected first. When some calls would have to queue
(fewer free workers than calls), configuration order stays, so a slow provider never takes
the only free worker ahead of the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from support.builders import a_signal
from support.ensemble_scene import BLOCK_RETEST_TAGS, SNAP, retest_proposal

from domain import Direction, MarketSnapshot, Proposal, Signal
from domain.errors import ProviderCallError
from ensemble.base import Completion, RenderedPrompt
from ensemble.breaker import CircuitBreaker
from ensemble.config import BreakerConfig, EnsembleConfig, ProviderConfig, RouteRule
from ensemble.factory import build_ensemble
from ensemble.members import LATENCY_WEIGHT, LocalVoter, Member, ModelMember, start_order
from ensemble.pool import DaemonThreadPool

ROOT = Path(__file__).resolve().parents[3]
PROP = retest_proposal(tags=BLOCK_RETEST_TAGS)
ANSWER = ('{"symbol": "EURUSD", "direction": "long", "confidence": 0.7, "entry": 1.0852, '
          '"stop": 1.0838, "target": 1.0880, "tags": ["order_block_bullish"], '
          '"rationale": "retest"}')


class Client:
    kind = "openai"

    def __init__(self, model: str, fail: bool = False) -> None:
        self.model = model
        self.fail = fail

    def complete(self, prompt: RenderedPrompt, schema: Mapping[str, Any] | None,
                 schema_name: str, timeout_s: float) -> Completion:
        if self.fail:
            raise ProviderCallError("HTTP 500: boom", error_class="InternalServerError",
                                    status=500)
        return Completion(ANSWER, 900, 60)


class Voter:
    name = "local"

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Signal:
        return a_signal(provider=self.name, direction=Direction.LONG, confidence=0.5)


class Pool:
    """Stands in for the pool: only ``free_workers`` is asked."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.asked = 0

    def free_workers(self) -> int:
        self.asked += 1
        return self.free


def pool_of(free: int) -> tuple[Pool, Callable[[], Any]]:
    pool = Pool(free)
    return pool, lambda: pool


def model(name: str) -> ModelMember:
    return ModelMember(name=name, kind="openai", provider_class="llm",
                       stages=frozenset({"research"}),
                       breaker=CircuitBreaker(name, BreakerConfig()), inline=False,
                       model=name, client=Client(name))


def names(members: list[Member]) -> list[str]:
    return [m.name for m in members]


# --------------------------------------------------------------------------- the estimate


def test_latency_estimate_is_a_moving_average_per_stage() -> None:
    m = model("a")
    assert m.expected_latency_ms("research") == 0.0  # never measured
    m.note_latency("research", 100.0)
    assert m.expected_latency_ms("research") == 100.0  # the first call sets it
    m.note_latency("research", 200.0)
    assert m.expected_latency_ms("research") == pytest.approx(100 + LATENCY_WEIGHT * 100)
    assert m.expected_latency_ms("risk") == 0.0  # stages apart


def test_a_call_feeds_its_measured_latency_to_the_estimate() -> None:
    """Answered and failed calls alike: the estimate is the latency the call reports."""
    from ensemble.ensemble import decision_key
    from ensemble.members import StageRequest
    from ensemble.prompts import PromptLibrary

    template = PromptLibrary.load(ROOT / "config" / "prompts").get("research")
    request = StageRequest("research", decision_key(PROP), PROP, SNAP,
                           time.perf_counter() + 5.0, None, "{}")
    for fail in (False, True):
        m = ModelMember(name="a", kind="openai", provider_class="llm",
                        stages=frozenset({"research"}),
                        breaker=CircuitBreaker("a", BreakerConfig()), inline=False,
                        model="a", client=Client("a", fail=fail),
                        templates={"research": template})
        result = m.call(request)
        assert (result.call.abstained, result.call.error_class) == (
            (True, "InternalServerError") if fail else (False, None))
        assert m.expected_latency_ms("research") == result.call.latency_ms > 0


# --------------------------------------------------------------------------- the order


LATENCIES = {"a": 10.0, "b": 300.0, "c": 40.0}


def measured() -> list[Member]:
    """Three members in configuration order a, b, c; b is the slowest, then c."""
    members: list[Member] = [model(n) for n in LATENCIES]
    for m in members:
        m.note_latency("research", LATENCIES[m.name])
    return members


def test_slowest_expected_first_when_every_call_gets_a_worker() -> None:
    a, b, c = measured()
    pool, get = pool_of(3)
    assert names(start_order([a, b, c], "research", get)) == ["b", "c", "a"]
    assert pool.asked == 1
    # Another stage has no measurements: configuration order.
    assert names(start_order([a, b, c], "risk", get)) == ["a", "b", "c"]


def test_configuration_order_when_some_calls_would_queue() -> None:
    a, b, c = measured()
    _, get = pool_of(2)
    assert names(start_order([a, b, c], "research", get)) == ["a", "b", "c"]


def test_ties_and_unmeasured_members_keep_configuration_order() -> None:
    a, b, c, d = model("a"), model("b"), model("c"), model("d")
    b.note_latency("research", 50.0)
    d.note_latency("research", 50.0)
    _, get = pool_of(8)
    assert names(start_order([a, b, c, d], "research", get)) == ["b", "d", "a", "c"]


def test_inline_members_are_not_pooled_and_a_lone_call_needs_no_pool() -> None:
    local = LocalVoter(name="local", kind="structure", provider_class="deterministic",
                       stages=frozenset({"research"}),
                       breaker=CircuitBreaker("local", BreakerConfig()), provider=Voter())
    a = model("a")

    def no_pool() -> Any:
        raise AssertionError("the pool is not needed to order one call")

    assert names(start_order([local, a], "research", no_pool)) == ["a"]
    assert start_order([local], "research", no_pool) == []


# --------------------------------------------------------------------------- the pool


@pytest.fixture
def pool() -> Iterator[DaemonThreadPool]:
    p = DaemonThreadPool(3, thread_name_prefix="test-order")
    yield p
    p.shutdown(wait=False, cancel_futures=True)


def _until(condition: Callable[[], bool]) -> bool:
    """Poll (a worker's bookkeeping follows its result by microseconds); generous bound."""
    end = time.monotonic() + 30.0
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.001)
    return True


def test_free_workers_counts_calls_queued_or_running(pool: DaemonThreadPool) -> None:
    release = threading.Event()
    assert pool.free_workers() == 3
    running = [pool.submit(release.wait, 30.0) for _ in range(2)]
    assert pool.free_workers() == 1
    queued = [pool.submit(release.wait, 30.0) for _ in range(3)]  # one runs, two queue
    assert pool.free_workers() == 0  # never negative
    assert queued[-1].cancel()  # a cancelled queued call still frees its slot once dropped
    release.set()
    assert all(f.result(timeout=30) for f in running + queued[:2])
    assert _until(lambda: pool.free_workers() == 3)


# --------------------------------------------------------------------------- the ensemble


def _config(max_workers: int) -> EnsembleConfig:
    return EnsembleConfig(
        providers=tuple(ProviderConfig(name=n, kind="openai", model=n,
                                       base_url="http://127.0.0.1:9/v1")
                        for n in ("a", "b", "c")),
        routing=(RouteRule(request="research"),), deadline_ms=5000,
        max_workers=max_workers, prompts_dir=ROOT / "config" / "prompts")


@pytest.mark.parametrize(("max_workers", "expected"), [
    (8, ["b", "c", "a"]),  # every call starts at once: slowest expected first
    (2, ["a", "b", "c"]),  # one would queue: configuration order
])
def test_ensemble_submits_in_start_order(max_workers: int, expected: list[str]) -> None:
    with build_ensemble(_config(max_workers), secrets={}, params_hash="p",
                        client_factory=lambda pc, _k: Client(pc.model)) as ens:
        for m in ens.members:
            m.note_latency("research", LATENCIES[m.name])
        pool = ens._executor()
        submitted: list[str] = []
        submit = pool.submit

        def spy(fn: Any, /, *args: Any) -> Any:
            submitted.append(fn.__self__.name)
            return submit(fn, *args)

        pool.submit = spy  # type: ignore[method-assign]
        d = ens.evaluate(PROP, SNAP)
    assert submitted == expected
    assert [c.provider for c in d.calls] == ["a", "b", "c"]  # results in config order
    assert d.voters == 3 and d.direction is Direction.LONG
