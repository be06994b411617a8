"""Ensemble: route a proposal through the persona chain, under one deadline, to a Decision.

    research   fan out to the routed providers in parallel, validate, score -> consensus
    risk       (if configured and research has a direction) approve / resize / veto
    execution  (if configured and not vetoed) check the order against the snapshot

Fail closed: a provider that raises, times out, answers late or invalidly, or is behind
an open breaker becomes an abstention with its reason; nothing a provider does can crash
the cycle or turn into a vote by default; an error in the ensemble itself yields a flat
decision with the error recorded as a call. A configured review stage without a valid
answer vetoes. A veto makes the decision flat (no trade), keeping the votes and their
contributions for the journal.

Threads: blocking members (LLMs) run on one pool of daemon threads (``pool.py``) made once
per ensemble, so an abandoned call never holds the process at exit; pure local members run
inline in the calling thread (a pool hop would cost more than they do). The decision waits
for pooled answers at most until its deadline: whatever has not answered by then is a
``timeout`` in the decision, and if its answer comes later it is sent to telemetry as
``late`` and otherwise ignored.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from domain import Decision, Direction, MarketSnapshot, Proposal, Signal
from ensemble.base import Provider
from ensemble.breaker import BreakerTransition, CircuitBreaker
from ensemble.config import EnsembleConfig
from ensemble.members import LocalVoter, Member, MemberResult, StageRequest, late_call, start_order
from ensemble.personas import (
    PersonaStep,
    combine_execution,
    combine_risk,
    execution_input,
    research_input,
    risk_input,
)
from ensemble.pool import DaemonThreadPool
from ensemble.routing import EnsembleHealth, Route, Router
from ensemble.scoring import Score, score_signals
from ensemble.telemetry import FAILURE_OUTCOMES, CallOutcome, ProviderCall, TelemetrySink

log = logging.getLogger(__name__)


def decision_key(proposal: Proposal) -> str:
    """Joins a decision's calls (including late ones) to its proposal and outcome."""
    return (f"{proposal.strategy}:{proposal.symbol}:{proposal.timeframe}:"
            f"{proposal.bar_time.isoformat()}")


# A symbol may hold colons (ccxt's "BTC/USDT:USDT"); strategy names and timeframes do not,
# and the bar time is an ISO timestamp at the end.
_KEY = re.compile(r"(?P<strategy>[^:]*):(?P<symbol>.+):(?P<timeframe>[^:]+):"
                  r"(?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?"
                  r"(?:[+-]\d{2}:\d{2}|Z)?)")


def parse_decision_key(key: str) -> tuple[str, str, str, datetime] | None:
    """``(strategy, symbol, timeframe, bar_time)`` of a ``decision_key``; None if it is not
    one (e.g. a hand-made key in a test)."""
    m = _KEY.fullmatch(key)
    if m is None:
        return None
    try:
        bar_time = datetime.fromisoformat(m["time"])
    except ValueError:
        return None
    if bar_time.tzinfo is None:
        bar_time = bar_time.replace(tzinfo=UTC)
    return m["strategy"], m["symbol"], m["timeframe"], bar_time


@dataclass(slots=True)
class _Chain:
    """One evaluation's inputs, and the calls and steps it has gathered so far."""

    proposal: Proposal
    snapshot: MarketSnapshot
    key: str
    deadline: float
    calls: list[ProviderCall] = field(default_factory=list)
    steps: list[PersonaStep] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EnsembleResult:
    """Everything behind one decision; ``decision`` is what the executor consumes."""

    decision: Decision
    score: Score
    steps: tuple[PersonaStep, ...]
    size_factor: float
    vetoed_by: str | None
    veto_reason: str | None
    health: EnsembleHealth | None  # None from ``evaluate`` (it skips the extra work)
    elapsed_ms: float

    @property
    def calls(self) -> tuple[ProviderCall, ...]:
        return tuple(self.decision.calls)


