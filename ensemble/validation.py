"""Turn a model's raw text into a validated persona output, or a rejection with a reason.

A rejection is an abstention: it never becomes a neutral vote or a default hold, and its
raw text is kept by the caller. Checks, in order: the text is one JSON object (a single
```json fence around it is tolerated, since models without structured output add one);
it matches the stage's schema strictly (``schemas.py``); and, for a research opinion, it
is about this proposal and this market: the same symbol, the stop and target on the
correct sides of the entry, every price within a sane band around the close:
``price_band_atr`` ATRs, widened to 1.5 times the distance of the proposal's own farthest
level (a strategy may target a liquidity pool 15 ATRs away; a model that repeats that
target must not be rejected for it, while a digit slip or another instrument's price
still falls far outside).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from domain import MarketSnapshot, Proposal
from ensemble.schemas import OUTPUT_MODELS, ResearchOutput

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?\s*```$", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Checked:
    """``output`` when valid, else ``reason`` (never empty)."""

    output: BaseModel | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.output is not None


def _reject(reason: str) -> Checked:
    return Checked(None, reason)


def parse_output(stage: str, text: str | None, *, max_chars: int = 20_000) -> Checked:
    """Parse ``text`` into the stage's output model; never raises."""
    if text is None or not text.strip():
        return _reject("empty output")
    if len(text) > max_chars:
        return _reject(f"output too long ({len(text)} > {max_chars} characters)")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body.startswith("{"):
        return _reject("not a JSON object")
    model = OUTPUT_MODELS.get(stage)
    if model is None:
        return _reject(f"unknown stage {stage!r}")
    try:
        return Checked(model.model_validate_json(body, strict=True), None)
    except ValidationError as exc:
        return _reject("schema: " + _summarize(exc))
    except Exception as exc:  # never raise on model output
        return _reject(f"unparseable: {exc.__class__.__name__}")


def _summarize(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = str(err["msg"])
        parts.append(f"{loc}: {msg[:160]}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def reference_atr(snapshot: MarketSnapshot) -> float:
    """ATR, or the last bar's range when ATR is not known yet, never zero."""
    atr = snapshot.atr
    if atr is not None and math.isfinite(atr) and atr > 0:
        return atr
    rng = snapshot.bar.high - snapshot.bar.low
    return rng if rng > 0 else max(abs(snapshot.bar.close) * 1e-4, 1e-12)


def check_research(out: ResearchOutput, proposal: Proposal, snapshot: MarketSnapshot,
                   *, price_band_atr: float) -> str | None:
    """Why this well-formed opinion is still unusable, or None."""
    if out.symbol.strip().upper() != proposal.symbol.strip().upper():
        return f"names symbol {out.symbol!r}, the proposal is for {proposal.symbol!r}"
    if out.direction == "flat":
        return None
    if out.entry is None or out.stop is None or out.target is None:
        return f"a {out.direction} opinion needs entry, stop and target"
    sign = 1.0 if out.direction == "long" else -1.0
    if (out.entry - out.stop) * sign <= 0:
        return (f"stop {out.stop} on the wrong side of entry {out.entry} "
                f"for a {out.direction}")
    if (out.target - out.entry) * sign <= 0:
        return (f"target {out.target} on the wrong side of entry {out.entry} "
                f"for a {out.direction}")
    close = snapshot.bar.close
    band = max(price_band_atr * reference_atr(snapshot),
               1.5 * max(abs(proposal.target - close), abs(proposal.stop - close),
                         abs(proposal.entry - close)))
    for name, price in (("entry", out.entry), ("stop", out.stop), ("target", out.target)):
        if abs(price - close) > band:
            return (f"{name} {price} outside the sane band close {close} +/- {band:.6g} "
                    f"(max of {price_band_atr:g} ATR and 1.5x the proposal's own reach)")
    return None


def validate_answer(stage: str, text: str | None, proposal: Proposal,
                    snapshot: MarketSnapshot, *, price_band_atr: float,
                    max_chars: int = 20_000) -> Checked:
    """Parse and check one answer for ``stage``; never raises."""
    checked = parse_output(stage, text, max_chars=max_chars)
    if checked.output is None or not isinstance(checked.output, ResearchOutput):
        return checked
    problem = check_research(checked.output, proposal, snapshot,
                             price_band_atr=price_band_atr)
    return checked if problem is None else _reject(problem)


# --------------------------------------------------------------------------- the API's verdict
# Before its text is read, an answer's own metadata can say it is no answer. Documented
# values: https://platform.openai.com/docs/api-reference/chat/object (finish_reason),
# https://platform.openai.com/docs/guides/structured-outputs ("Refusals"),
# https://platform.claude.com/docs/en/build-with-claude/handling-stop-reasons (stop_reason).
# Anything not known to be a finished answer is an abstention: a new value is no vote
# until someone has read what it means.

OPENAI_FINISHED = frozenset({"stop", "length"})  # "length": truncated, judged apart
ANTHROPIC_FINISHED = frozenset({"end_turn", "stop_sequence", "max_tokens"})


def openai_unusable(finish_reason: object, refusal: object, tool_calls: object) -> str | None:
    """Why an OpenAI chat completion choice is no vote, from its metadata; None if it is
    a finished answer (or one truncated at the token limit)."""
    if refusal:
        return "refused: the answer's refusal field is set"
    if finish_reason == "content_filter":
        return "filtered: finish_reason content_filter (content omitted by the provider)"
    if tool_calls or finish_reason in ("tool_calls", "function_call"):
        return f"a tool call, not an answer (finish_reason {finish_reason})"
    if finish_reason not in OPENAI_FINISHED:
        return f"unknown finish_reason {str(finish_reason)[:40]!r}"
    return None


def anthropic_unusable(stop_reason: object, block_types: list[object]) -> str | None:
    """Why an Anthropic message is no vote, from its metadata; None if it is a finished
    answer (or one truncated at ``max_tokens``)."""
    if stop_reason == "refusal":
        return "refused: stop_reason refusal"
    if stop_reason == "model_context_window_exceeded":
        return "cut short: stop_reason model_context_window_exceeded"
    if stop_reason == "pause_turn":
        return "incomplete: stop_reason pause_turn"
    if stop_reason == "tool_use":
        return "a tool call, not an answer (stop_reason tool_use)"
    if stop_reason not in ANTHROPIC_FINISHED:
        return f"unknown stop_reason {str(stop_reason)[:40]!r}"
    others = sorted({str(t)[:40] for t in block_types if t != "text"})
    if others:
        return f"a {', '.join(others)} block beside the text"
    return None


def output_json(output: BaseModel | Any) -> str | None:
    return output.model_dump_json() if isinstance(output, BaseModel) else None
