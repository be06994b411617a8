"""An abandoned LLM call never holds the daemon: not its decision, not its exit.

With SDK retries on (``max_retries`` up to 3), both SDKs sleep out a 429's ``Retry-After``
inside ``create`` (the anthropic SDK whatever it says, the openai SDK up to two minutes),
on an ensemble pool thread. Two things keep that from mattering:

- each call's budget (deadline + late grace) bounds the SDK's retries: a retry that could
  not start before the budget runs out is not made, the 429 is reported at once;
- the pool's workers are daemon threads: a call still in flight when the process exits
  (here: a Retry-After that fits a long late grace) is abandoned, not waited for.

The subprocess tests build the ensemble, make one decision and exit, against fakes
answering ``429`` with ``Retry-After: 8`` and ``max_retries=1``, and time the exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import pytest
from fakes.llm_servers import Fail, FakeAnthropicServer, FakeOpenAIServer, Hang, stage_responder

from ensemble.call_budget import budget, hooks, retry_wait
from ensemble.pool import DaemonThreadPool

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-shutdown-test-0123456789"
RETRY_AFTER = "8"
# Interpreter teardown after importing both SDKs takes ~1 s on the loaded 2-core test
# machine with nothing in flight; a worker joined at exit would add the rest of the 8 s.
EXIT_BOUND_S = 3.0

# --------------------------------------------------------------------------- the pool


def test_daemon_pool_runs_cancels_and_never_blocks_exit() -> None:
    pool = DaemonThreadPool(2, thread_name_prefix="t")
    release = threading.Event()
    names: list[str] = []

    def block() -> str:
        names.append(threading.current_thread().name)
        release.wait(5)
        return "done"

    def boom() -> None:
        raise ValueError("bad")

    running = [pool.submit(block), pool.submit(block)]
    queued = pool.submit(block)  # both workers busy: waits in the queue
    time.sleep(0.05)
    assert len(pool._threads) == 2 and all(t.daemon for t in pool._threads)
    assert queued.cancel() and queued.cancelled()
    release.set()
    assert [f.result(timeout=2) for f in running] == ["done", "done"]
    failed = pool.submit(boom)
    assert isinstance(failed.exception(timeout=2), ValueError)
    assert len(pool._threads) == 2  # idle workers are reused
    release.clear()
    in_flight = [pool.submit(block), pool.submit(block)]  # both workers busy
    never = pool.submit(block)
    time.sleep(0.05)
    pool.shutdown(wait=False, cancel_futures=True)  # returns at once: nothing joined
    assert never.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(block)
    release.set()
    assert [f.result(timeout=2) for f in in_flight] == ["done", "done"]
    wait([*running, *in_flight], timeout=2)
    assert set(names) <= {"t_0", "t_1"}


# --------------------------------------------------------------------------- the budget


class _Headers(dict[str, str]):
    pass


class _Request:
    def __init__(self, retries: int = 0) -> None:
        self.headers = _Headers({"x-stainless-retry-count": str(retries)})
        self.extensions: dict[str, Any] = {"timeout": {"connect": 30.0, "read": 30.0,
                                                       "write": 30.0, "pool": None}}


class _Response:
    def __init__(self, status: int, headers: dict[str, str], retries: int = 0) -> None:
        self.status_code = status
        self.headers = _Headers(headers)
        self.request = _Request(retries)


def test_retry_wait_reads_the_headers_the_sdks_read() -> None:
    assert retry_wait({"retry-after": "8"}, 0) == 8.0
    assert retry_wait({"retry-after-ms": "250", "retry-after": "8"}, 0) == 0.25
    assert retry_wait({}, 0) == 0.5 and retry_wait({}, 2) == 2.0 and retry_wait({}, 9) == 8.0
    assert retry_wait({"retry-after": "0"}, 1) == 1.0  # not positive: the backoff
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < retry_wait({"retry-after": date}, 0) <= 31


def test_budget_hooks_refuse_retries_that_cannot_finish_in_time() -> None:
    spent = []
    h = hooks(lambda request: spent.append(request) or TimeoutError("spent"))
    on_request, on_response = h["request"][0], h["response"][0]
    outside = _Response(429, {"retry-after": "8"})
    on_response(outside)  # no budget on this thread: the SDK decides, as always
    assert "x-should-retry" not in outside.headers
    with budget(2.0):
        too_long = _Response(429, {"retry-after": "8"})
        on_response(too_long)
        assert too_long.headers["x-should-retry"] == "false"
        fits = _Response(429, {"retry-after": "0.5"})
        on_response(fits)
        assert "x-should-retry" not in fits.headers
        ok = _Response(200, {"retry-after": "8"})
        on_response(ok)
        assert "x-should-retry" not in ok.headers
        request = _Request()
        on_request(request)  # every phase clamped to what is left of the 2 s
        assert all(0 < v <= 2.0 for v in request.extensions["timeout"].values())
    with budget(0.0), pytest.raises(TimeoutError):
        on_request(_Request(1))  # a retry after the budget ran out is never sent
    assert len(spent) == 1


# --------------------------------------------------------------------------- end to end

CHILD = r"""
import json, sys, time
from datetime import UTC, datetime
from pydantic import SecretStr
from ensemble.config import EnsembleConfig
from ensemble.factory import build_ensemble
from domain import Bar, Direction, MarketSnapshot, Proposal, Trend

