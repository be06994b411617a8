"""Ensemble configuration: providers, routing rules, deadline, breakers, weights, mode.

These models replace ``executor.settings.EnsembleSettings``: the ``[ensemble]`` section of
the settings file maps onto ``EnsembleConfig`` one to one, and the TOML already in use
(``[[ensemble.providers]] name/kind/weight/params``) stays valid. The defaults reproduce
the ensemble as it was before LLM providers existed: one local ``structure`` provider, no
network, nothing recorded.

Secrets: an LLM provider's key is normally *not* in the file. ``api_key_name`` names the
secret the factory looks up in the ``secrets`` mapping it is given (the settings'
``openai_api_key`` / ``anthropic_api_key``, which come from the environment, ``.env`` or
systemd credentials). ``api_key`` exists for completeness and is a ``SecretStr``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

Stage = Literal["research", "risk", "execution"]
ProviderKind = Literal["structure", "momentum", "smc_rules", "risk_rules", "execution_rules",
                       "openai", "anthropic"]
ProviderClass = Literal["reasoning", "deterministic"]
Capability = Literal["reasoning", "json", "tool_use"]
Mode = Literal["live", "record", "replay"]

STAGES: tuple[Stage, ...] = ("research", "risk", "execution")
LLM_KINDS = frozenset({"openai", "anthropic"})
# The one stage each deterministic local provider can serve.
LOCAL_STAGE: dict[str, Stage] = {
    "structure": "research", "momentum": "research", "smc_rules": "research",
    "risk_rules": "risk", "execution_rules": "execution",
}
_DEFAULT_KEY_NAME = {"openai": "openai_api_key", "anthropic": "anthropic_api_key"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Model):
    """One provider. Local kinds need only ``name``/``kind``/``weight``/``params``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    kind: ProviderKind
    weight: float = Field(default=1.0, ge=0, le=100)
    params: dict[str, Any] = Field(default_factory=dict)
    # Routing: reasoning-heavy (LLM) or deterministic. Defaults by kind.
    provider_class: ProviderClass | None = None
    capabilities: tuple[Capability, ...] | None = None
    stages: tuple[Stage, ...] | None = None  # LLM kinds only; default: research only
    templates: dict[Stage, str] = Field(default_factory=dict)  # stage -> "id" or "id@ver"
    # LLM kinds only.
    model: str = ""
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_name: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_retries: int = Field(default=0, ge=0, le=3)
    max_tokens: int = Field(default=600, ge=16, le=32_000)
    max_tokens_param: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    temperature: float | None = Field(default=0.0, ge=0, le=2)
    structured_output: bool = True
    price_in_per_1k: float = Field(default=0.0, ge=0, le=1000)
    price_out_per_1k: float = Field(default=0.0, ge=0, le=1000)

    @field_validator("capabilities", "stages")
    @classmethod
    def _sorted_unique(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        # Sorted so the settings hash does not depend on the order a file lists them in.
        return None if v is None else tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _kind_rules(self) -> ProviderConfig:
        llm = self.kind in LLM_KINDS
        if llm and not self.model:
            raise ValueError(f"provider {self.name!r} of kind {self.kind!r} needs a model")
        if not llm:
            extra = [f for f in ("model", "base_url", "api_key", "api_key_name", "templates")
                     if getattr(self, f)]
            if extra:
                raise ValueError(f"{', '.join(extra)} only apply to openai/anthropic "
                                 f"providers, not to {self.name!r} ({self.kind})")
            if self.stages is not None and self.stages != (LOCAL_STAGE[self.kind],):
                raise ValueError(f"a {self.kind} provider serves only the "
                                 f"{LOCAL_STAGE[self.kind]!r} stage")
        return self

    @property
    def is_llm(self) -> bool:
        return self.kind in LLM_KINDS

    @property
    def effective_class(self) -> ProviderClass:
        if self.provider_class is not None:
            return self.provider_class
        return "reasoning" if self.is_llm else "deterministic"

    @property
    def effective_capabilities(self) -> tuple[Capability, ...]:
        if self.capabilities is not None:
            return self.capabilities
        return ("json", "reasoning") if self.is_llm else ("json",)

    @property
    def effective_stages(self) -> tuple[Stage, ...]:
        if not self.is_llm:
            return (LOCAL_STAGE[self.kind],)
        # Research only unless asked: an LLM in the risk or execution stage is a second
        # paid call per decision, which should be a decision in the file, not a default.
        return self.stages if self.stages is not None else ("research",)

    @property
    def effective_key_name(self) -> str | None:
        return self.api_key_name or _DEFAULT_KEY_NAME.get(self.kind)


class RouteRule(_Model):
    """Which providers serve a request kind (a persona stage), in fallback order.

    Candidates are ``providers`` by name if given, else every provider whose class is in
    ``classes`` (class order first, then file order). With ``fanout`` N > 0 the first N
    candidates whose breaker lets them through are asked: an open one is passed over and
    the next candidate takes its place (the fallback chain). ``fanout`` 0 asks them all.
    """

    request: Stage
    classes: tuple[ProviderClass, ...] = ("reasoning", "deterministic")
    providers: tuple[str, ...] = ()
    fanout: int = Field(default=0, ge=0, le=16)


def _default_routes() -> tuple[RouteRule, ...]:
    return (RouteRule(request="research"),
            RouteRule(request="risk", classes=("deterministic", "reasoning")),
            RouteRule(request="execution", classes=("deterministic",)))


# The slow-call threshold when the file does not set one, as a share of the deadline. An
# answer slower than ``deadline_ms`` is already a timeout, so a threshold at or above the
# deadline never fires, and a provider answering just inside it holds every decision for
# nearly the whole deadline without its breaker ever counting it. 0.8 counts an answer that
# left less than a fifth of the deadline unused: a deadline is set well above a healthy
# provider's p95 (else it times out in normal operation), so healthy calls stay below it,
# while a provider drifting towards the deadline trips its breaker before it times out.
SLOW_CALL_SHARE_OF_DEADLINE = 0.8


class BreakerConfig(_Model):
    """Per-provider circuit breaker: closed -> open when, over the last ``window_s``, at
    least ``min_calls`` calls were made and the share of failures (errors, timeouts, calls
    slower than ``slow_call_ms``) reached ``failure_rate``; open -> half-open after
    ``cooldown_s``; half-open -> closed after ``half_open_probes`` good probes (one in
    flight at a time), back to open on a failed one.

    ``slow_call_ms`` unset means ``SLOW_CALL_SHARE_OF_DEADLINE`` of the ensemble's
    ``deadline_ms`` (``EnsembleConfig.effective_breaker``); set, it must be below the
    deadline (``EnsembleConfig`` rejects it otherwise). A breaker built on its own, without
    an ensemble deadline, has no slow-call rule while it is unset."""

    window_s: float = Field(default=60.0, gt=0, le=86_400)
    min_calls: int = Field(default=3, ge=1, le=1000)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    slow_call_ms: float | None = Field(default=None, gt=0)
    cooldown_s: float = Field(default=30.0, gt=0, le=86_400)
    half_open_probes: int = Field(default=1, ge=1, le=10)


class ScoringConfig(_Model):
    """Reranker knobs; part of the parameter set. Defaults leave today's vote unchanged.

    ``against_structure_factor`` scales the conviction of a vote against the snapshot's
    latest structure break when that break is at most ``fresh_break_bars`` old (0.5
    halves a long into a fresh bearish BOS). ``ungrounded_tag_penalty`` scales down a vote
    by the share of its SMC tags the snapshot does not support (a hallucinated BOS).
    """

    against_structure_factor: float = Field(default=1.0, ge=0, le=1)
    fresh_break_bars: int = Field(default=10, ge=1, le=10_000)
    ungrounded_tag_penalty: float = Field(default=0.0, ge=0, le=1)


class ValidationConfig(_Model):
    """How far from the close an LLM's entry/stop/target may be before it is rejected:
    ``price_band_atr`` ATRs, or 1.5x the proposal's own farthest level if that is more."""

    price_band_atr: float = Field(default=10.0, gt=0, le=100)
    max_output_chars: int = Field(default=20_000, ge=100, le=1_000_000)


class EnsembleConfig(_Model):
    providers: tuple[ProviderConfig, ...] = Field(
        default_factory=lambda: (ProviderConfig(name="structure", kind="structure"),))
    routing: tuple[RouteRule, ...] = Field(default_factory=_default_routes)
    deadline_ms: int = Field(default=5_000, ge=1, le=120_000)
    # An SDK call is cut off this long after the decision's deadline; an answer that
    # arrives in between is recorded as ``late`` (telemetry only) and ignored.
    late_grace_ms: int = Field(default=1_000, ge=0, le=60_000)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    mode: Mode = "live"
    recordings_path: Path = Path("var/recordings")
    prompts_dir: Path = Path("config/prompts")
    max_workers: int = Field(default=8, ge=1, le=128)
    # The fewest valid research answers each provider class must give before a decision
    # can pass, e.g. {"reasoning": 2}: when the LLMs abstain, the local voters must not
    # trade alone. Below it the ensemble vetoes, with the count in its reason. Empty: none.
    quorum: dict[ProviderClass, int] = Field(default_factory=dict)

    @field_validator("quorum")
    @classmethod
    def _quorum_positive(cls, quorum: dict[str, int]) -> dict[str, int]:
        bad = {c: n for c, n in quorum.items() if n < 1}
        if bad:
            raise ValueError(f"quorum: each class needs at least 1 valid answer, got "
                             f"{', '.join(f'{c} = {n}' for c, n in sorted(bad.items()))} "
                             "(leave a class out for no quorum)")
        return quorum

    @field_validator("breaker")
    @classmethod
    def _slow_call_below_deadline(cls, breaker: BreakerConfig,
                                  info: ValidationInfo) -> BreakerConfig:
        deadline = info.data.get("deadline_ms")  # absent if the deadline itself is invalid
        slow = breaker.slow_call_ms
        if deadline is not None and slow is not None and slow >= deadline:
            raise ValueError(
                f"breaker.slow_call_ms ({slow:g} ms) must be below deadline_ms "
                f"({deadline} ms): an answer slower than the deadline is already a timeout, "
                f"so the slow-call rule would never fire and a provider answering just "
                f"inside the deadline would hold every decision. Lower slow_call_ms, or "
                f"leave it unset for {SLOW_CALL_SHARE_OF_DEADLINE:.0%} of deadline_ms "
                f"({SLOW_CALL_SHARE_OF_DEADLINE * deadline:g} ms)")
        return breaker

    @model_validator(mode="after")
    def _consistent(self) -> EnsembleConfig:
        names = [p.name for p in self.providers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"provider names must be unique, repeated: {', '.join(dupes)}")
        requests = [r.request for r in self.routing]
        if len(set(requests)) != len(requests):
            raise ValueError("one routing rule per request kind (research, risk, execution)")
        by_name = {p.name: p for p in self.providers}
        for rule in self.routing:
            for n in rule.providers:
                if n not in by_name:
                    raise ValueError(f"routing[{rule.request}] names unknown provider {n!r}")
                if rule.request not in by_name[n].effective_stages:
                    raise ValueError(f"routing[{rule.request}]: provider {n!r} "
                                     f"({by_name[n].kind}) cannot serve {rule.request!r}")
        return self

    @property
    def weights(self) -> dict[str, float]:
        return {p.name: p.weight for p in self.providers}

    @property
    def effective_breaker(self) -> BreakerConfig:
        """``breaker`` with ``slow_call_ms`` resolved (unset: a share of the deadline)."""
        if self.breaker.slow_call_ms is not None:
            return self.breaker
        return self.breaker.model_copy(update={
            "slow_call_ms": SLOW_CALL_SHARE_OF_DEADLINE * self.deadline_ms})

    @property
    def has_llm(self) -> bool:
        return any(p.is_llm for p in self.providers)

    def rule(self, stage: Stage) -> RouteRule | None:
        return next((r for r in self.routing if r.request == stage), None)

    def parameter_values(self) -> dict[str, Any]:
        """What a decision ran under, for the parameter set and its hash: every provider's
        kind, weight, params, model and templates, the routing, scoring and validation
        knobs and the deadline. Secrets, URLs, paths and mode are deliberately left out
        (they do not change what a given answer means)."""
        return {
            "providers": {p.name: {"kind": p.kind, "weight": p.weight, "params": p.params,
                                   "class": p.effective_class, "model": p.model or None,
                                   "stages": list(p.effective_stages),
                                   "templates": dict(sorted(p.templates.items()))}
                          for p in self.providers},
            "routing": [r.model_dump(mode="json") for r in self.routing],
            "scoring": self.scoring.model_dump(mode="json"),
            "validation": self.validation.model_dump(mode="json"),
            "deadline_ms": self.deadline_ms,
            **({"quorum": dict(sorted(self.quorum.items()))} if self.quorum else {}),
        }

    def with_weights(self, weights: dict[str, float]) -> EnsembleConfig:
        """A copy with some providers' weights replaced (e.g. a new parameter version)."""
        unknown = set(weights) - {p.name for p in self.providers}
        if unknown:
            raise ValueError(f"unknown providers: {', '.join(sorted(unknown))}")
        providers = tuple(p.model_copy(update={"weight": weights[p.name]})
                          if p.name in weights else p for p in self.providers)
        return self.model_copy(update={"providers": providers})