class Ensemble:
    """``Ensemble(providers, weights, params_hash)`` keeps working for local providers;
    ``build_ensemble(config, ...)`` (``ensemble.factory``) builds the full one."""

    def __init__(self, providers: Sequence[Provider] = (),
                 weights: Mapping[str, float] | None = None, params_hash: str = "", *,
                 members: Sequence[Member] = (), config: EnsembleConfig | None = None,
                 telemetry: TelemetrySink | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config if config is not None else EnsembleConfig(providers=())
        wrapped = [LocalVoter(
            name=p.name, kind=str(getattr(p, "kind", type(p).__name__)),
            provider_class="deterministic", stages=frozenset({"research"}),
            breaker=CircuitBreaker(p.name, self.config.effective_breaker, clock),
            inline=not bool(getattr(p, "blocking", False)), provider=p) for p in providers]
        all_members: list[Member] = [*wrapped, *members]
        names = [m.name for m in all_members]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique, got {names}")
        self.providers = tuple(providers)
        self.members = tuple(all_members)
        self.weights = dict(weights) if weights is not None else self.config.weights
        self.params_hash = params_hash
        self.telemetry = telemetry
        self.router = Router(self.config.routing, self.members)
        self.use_breakers = self.config.mode != "replay"
        self.deadline_s = self.config.deadline_ms / 1000.0
        self._review_stages = tuple(st for st in ("risk", "execution")
                                    if self.router.candidates(st))
        self.sink_errors = 0
        self._pool: DaemonThreadPool | None = None
        self._pool_lock = threading.Lock()
        self._replayed_late: list[ProviderCall] = []  # evaluating thread only

    # ------------------------------------------------------------------ public API

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Decision:
        return self.evaluate_detailed(proposal, snapshot, with_health=False).decision

    def evaluate_detailed(self, proposal: Proposal, snapshot: MarketSnapshot, *,
                          with_health: bool = True) -> EnsembleResult:
        started = time.perf_counter()
        key = decision_key(proposal)
        try:
            result = self._evaluate(proposal, snapshot, key, started, with_health)
        except Exception as exc:  # fail closed: a flat decision with a reason
            log.exception("ensemble_error decision=%s", key)
            call = ProviderCall(decision_key=key, stage="ensemble", provider="ensemble",
                                provider_class="ensemble", kind="ensemble", model="",
                                outcome=CallOutcome.ERROR, abstained=True,
                                reason=f"ensemble error: {exc.__class__.__name__}: {exc}",
                                error_class=exc.__class__.__name__)
            decision = Decision(proposal, Direction.FLAT, 0.0, 0, 0, (), (), self.params_hash,
                                calls=(call,))
            score = Score(Direction.FLAT, 0.0, 0, 0, (), None, (), "none")
            result = EnsembleResult(decision, score, (), 0.0, "ensemble", call.reason,
                                    self.health(), (time.perf_counter() - started) * 1e3)
        for call in result.decision.calls:
            self._emit(call)
        while self._replayed_late:  # after the decision, as the recorded run got them
            self._emit(self._replayed_late.pop(0))
        return result

    def health(self) -> EnsembleHealth:
        return self.router.health()

    def classes_down(self, required: Sequence[str] = ()) -> tuple[str, ...]:
        """Provider classes whose every member's breaker is open, and ``required`` classes
        with no member at all (for guardrails)."""
        return self.router.classes_down(required)

    def watch_breakers(self, listener: Callable[[BreakerTransition], None]) -> None:
        """Send every breaker transition to ``listener`` (which must only queue: it runs
        under the breaker's lock, on whichever thread made the transition), starting with
        each breaker's state now, so a journal reader knows the breakers were rebuilt."""
        for m in self.members:
            m.breaker.listener = listener
            m.breaker.announce("ensemble built")

    def close(self) -> None:
        """Stop the worker pool; calls in flight are abandoned (their answers never count,
        a late one still reaches telemetry) and, on daemon threads, never delay exit."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def __enter__(self) -> Ensemble:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the chain

    def _evaluate(self, proposal: Proposal, snapshot: MarketSnapshot, key: str,
                  started: float, with_health: bool) -> EnsembleResult:
        chain = _Chain(proposal, snapshot, key, started + self.deadline_s)
        results, signals, score = self._research(chain)
        size = 1.0
        vetoed_by: str | None = None
        veto_reason: str | None = None
        short = self._quorum_shortfall(results) if self.config.quorum else None
        if short is not None:
            vetoed_by, veto_reason = "quorum", short
            chain.calls.append(ProviderCall(
                decision_key=key, stage="research", provider="ensemble",
                provider_class="ensemble", kind="quorum", model="",
                outcome=CallOutcome.INVALID, abstained=True, reason=short))
            chain.steps.append(PersonaStep("quorum", None, (), "veto", 0.0, short))
        elif score.voted:
            size, vetoed_by, veto_reason = self._review(chain, score)

        direction, confidence, agreement = score.direction, score.confidence, score.agreement
        if vetoed_by is not None:
            direction, confidence, agreement, size = Direction.FLAT, 0.0, 0, 0.0
        decision = Decision(proposal, direction, confidence, agreement, score.voters, signals,
                            score.contributions, self.params_hash, calls=tuple(chain.calls),
                            size_factor=size if score.voted else 0.0,
                            veto_reason=_veto_reason(vetoed_by, veto_reason))
        return EnsembleResult(decision, score, tuple(chain.steps),
                              size if score.voted else 0.0, vetoed_by, veto_reason,
                              self.health() if with_health else None,
                              (time.perf_counter() - started) * 1e3)

    def _research(self, chain: _Chain) -> tuple[list[MemberResult], tuple[Signal, ...], Score]:
        """The research stage: every routed member's signal, scored into a direction."""
        route = self.router.route("research", use_breakers=self.use_breakers)
        payload = payload_json = None
        if any(m.needs_payload for m in route.selected):
            payload = research_input(chain.proposal, chain.snapshot)
            payload_json = payload.model_dump_json(indent=2)
        request = StageRequest("research", chain.key, chain.proposal, chain.snapshot,
                               chain.deadline, payload, payload_json)
        results = self._run_stage(route, request)
        chain.calls.extend(r.call for r in results)
        signals: tuple[Signal, ...] = tuple(r.signal for r in results if r.signal is not None)
        score = score_signals(signals, self.weights, chain.snapshot, self.config.scoring)
        chain.steps.append(PersonaStep(
            "research", payload_json, _answers(results),
            "vote" if score.voted else "none", 1.0,
            f"{score.direction.value} {score.confidence:.3f} "
            f"({score.agreement}/{score.voters} agree)"))
        return results, signals, score

    def _review(self, chain: _Chain, score: Score) -> tuple[float, str | None, str | None]:
        """The review stages in order, each able to shrink the size or veto (which ends
        the chain): (size, vetoed by, veto reason)."""
        size = 1.0
        for stage in self._review_stages:
            verdict, factor, reason = self._review_stage(chain, stage, score, size)
            if verdict == "veto":
                return size, stage, reason
            size = min(size, factor)
        return size, None, None

    def _review_stage(self, chain: _Chain, stage: str, score: Score,
                      size: float) -> tuple[str, float, str]:
        route = self.router.route(stage, use_breakers=self.use_breakers)
        proposal, snapshot = chain.proposal, chain.snapshot
        stage_payload = (
            risk_input(proposal, snapshot, score.direction, score.confidence,
                       score.agreement, score.voters) if stage == "risk"
            else execution_input(proposal, snapshot, size))
        stage_json = stage_payload.model_dump_json(indent=2)
        request = StageRequest(stage, chain.key, proposal, snapshot, chain.deadline,
                               stage_payload, stage_json)
        results = self._run_stage(route, request)
        chain.calls.extend(r.call for r in results)
        outputs = [(r.call.provider, r.output) for r in results if r.output is not None]
        if not route.selected:
            verdict, factor = "veto", 0.0
            reason = f"all {stage} providers unavailable (breaker open)"
        elif stage == "risk":
            verdict, factor, reason = combine_risk(outputs)
        else:
            verdict, reason = combine_execution(outputs)
            factor = size if verdict != "veto" else 0.0
        chain.steps.append(PersonaStep(stage, stage_json, _answers(results), verdict,
                                       factor, reason))
        return verdict, factor, reason

    def _quorum_shortfall(self, results: Sequence[MemberResult]) -> str | None:
        """Why the research answers fall short of ``config.quorum``, or None if they
        meet it. A valid answer is a call that answered (``ok``) without abstaining."""
        classes = {m.name: m.provider_class for m in self.members}
        valid: dict[str, int] = {}
        for r in results:
            if r.call.outcome is CallOutcome.OK and not r.call.abstained:
                cls = classes.get(r.call.provider, r.call.provider_class)
                valid[cls] = valid.get(cls, 0) + 1
        short = [f"{valid.get(cls, 0)} valid {cls} answer(s), at least {need} required"
                 for cls, need in sorted(self.config.quorum.items())
                 if valid.get(cls, 0) < need]
        return "quorum not met: " + "; ".join(short) if short else None

    # ------------------------------------------------------------------ fan-out

    def _executor(self) -> DaemonThreadPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = DaemonThreadPool(self.config.max_workers,
                                              thread_name_prefix="dta-ensemble")
            return self._pool

    def _run_stage(self, route: Route, request: StageRequest) -> list[MemberResult]:
        stage_started = time.perf_counter()
        results: dict[str, MemberResult] = {}
        pooled: list[tuple[Member, Future[MemberResult]]] = []
        for m in start_order(route.selected, request.stage, self._executor):
            pooled.append((m, self._executor().submit(m.call, request)))
        for m in route.selected:
            if m.inline:
                results[m.name] = m.call(request)
        not_sent: set[str] = set()
        if pooled:
            wait([f for _, f in pooled],
                 timeout=max(0.0, request.deadline - time.perf_counter()))
            for m, f in pooled:
                if f.done():
                    results[m.name] = _result_of(m, f, request)
                else:
                    elapsed = (time.perf_counter() - stage_started) * 1e3
                    reason = f"timeout: no answer within the {self.config.deadline_ms} ms deadline"
                    if f.cancel():  # still queued behind busy workers: never sent at all
                        reason += " (not started: every worker busy)"
                        not_sent.add(m.name)
                    else:
                        # Its worker is free for the next decision; the call itself ends
                        # at its budget (deadline + late grace) and may still be late.
                        self._executor().abandon(f)
                        f.add_done_callback(partial(self._late, m, request))
                    results[m.name] = m.abstain(request, CallOutcome.TIMEOUT, reason, elapsed)
        if self.use_breakers:
            for m in route.selected:
                if m.name in not_sent:  # no call was made: nothing to hold against it
                    m.breaker.release()
                    continue
                call = results[m.name].call
                m.breaker.record(call.outcome not in FAILURE_OUTCOMES, call.latency_ms)
        for m in route.skipped:
            results[m.name] = m.abstain(request, CallOutcome.BREAKER_OPEN, "breaker open")
        self._replayed_late.extend(r.late for r in results.values() if r.late is not None)
        return [results[m.name] for m in route.ordered()]

    def _late(self, member: Member, request: StageRequest,
              future: Future[MemberResult]) -> None:
        if future.cancelled():
            return
        call = late_call(_result_of(member, future, request))
        if call is not None:
            self._emit(call)

    def _emit(self, call: ProviderCall) -> None:
        if self.telemetry is None:
            return
        try:
            self.telemetry.record_call(call)
        except Exception:  # telemetry never fails a decision
            self.sink_errors += 1
            log.exception("telemetry_sink_error provider=%s", call.provider)


def _result_of(member: Member, future: Future[MemberResult],
               request: StageRequest) -> MemberResult:
    try:
        return future.result(timeout=0)
    except Exception as exc:  # cancelled at shutdown, or a bug
        return member.abstain(request, CallOutcome.ERROR,
                              f"error: {exc.__class__.__name__}: {exc}")


def _answers(results: Sequence[MemberResult]) -> tuple[tuple[str, str, str | None], ...]:
    return tuple((r.call.provider, r.call.outcome.value, r.call.output_json) for r in results)


def _veto_reason(vetoed_by: str | None, reason: str | None) -> str | None:
    """The ensemble's own veto as the verdict shows it: who vetoed, and why."""
    if vetoed_by is None:
        return None
    text = reason or "no reason given"
    return text if text.startswith(vetoed_by) else f"{vetoed_by}: {text}"