cfg = EnsembleConfig.model_validate(json.loads(sys.argv[1]))
key = SecretStr(sys.argv[2])
ens = build_ensemble(cfg, secrets={"openai_api_key": key, "anthropic_api_key": key},
                     params_hash="p")
t = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
bar = Bar(symbol="EURUSD", timeframe="M15", time=t, open=1.0850, high=1.0856, low=1.0846,
          close=1.0852, volume=100, spread=0.00002)
snapshot = MarketSnapshot(symbol="EURUSD", timeframe="M15", index=500, bar=bar, bars=(bar,),
                          atr=0.0010, trend=Trend.BULLISH)
proposal = Proposal(strategy="smc_ob_retest", symbol="EURUSD", timeframe="M15", bar_time=t,
                    direction=Direction.LONG, entry=1.0852, stop=1.0838, target=1.0880,
                    reason="bullish choch retest", tags=("choch_bullish", "order_block_bullish"))
started = time.perf_counter()
decision = ens.evaluate(proposal, snapshot)
elapsed = time.perf_counter() - started
ens.close()
print(json.dumps({"elapsed_s": elapsed, "calls": {
    c.provider: [c.outcome.value, c.error_class, c.reason] for c in decision.calls}}),
    flush=True)
"""


@pytest.fixture
def rate_limited() -> Iterator[tuple[FakeOpenAIServer, FakeAnthropicServer]]:
    """Both APIs answer the first request 429 with ``Retry-After: 8``; a retry would get a
    good answer (so a retry that happened would show)."""
    oa = FakeOpenAIServer(stage_responder(), api_key=KEY).start()
    an = FakeAnthropicServer(stage_responder(), api_key=KEY).start()
    for server in (oa, an):
        server.push(Fail(429, retry_after=RETRY_AFTER))
    try:
        yield oa, an
    finally:
        oa.close()
        an.close()


def _config(oa: FakeOpenAIServer, an: FakeAnthropicServer, *, deadline_ms: int,
            late_grace_ms: int) -> dict[str, Any]:
    return {
        "deadline_ms": deadline_ms, "late_grace_ms": late_grace_ms,
        "prompts_dir": str(ROOT / "config" / "prompts"),
        "providers": [
            {"name": "structure", "kind": "structure"},
            {"name": "gpt", "kind": "openai", "model": "gpt-x", "base_url": oa.base_url,
             "timeout_s": 30, "max_retries": 1},
            {"name": "claude", "kind": "anthropic", "model": "claude-x",
             "base_url": an.base_url, "timeout_s": 30, "max_retries": 1}]}


def _run_child(config: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run one decision in a fresh interpreter; its result, and how long the process took
    to exit after printing it (the shutdown delay)."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(config), KEY],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        printed = time.monotonic()
        proc.wait(timeout=30)
        exited = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert line, proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return json.loads(line), exited - printed


@pytest.mark.slow
def test_retry_after_past_the_budget_is_not_waited_for(
        rate_limited: tuple[FakeOpenAIServer, FakeAnthropicServer]) -> None:
    oa, an = rate_limited
    result, exit_delay = _run_child(_config(oa, an, deadline_ms=1000, late_grace_ms=1000))
    # Retry-After 8 s > deadline + grace: the SDKs do not retry, the 429s come back at once.
    assert result["elapsed_s"] < 1.0, result
    assert result["calls"]["gpt"][:2] == ["error", "RateLimitError"], result
    assert result["calls"]["claude"][:2] == ["error", "RateLimitError"], result
    assert exit_delay < EXIT_BOUND_S, exit_delay
    assert [len(oa.requests), len(an.requests)] == [1, 1]  # no retry went out


@pytest.mark.slow
def test_a_call_sleeping_out_retry_after_never_delays_exit(
        rate_limited: tuple[FakeOpenAIServer, FakeAnthropicServer]) -> None:
    oa, an = rate_limited
    # A late grace long enough for the 8 s Retry-After: both SDKs sleep it out in a worker,
    # and the decision stops waiting at its deadline.
    result, exit_delay = _run_child(_config(oa, an, deadline_ms=500, late_grace_ms=20_000))
    assert result["elapsed_s"] < 0.5 + 0.25, result
    for name in ("gpt", "claude"):
        outcome, _error_class, reason = result["calls"][name]
        assert outcome == "timeout" and "deadline" in reason, result  # still in flight
    # The process exits at once, abandoning both sleeping calls, well before the 8 s.
    assert exit_delay < EXIT_BOUND_S, exit_delay
    time.sleep(0.2)
    assert [len(oa.requests), len(an.requests)] == [1, 1]  # the retries died with it


@pytest.mark.slow
def test_a_hung_request_never_delays_exit() -> None:
    with FakeOpenAIServer(stage_responder(), api_key=KEY) as oa, \
            FakeAnthropicServer(stage_responder(), api_key=KEY) as an:
        oa.push(Hang(30))
        an.push(Hang(30))
        result, exit_delay = _run_child(_config(oa, an, deadline_ms=300,
                                                late_grace_ms=20_000))  # type: ignore[arg-type]
    assert all(result["calls"][n][0] == "timeout" for n in ("gpt", "claude")), result
    assert exit_delay < EXIT_BOUND_S, exit_delay
