"""OpenAI-compatible chat completions through the official ``openai`` SDK.

One adapter serves OpenAI, vLLM, llama.cpp's server and Ollama: they differ only in
``base_url`` (and in which token-limit parameter they accept: ``max_tokens_param``).
Structured output is requested with ``response_format={"type": "json_schema", ...}``;
whatever comes back is still validated by us (``validation.py``), since local servers
may ignore the schema.

The SDK is imported when the client is built, not when this module is imported, so
``dta --help`` stays fast and a missing package is a clear build-time error. Retries are
explicit (``max_retries``, default 0: the ensemble's deadline governs, and the breaker
and fallback chain are the retry policy), and so is every timeout. A call's ``timeout_s``
is its whole budget, SDK retries and their ``Retry-After`` waits included
(``call_budget.py``): a retry that cannot start before it runs out is not made.
Requests go through the SDK's typed ``chat.completions.create``, so auth (the API key
alone, never an admin key from the environment), headers, retries and the typed answer
stay the SDK's own, across its versions.

What comes back is untrusted: the key is masked in the answer's text as in error text
(a proxy may echo the request's headers), token counts are validated before they are
billed or counted, and the choice's own metadata (``finish_reason``, ``refusal``,
``tool_calls``) can make it no vote whatever its text (``validation.openai_unusable``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from domain.errors import EnsembleConfigError, ProviderCallError
from ensemble import call_budget
from ensemble.base import Completion, RenderedPrompt
from ensemble.provider_text import mask
from ensemble.telemetry import token_count
from ensemble.validation import openai_unusable

log = logging.getLogger(__name__)


def scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "**********") if secret else text


def call_sdk(create: Any, kwargs: dict[str, Any], *, sdk: Any, base_error: type[Exception],
             secret: str | None) -> Any:
    """Call an official SDK (openai and anthropic share these error classes) and map its
    errors into ``ProviderCallError`` with the key scrubbed from every message."""
    try:
        return create(**kwargs)
    except ProviderCallError:  # ``budget_spent``: already ours, and a timeout
        raise
    except sdk.APITimeoutError as exc:
        raise ProviderCallError(scrub(str(exc), secret), error_class=type(exc).__name__,
                                timeout=True) from None
    except sdk.APIStatusError as exc:
        raise ProviderCallError(scrub(f"HTTP {exc.status_code}: {exc.message}", secret),
                                error_class=type(exc).__name__,
                                status=exc.status_code) from None
    except base_error as exc:
        raise ProviderCallError(scrub(str(exc), secret),
                                error_class=type(exc).__name__) from None


def budget_hooks(base_error: type[Exception]) -> dict[str, list[Any]]:
    """``event_hooks`` enforcing each call's budget (``call_budget``). An attempt refused
    for lack of time raises a ``ProviderCallError`` (a timeout) that is also the SDK's own
    ``base_error``: the SDK then passes it through untouched and does not retry it (an
    ``APITimeoutError`` would be retried by the anthropic SDK)."""
    spent_class = type("CallBudgetSpent", (ProviderCallError, base_error), {})

    def spent(_request: Any) -> BaseException:
        error: BaseException = spent_class(
            "timed out: the call's budget (decision deadline + late grace) ran out before "
            "the SDK's retry",
            error_class="CallBudgetSpent", timeout=True)
        return error

    return call_budget.hooks(spent)


class OpenAIChatClient:
    kind = "openai"

    def __init__(self, *, model: str, api_key: SecretStr | None, base_url: str | None,
                 timeout_s: float, max_retries: int = 0, max_tokens: int = 600,
                 max_tokens_param: str = "max_completion_tokens",
                 temperature: float | None = 0.0, structured_output: bool = True) -> None:
        try:
            import openai
        except ImportError:  # pragma: no cover - exercised only without the package
            raise EnsembleConfigError(
                "provider kind 'openai' needs the openai package: pip install 'openai>=2'"
            ) from None
        self.model = model
        self.max_tokens = max_tokens
        self.max_tokens_param = max_tokens_param
        self.temperature = temperature
        self.structured_output = structured_output
        self._secret = api_key.get_secret_value() if api_key is not None else None
        self._sdk: Any = openai
        # Keyless local servers (llama.cpp, Ollama) accept any bearer token.
        self._client: Any = openai.OpenAI(
            api_key=self._secret or "sk-no-key", base_url=base_url, timeout=timeout_s,
            max_retries=max_retries, http_client=openai.DefaultHttpxClient(
                event_hooks=budget_hooks(openai.OpenAIError)))

    def complete(self, prompt: RenderedPrompt, schema: Mapping[str, Any] | None,
                 schema_name: str, timeout_s: float) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": prompt.system},
                         {"role": "user", "content": prompt.user}],
            self.max_tokens_param: self.max_tokens,
            "timeout": timeout_s,
        }
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.structured_output and schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "strict": True, "schema": dict(schema)},
            }
        sdk = self._sdk
        with call_budget.budget(timeout_s):
            resp = call_sdk(self._client.chat.completions.create, kwargs, sdk=sdk,
                            base_error=sdk.OpenAIError, secret=self._secret)
        choices = getattr(resp, "choices", None) or []
        if not choices:
            raise ProviderCallError("response has no choices", error_class="EmptyResponse")
        choice = choices[0]
        message = choice.message
        finish = getattr(choice, "finish_reason", None)
        refusal = getattr(message, "refusal", None)
        content = getattr(message, "content", None)
        # A refusal's explanation is kept as the raw text (the record of what was said);
        # it is never parsed as the answer (``unusable``).
        text = content if isinstance(content, str) else (
            refusal if isinstance(refusal, str) else "")
        tokens_in, tokens_out = usage_counts(
            getattr(resp, "usage", None), ("prompt_tokens", "completion_tokens"), self.model)
        return Completion(
            text=mask(text, (self._secret,)),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            truncated=finish == "length",
            finish_reason=finish if isinstance(finish, str) else None,
            unusable=openai_unusable(finish, refusal, getattr(message, "tool_calls", None)
                                     or getattr(message, "function_call", None)))


def usage_counts(usage: Any, fields: tuple[str, str], model: str) -> tuple[int, int]:
    """(tokens in, tokens out) from a response's ``usage``, each validated
    (``telemetry.token_count``): a provider's numbers are untrusted input. A bad count is
    logged and counts as 0; the call and its answer are kept. No ``usage`` at all (some
    local servers) is 0 and 0, silently."""
    if usage is None:
        return 0, 0
    counts = []
    for name in fields:
        count, problem = token_count(getattr(usage, name, None), name)
        if problem is not None:
            log.warning("provider_usage_rejected model=%s problem=%s", model, problem)
        counts.append(count)
    return counts[0], counts[1]
