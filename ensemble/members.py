"""Members: one configured provider as the ensemble sees it.

A member owns its circuit breaker, knows which stages and class it serves, and turns one
request into one ``MemberResult``: the ``ProviderCall`` record plus, when the answer is
valid, a ``Signal`` (research) or a persona output (risk, execution). ``call`` never
raises: every failure is an abstention with its reason, so a provider can never crash the
cycle or slip in a default vote.

Three kinds: ``LocalVoter`` (the deterministic ``Provider``s, research only),
``LocalPersona`` (deterministic risk / execution reviewers) and ``ModelMember`` (an LLM
behind a ``ModelClient``: prompt rendering, record/replay, validation, cost).

A member also keeps a running estimate of its own call latency per stage, so the ensemble
can start its pooled calls slowest first (``start_order``): each SDK call holds the GIL
while it builds and sends its request, so the calls go out one after the other, and the
slowest one going out last would add the others' CPU to the decision.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel

from domain import Direction, MarketSnapshot, Proposal, Signal
from domain.errors import ProviderCallError
from domain.glossary import TAG_VALUES, TERMS
from ensemble.base import ModelClient, PersonaProvider, Provider, RenderedPrompt
from ensemble.breaker import CircuitBreaker
from ensemble.config import ValidationConfig
from ensemble.pool import DaemonThreadPool
from ensemble.prompts import PromptTemplate
from ensemble.recording import Recording, RecordingStore, request_key
from ensemble.schemas import OUTPUT_MODELS, OUTPUT_SCHEMAS, SCHEMA_NAMES, ResearchOutput
from ensemble.telemetry import CallOutcome, ProviderCall, call_cost
from ensemble.validation import validate_answer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StageRequest:
    stage: str
    decision_key: str
    proposal: Proposal
    snapshot: MarketSnapshot
    deadline: float  # time.perf_counter() value the decision must not wait past
    payload: BaseModel | None = None  # the persona input model
    payload_json: str | None = None  # its canonical JSON, as embedded in prompts


@dataclass(frozen=True, slots=True)
class MemberResult:
    call: ProviderCall
    signal: Signal | None = None
    output: BaseModel | None = None
    # Replay of an answer recorded as late: the ``late`` record the recorded run's
    # telemetry got after the decision (the ensemble emits it likewise).
    late: ProviderCall | None = None


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1e3


# Weight of the newest call in a member's latency estimate (an exponential moving average:
# follows a provider that became slower within a few calls, ignores a single outlier).
LATENCY_WEIGHT = 0.2


@dataclass
class _MemberBase:
    name: str
    kind: str
    provider_class: str
    stages: frozenset[str]
    breaker: CircuitBreaker
    inline: bool = True  # run in the evaluating thread (pure, fast) vs in the pool
    model: str = "local"
    needs_payload: bool = False
    template_refs: dict[str, str] = field(default_factory=dict)
    # stage -> moving average of this member's call latency (ms). Written by whichever
    # thread ran the call (single dict stores, atomic under the GIL); an ordering hint only.
    latency_estimate_ms: dict[str, float] = field(default_factory=dict)

    def expected_latency_ms(self, stage: str) -> float:
        """The latency this member's next call at ``stage`` is expected to take; 0 until
        one was measured."""
        return self.latency_estimate_ms.get(stage, 0.0)

    def note_latency(self, stage: str, latency_ms: float) -> None:
        previous = self.latency_estimate_ms.get(stage)
        self.latency_estimate_ms[stage] = (
            latency_ms if previous is None
            else previous + LATENCY_WEIGHT * (latency_ms - previous))

    def _call(self, request: StageRequest, outcome: CallOutcome, **kw: Any) -> ProviderCall:
        return ProviderCall(decision_key=request.decision_key, stage=request.stage,
                            provider=self.name, provider_class=self.provider_class,
                            kind=self.kind, model=self.model, outcome=outcome, **kw)

    def abstain(self, request: StageRequest, outcome: CallOutcome, reason: str,
                latency_ms: float = 0.0) -> MemberResult:
        """A result for a call that was not made (breaker open) or not answered in time."""
        call = self._call(request, outcome, abstained=True, reason=reason,
                          latency_ms=latency_ms, input_json=request.payload_json)
        return MemberResult(call, self._abstain_signal(request, reason, latency_ms))

    def _abstain_signal(self, request: StageRequest, reason: str,
                        latency_ms: float) -> Signal | None:
        if request.stage != "research":
            return None
        return Signal(self.name, Direction.FLAT, 0.0, abstain_reason=reason,
                      latency_ms=latency_ms)


# --------------------------------------------------------------------------- local voters


@dataclass
class LocalVoter(_MemberBase):
    provider: Provider | None = None

    def call(self, request: StageRequest) -> MemberResult:
        assert self.provider is not None
        started = time.perf_counter()
        try:
            signal = self.provider.evaluate(request.proposal, request.snapshot)
        except Exception as exc:  # any provider failure is an abstention
            reason = f"error: {exc.__class__.__name__}: {exc}"
            latency = _ms(started)
            self.note_latency(request.stage, latency)
            call = self._call(request, CallOutcome.ERROR, abstained=True, reason=reason,
                              error_class=exc.__class__.__name__, latency_ms=latency)
            return MemberResult(call, self._abstain_signal(request, reason, latency))
        latency = _ms(started)
        self.note_latency(request.stage, latency)
        if (not isinstance(signal, Signal) or signal.provider != self.name
                or not isinstance(signal.direction, Direction)
                or not 0.0 <= signal.confidence <= 1.0):
            reason = ("invalid signal: confidence outside [0, 1] or wrong provider name")
            call = self._call(request, CallOutcome.INVALID, abstained=True, reason=reason,
                              latency_ms=latency, raw_text=repr(signal)[:2000])
            return MemberResult(call, self._abstain_signal(request, reason, latency))
        signal = Signal(signal.provider, signal.direction, signal.confidence,
                        signal.rationale, signal.tags, signal.abstain_reason, latency)
        # The signal itself rides on ``Decision.signals``: no JSON copy on the hot path.
        call = self._call(request, CallOutcome.OK, abstained=signal.abstained,
                          reason=signal.abstain_reason, latency_ms=latency)
        return MemberResult(call, signal)


# --------------------------------------------------------------------------- local personas


@dataclass
class LocalPersona(_MemberBase):
    provider: PersonaProvider | None = None

    def call(self, request: StageRequest) -> MemberResult:
        assert self.provider is not None
        started = time.perf_counter()
        try:
            out = self.provider.answer(request.payload)
        except Exception as exc:  # a failing reviewer abstains (fail closed)
            call = self._call(request, CallOutcome.ERROR, abstained=True,
                              reason=f"error: {exc.__class__.__name__}: {exc}",
                              error_class=exc.__class__.__name__, latency_ms=_ms(started),
                              input_json=request.payload_json)
            return MemberResult(call)
        latency = _ms(started)
        expected = OUTPUT_MODELS.get(request.stage)
        if expected is None or not isinstance(out, expected):
            call = self._call(request, CallOutcome.INVALID, abstained=True,
                              reason=f"invalid answer type {type(out).__name__} for "
                                     f"{request.stage}", latency_ms=latency,
                              input_json=request.payload_json)
            return MemberResult(call)
        call = self._call(request, CallOutcome.OK, latency_ms=latency,
                          input_json=request.payload_json, output_json=out.model_dump_json())
        return MemberResult(call, output=out)


# --------------------------------------------------------------------------- LLM members

_TAGS = ", ".join(sorted(TAG_VALUES))
_GLOSSARY = "\n".join(f"- {term}: {text}" for term, text in TERMS.items())
_SCHEMA_JSON = {stage: json.dumps(schema, indent=2) for stage, schema in OUTPUT_SCHEMAS.items()}


@dataclass
class ModelMember(_MemberBase):
    client: ModelClient | None = None  # None in replay mode: nothing goes out
    templates: Mapping[str, PromptTemplate] = field(default_factory=dict)
    mode: Literal["live", "record", "replay"] = "live"
    store: RecordingStore | None = None
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    timeout_s: float = 10.0
    late_grace_s: float = 1.0
    price_in_per_1k: float = 0.0
    price_out_per_1k: float = 0.0

    def __post_init__(self) -> None:
        self.needs_payload = True
        self.template_refs = {stage: t.ref for stage, t in self.templates.items()}

    def call(self, request: StageRequest) -> MemberResult:
        started = time.perf_counter()
        try:
            return self._call_model(request)
        except Exception as exc:  # never raise out of a member
            reason = f"error: {exc.__class__.__name__}: {exc}"[:500]
            latency = _ms(started)
            call = self._call(request, CallOutcome.ERROR, abstained=True, reason=reason,
                              error_class=exc.__class__.__name__, latency_ms=latency,
                              input_json=request.payload_json)
            return MemberResult(call, self._abstain_signal(request, reason, latency))

    def _call_model(self, request: StageRequest) -> MemberResult:
        template = self.templates.get(request.stage)
        if template is None:
            return self.abstain(request, CallOutcome.ERROR,
                                f"no prompt template for stage {request.stage!r}")
        prompt = template.render({
            "input_json": request.payload_json or "{}",
            "schema_json": _SCHEMA_JSON[request.stage],
            "tags": _TAGS,
            "glossary": _GLOSSARY,
            "symbol": request.proposal.symbol,
        })
        key = request_key(self.name, self.model, template.ref, template.sha256, prompt.text)
        ids: dict[str, Any] = {"template_id": template.id, "template_version": template.version,
                               "template_hash": template.short_hash, "request_key": key,
                               "input_json": request.payload_json}
        if self.mode == "replay":
            return self._replay(request, key, ids)
        return self._send(request, template, prompt, key, ids)

    def _replay(self, request: StageRequest, key: str, ids: dict[str, Any]) -> MemberResult:
        """What the recorded run got for the same request: its answer, its failure, or its
        timeout (with the late answer replayed as the live run made it)."""
        rec = self.store.get(key) if self.store is not None else None
        if rec is None:
            call = self._call(request, CallOutcome.NO_RECORDING, abstained=True,
                              reason="no recording", **ids)
            return MemberResult(call, self._abstain_signal(request, "no recording", 0.0))
        if rec.late:
            # The recorded decision stopped waiting: a timeout; an answer that came
            # later was also a ``late`` record, replayed as the live run made it.
            late = None
            if rec.outcome == "ok":
                late = late_call(self._answer(request, rec.raw_text, rec.tokens_in,
                                              rec.tokens_out, rec.truncated,
                                              rec.latency_ms, True, ids, rec.unusable))
            reason = "recorded answer arrived after its deadline"
            call = self._call(request, CallOutcome.TIMEOUT, abstained=True, reason=reason,
                              latency_ms=rec.latency_ms, replayed=True, **ids)
            return MemberResult(call, self._abstain_signal(request, reason,
                                                           rec.latency_ms), late=late)
        if rec.outcome != "ok":  # the recorded call failed: the same failure
            outcome = (CallOutcome.TIMEOUT if rec.outcome == "timeout"
                       else CallOutcome.ERROR)
            reason = rec.error or rec.outcome
            call = self._call(request, outcome, abstained=True, reason=reason,
                              error_class=rec.error_class, latency_ms=rec.latency_ms,
                              replayed=True, **ids)
            return MemberResult(call, self._abstain_signal(request, reason,
                                                           rec.latency_ms))
        return self._answer(request, rec.raw_text, rec.tokens_in, rec.tokens_out,
                            rec.truncated, rec.latency_ms, True, ids, rec.unusable)

    def _send(self, request: StageRequest, template: PromptTemplate, prompt: RenderedPrompt,
              key: str, ids: dict[str, Any]) -> MemberResult:
        """The call to the model, its answer or failure recorded in record mode."""
        assert self.client is not None
        sent = time.perf_counter()  # latency is the provider's: the request alone
        timeout = min(self.timeout_s, max(request.deadline - sent, 0.001)
                      + self.late_grace_s)
        try:
            completion = self.client.complete(
                prompt, OUTPUT_SCHEMAS[request.stage], SCHEMA_NAMES[request.stage],
                timeout)
        except ProviderCallError as exc:
            latency = _ms(sent)
            self.note_latency(request.stage, latency)
            outcome = CallOutcome.TIMEOUT if exc.timeout else CallOutcome.ERROR
            reason = f"{exc.error_class}: {exc}"[:500]
            if self.mode == "record" and self.store is not None:
                self._record(key, template, prompt.text, "", 0, 0, latency, False,
                             time.perf_counter() > request.deadline,
                             outcome=outcome.value, error_class=exc.error_class,
                             error=reason)
            call = self._call(request, outcome, abstained=True, reason=reason,
                              error_class=exc.error_class, latency_ms=latency, **ids)
            return MemberResult(call, self._abstain_signal(request, reason, latency))
        latency = _ms(sent)
        self.note_latency(request.stage, latency)
        if self.mode == "record" and self.store is not None:
            self._record(key, template, prompt.text, completion.text, completion.tokens_in,
                         completion.tokens_out, latency, completion.truncated,
                         time.perf_counter() > request.deadline,
                         unusable=completion.unusable)
        return self._answer(request, completion.text, completion.tokens_in,
                            completion.tokens_out, completion.truncated, latency, False, ids,
                            completion.unusable)

    def _answer(self, request: StageRequest, text: str, tokens_in: int, tokens_out: int,
                truncated: bool, latency: float, replayed: bool,
                ids: dict[str, Any], unusable: str | None = None) -> MemberResult:
        """Validate an answer (live, or replayed from a recording) into its result;
        ``unusable``: the API itself said the answer is no vote (a refusal, a filter)."""
        cost = call_cost(tokens_in, tokens_out, self.price_in_per_1k, self.price_out_per_1k)
        common: dict[str, Any] = {"latency_ms": latency, "tokens_in": tokens_in,
                                  "tokens_out": tokens_out, "cost": cost, "raw_text": text,
                                  "replayed": replayed, **ids}
        if truncated or unusable:
            reason = f"invalid: {unusable or 'truncated at the token limit'}"
            call = self._call(request, CallOutcome.INVALID, abstained=True, reason=reason,
                              **common)
            return MemberResult(call, self._abstain_signal(request, reason, latency))
        checked = validate_answer(request.stage, text, request.proposal, request.snapshot,
                                  price_band_atr=self.validation.price_band_atr,
                                  max_chars=self.validation.max_output_chars)
        if checked.output is None:
            reason = f"invalid: {checked.reason}"
            call = self._call(request, CallOutcome.INVALID, abstained=True, reason=reason,
                              **common)
            return MemberResult(call, self._abstain_signal(request, reason, latency))
        out = checked.output
        call = self._call(request, CallOutcome.OK, output_json=out.model_dump_json(), **common)
        signal = None
        if isinstance(out, ResearchOutput):
            signal = Signal(self.name, Direction(out.direction), out.confidence,
                            out.rationale, out.tags, None, latency)
        return MemberResult(call, signal, out)

    def _record(self, key: str, template: PromptTemplate, prompt: str, text: str,
                tokens_in: int, tokens_out: int, latency: float, truncated: bool,
                late: bool, *, unusable: str | None = None, outcome: str = "ok",
                error_class: str | None = None, error: str | None = None) -> None:
        assert self.store is not None
        try:
            self.store.put(Recording(key, self.name, self.model, template.ref,
                                     template.short_hash, prompt, text, tokens_in, tokens_out,
                                     round(latency, 3), truncated, late, unusable=unusable,
                                     outcome=outcome, error_class=error_class, error=error))
        except OSError as exc:  # a full disk must not fail the decision
            log.error("recording_failed provider=%s key=%s error=%r", self.name, key, exc)


Member = LocalVoter | LocalPersona | ModelMember


def start_order(members: Sequence[Member], stage: str,
                pool: Callable[[], DaemonThreadPool]) -> list[Member]:
    """The members that run in the pool, in the order to submit them: the slowest expected
    first, when the pool has a worker free for each (every call starts at once; the order
    only decides which request goes out first, and the slowest one going out first is what
    shortens the decision). When some calls would queue, configuration order, so that a
    slow or hanging provider never takes the only free worker ahead of the others. Ties
    (and members never measured) keep configuration order. ``pool`` is only asked when
    there is something to order."""
    pooled = [m for m in members if not m.inline]
    if len(pooled) > 1 and len(pooled) <= pool().free_workers():
        pooled.sort(key=lambda m: -m.expected_latency_ms(stage))  # stable: ties keep order
    return pooled


def late_call(result: MemberResult) -> ProviderCall | None:
    """The ``late`` record for an answer that arrived after its decision's deadline."""
    call = result.call
    if call.raw_text is None or call.outcome not in (CallOutcome.OK, CallOutcome.INVALID):
        return None
    return replace(call, outcome=CallOutcome.LATE, abstained=True,
                   reason=f"answered after the deadline ({call.latency_ms:.0f} ms); "
                          f"was {call.outcome.value}")
