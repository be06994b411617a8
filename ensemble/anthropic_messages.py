"""Anthropic Messages through the official ``anthropic`` SDK.

Structured output is requested with ``output_config={"format": {"type": "json_schema",
"schema": ...}}`` when ``structured_output`` is on; the text blocks of the answer are
joined and validated by us like any other model's. Imported lazily, retries and timeouts
explicit, each call's retries bounded by its budget, for the same reasons as
``openai_chat.py``.

``temperature`` is sent only if the installed SDK's ``messages.create`` still takes it
(anthropic 2.x dropped it; the models it targets choose their own sampling).

The answer is untrusted as in ``openai_chat.py``: key masked, usage validated, and the
message's ``stop_reason`` and content blocks can make it no vote
(``validation.anthropic_unusable``: a refusal, a context-window cut, a paused turn, a
``tool_use`` block beside the text).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from domain.errors import EnsembleConfigError
from ensemble import call_budget
from ensemble.base import Completion, RenderedPrompt
from ensemble.openai_chat import budget_hooks, call_sdk, usage_counts
from ensemble.provider_text import mask
from ensemble.validation import anthropic_unusable


class AnthropicMessagesClient:
    kind = "anthropic"

    def __init__(self, *, model: str, api_key: SecretStr | None, base_url: str | None,
                 timeout_s: float, max_retries: int = 0, max_tokens: int = 600,
                 temperature: float | None = 0.0, structured_output: bool = True) -> None:
        try:
            import anthropic
        except ImportError:  # pragma: no cover - exercised only without the package
            raise EnsembleConfigError(
                "provider kind 'anthropic' needs the anthropic package: "
                "pip install 'anthropic>=0.40'") from None
        if api_key is None:
            raise EnsembleConfigError("an anthropic provider needs an API key")
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.structured_output = structured_output
        self._secret = api_key.get_secret_value()
        self._sdk: Any = anthropic
        self._client: Any = anthropic.Anthropic(
            api_key=self._secret, base_url=base_url, timeout=timeout_s,
            max_retries=max_retries, http_client=anthropic.DefaultHttpxClient(
                event_hooks=budget_hooks(anthropic.AnthropicError)))
        try:
            params = inspect.signature(self._client.messages.create).parameters
            self._takes_temperature = "temperature" in params
        except (TypeError, ValueError):  # pragma: no cover - uninspectable wrapper
            self._takes_temperature = False

    def complete(self, prompt: RenderedPrompt, schema: Mapping[str, Any] | None,
                 schema_name: str, timeout_s: float) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": prompt.system,
            "messages": [{"role": "user", "content": prompt.user}],
            "timeout": timeout_s,
        }
        if self.temperature is not None and self._takes_temperature:
            kwargs["temperature"] = self.temperature
        if self.structured_output and schema is not None:
            kwargs["output_config"] = {"format": {"type": "json_schema",
                                                  "schema": dict(schema)}}
        sdk = self._sdk
        with call_budget.budget(timeout_s):
            resp = call_sdk(self._client.messages.create, kwargs, sdk=sdk,
                            base_error=sdk.AnthropicError, secret=self._secret)
        blocks = list(getattr(resp, "content", None) or [])
        text = "".join(str(getattr(block, "text", "")) for block in blocks
                       if getattr(block, "type", None) == "text")
        stop = getattr(resp, "stop_reason", None)
        tokens_in, tokens_out = usage_counts(
            getattr(resp, "usage", None), ("input_tokens", "output_tokens"), self.model)
        return Completion(
            text=mask(text, (self._secret,)),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            truncated=stop == "max_tokens",
            finish_reason=stop if isinstance(stop, str) else None,
            unusable=anthropic_unusable(stop, [getattr(b, "type", None) for b in blocks]))
