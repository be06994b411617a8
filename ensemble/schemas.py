"""Persona inputs and outputs: explicit pydantic models, plus the JSON schemas sent to the
models for structured output.

Inputs are built by us from the proposal and snapshot (``personas.py``) and embedded in
the prompt as canonical JSON, so a recorded step can be re-rendered and re-run. Outputs
are parsed from model text strictly: unknown fields, wrong types, non-finite numbers and
tags outside the SMC glossary are errors, never coerced.

The JSON schemas are written out by hand rather than generated, because OpenAI's strict
structured outputs accept only a subset (every property required, nullable via a type
list, ``additionalProperties: false``); a test checks they list the same fields as the
pydantic models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.glossary import TAG_VALUES, validate_tags


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]

# --------------------------------------------------------------------------- inputs


class ProposalView(_Schema):
    strategy: str
    direction: Literal["long", "short"]
    entry: float
    stop: float
    target: float
    reason: str
    tags: tuple[str, ...] = ()


class BreakView(_Schema):
    kind: Literal["bos", "choch"]
    direction: Literal["long", "short", "flat"]
    level: float
    bars_ago: int


class BlockView(_Schema):
    direction: Literal["long", "short", "flat"]
    top: float
    bottom: float
    bars_ago: int
    mitigated: bool


class SweepView(_Schema):
    side: Literal["high", "low"]
    level: float
    bars_ago: int


class MarketView(_Schema):
    close: float
    high: float
    low: float
    atr: float | None
    spread: float
    trend: str
    premium_discount: str | None
    session: str | None
    recent_closes: tuple[float, ...] = ()
    breaks: tuple[BreakView, ...] = ()
    order_blocks: tuple[BlockView, ...] = ()
    sweeps: tuple[SweepView, ...] = ()


class ResearchInput(_Schema):
    stage: Literal["research"] = "research"
    symbol: str
    timeframe: str
    bar_time: str
    proposal: ProposalView
    market: MarketView


class Consensus(_Schema):
    direction: Literal["long", "short", "flat"]
    confidence: float
    agreement: int
    voters: int


class RiskInput(_Schema):
    stage: Literal["risk"] = "risk"
    symbol: str
    proposal: ProposalView
    consensus: Consensus
    close: float
    atr: float | None
    risk_atr: float | None  # |entry - stop| in ATRs


class OrderView(_Schema):
    side: Literal["buy", "sell"]
    entry: float
    stop: float
    target: float
    size_factor: float


class ExecutionInput(_Schema):
    stage: Literal["execution"] = "execution"
    symbol: str
    order: OrderView
    close: float
    high: float
    low: float
    atr: float | None
    spread: float


# --------------------------------------------------------------------------- outputs


class ResearchOutput(_Schema):
    symbol: str = Field(min_length=1, max_length=32)
    direction: Literal["long", "short", "flat"]
    confidence: float = Field(ge=0, le=1, allow_inf_nan=False)
    entry: Price | None
    stop: Price | None
    target: Price | None
    tags: tuple[str, ...] = Field(max_length=16)
    rationale: str = Field(min_length=1, max_length=2000)

    @field_validator("tags")
    @classmethod
    def _glossary(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(t.value for t in validate_tags(v))


class RiskOutput(_Schema):
    action: Literal["approve", "veto", "resize"]
    size_factor: float = Field(ge=0, le=1, allow_inf_nan=False)
    reason: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> RiskOutput:
        if self.action == "resize" and not 0 < self.size_factor < 1:
            raise ValueError("resize needs 0 < size_factor < 1")
        if self.action == "approve" and self.size_factor != 1:
            raise ValueError("approve needs size_factor 1 (use resize to scale down)")
        if self.action == "veto" and self.size_factor != 0:
            raise ValueError("veto needs size_factor 0")
        return self


class ExecutionOutput(_Schema):
    approve: bool
    issues: tuple[str, ...] = Field(max_length=10)
    reason: str = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> ExecutionOutput:
        if not self.approve and not self.issues:
            raise ValueError("a rejection must list its issues")
        return self


OUTPUT_MODELS: dict[str, type[_Schema]] = {
    "research": ResearchOutput, "risk": RiskOutput, "execution": ExecutionOutput,
}

# --------------------------------------------------------------------------- JSON schemas

_NUM_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}


def _obj(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


OUTPUT_SCHEMAS: dict[str, dict[str, Any]] = {
    "research": _obj({
        "symbol": {"type": "string"},
        "direction": {"type": "string", "enum": ["long", "short", "flat"]},
        "confidence": {"type": "number"},
        "entry": _NUM_OR_NULL,
        "stop": _NUM_OR_NULL,
        "target": _NUM_OR_NULL,
        "tags": {"type": "array", "items": {"type": "string", "enum": sorted(TAG_VALUES)}},
        "rationale": {"type": "string"},
    }),
    "risk": _obj({
        "action": {"type": "string", "enum": ["approve", "veto", "resize"]},
        "size_factor": {"type": "number"},
        "reason": {"type": "string"},
    }),
    "execution": _obj({
        "approve": {"type": "boolean"},
        "issues": {"type": "array", "items": {"type": "string"}},
        "reason": {"type": "string"},
    }),
}

SCHEMA_NAMES = {"research": "research_opinion", "risk": "risk_review",
                "execution": "execution_review"}
