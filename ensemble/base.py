"""The provider seams.

``Provider`` is the original seam for deterministic local voters (``StructureProvider``,
``MomentumProvider``, ``SmcRulesProvider``): a pure function of proposal and snapshot.
``ModelClient`` is the seam for language models behind an HTTP API (``OpenAIChatClient``,
``AnthropicMessagesClient``): it turns a rendered prompt into raw text and token counts and
knows nothing of trading; validation, recording and scoring happen around it, the same
for every model. ``PersonaProvider`` is a deterministic local answer to a risk or
execution-review request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from domain import MarketSnapshot, Proposal, Signal


class Provider(Protocol):
    name: str

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Signal:
        """Vote on a proposal. Raising is allowed: the ensemble turns it into an abstention."""
        ...


class PersonaProvider(Protocol):
    name: str

    def answer(self, request: Any) -> BaseModel:
        """Answer a persona input model (``RiskInput``/``ExecutionInput``) with its output
        model. Raising is allowed: the ensemble turns it into an abstention."""
        ...


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A template filled in for one request; ``text`` is what the recording key hashes."""

    template_id: str
    template_version: str
    template_hash: str
    system: str
    user: str

    @property
    def text(self) -> str:
        return f"{self.system}\n\n{self.user}"


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's raw answer. ``truncated``: it stopped on its token limit. ``unusable``:
    why the API itself says this answer is no vote whatever its text (a refusal, a
    filtered answer, a tool call, a finish reason we do not know); None for a finished
    answer, which validation then judges."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    truncated: bool = False
    finish_reason: str | None = None
    unusable: str | None = None


class ModelClient(Protocol):
    kind: str
    model: str

    def complete(self, prompt: RenderedPrompt, schema: Mapping[str, Any] | None,
                 schema_name: str, timeout_s: float) -> Completion:
        """One request, no retries beyond the SDK's configured ``max_retries``, all of it
        (attempts and the waits between them) within ``timeout_s``.

        Raises ``ProviderCallError`` for API and transport failures (``timeout=True`` for a
        timeout); any other exception is also turned into an abstention by the caller.
        """
        ...
