"""What our SDK adapters put on the wire, against what the SDKs' own ``create`` would.

``OpenAIChatClient`` builds its arguments for ``chat.completions.create`` from its
settings (token-limit parameter, temperature, structured output): the body, path and
headers the fake server receives must be those a plain ``create`` call sends for the same
arguments, and the answer, errors and retries must come back the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.llm_servers import Fail, FakeOpenAIServer, Reply, SeenRequest
from pydantic import SecretStr

from domain.errors import ProviderCallError
from ensemble.base import RenderedPrompt
from ensemble.openai_chat import OpenAIChatClient
from ensemble.schemas import OUTPUT_SCHEMAS, SCHEMA_NAMES

KEY = "sk-test-secret-0123456789"
ANSWER = json.dumps({"symbol": "EURUSD", "direction": "long", "confidence": 0.7})
PROMPT = RenderedPrompt("research", "1", "abcd", "You are a careful analyst.\n" * 40,
                        'Input:\n{"symbol": "EURUSD", "note": "caf\u00e9 \u2192 \U0001f4c8"}')


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(lambda _b: Reply(ANSWER, prompt_tokens=120, completion_tokens=9),
                          api_key=KEY) as s:
        yield s  # type: ignore[misc]


def client(server: FakeOpenAIServer, **kw: Any) -> OpenAIChatClient:
    return OpenAIChatClient(model="gpt-test", api_key=SecretStr(KEY),
                            base_url=server.base_url, timeout_s=5.0, **kw)


def create_kwargs(c: OpenAIChatClient, schema: bool) -> dict[str, Any]:
    """The arguments a ``chat.completions.create`` caller would pass for ``PROMPT``."""
    kw: dict[str, Any] = {
        "model": c.model, "timeout": 5.0,
        "messages": [{"role": "system", "content": PROMPT.system},
                     {"role": "user", "content": PROMPT.user}],
        c.max_tokens_param: c.max_tokens}
    if c.temperature is not None:
        kw["temperature"] = c.temperature
    if schema:
        kw["response_format"] = {"type": "json_schema", "json_schema": {
            "name": SCHEMA_NAMES["research"], "strict": True,
            "schema": OUTPUT_SCHEMAS["research"]}}
    return kw


def comparable(req: SeenRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
    return req.path, req.headers, req.body


@pytest.mark.parametrize("kw", [
    {},
    {"max_tokens_param": "max_tokens", "temperature": None, "structured_output": False},
], ids=["structured", "plain"])
def test_openai_adapter_sends_what_create_sends(server: FakeOpenAIServer,
                                                monkeypatch: pytest.MonkeyPatch,
                                                kw: dict[str, Any]) -> None:
    # An admin key in the environment must not change which key goes out.
    monkeypatch.setenv("OPENAI_ADMIN_KEY", "sk-admin-should-not-be-sent")
    c = client(server, **kw)
    done = c.complete(PROMPT, OUTPUT_SCHEMAS["research"], SCHEMA_NAMES["research"], 5.0)
    sdk_client: Any = c._client  # the SDK client the adapter built
    sdk_client.chat.completions.create(**create_kwargs(c, c.structured_output))
    ours, theirs = (comparable(r) for r in server.requests)
    assert ours == theirs
    assert ours[1]["authorization"] == f"Bearer {KEY}"
    assert ("response_format" in ours[2]) is c.structured_output
    assert done.text == ANSWER and (done.tokens_in, done.tokens_out) == (120, 9)
    assert done.finish_reason == "stop" and not done.truncated


def test_openai_adapter_errors_and_retries_as_through_create(
        server: FakeOpenAIServer) -> None:
    """A 500 is retried by the SDK (max_retries=1 here) and then answered; a 401 maps to
    ``ProviderCallError`` with the SDK's class name, the key scrubbed."""
    c = client(server, max_retries=1)
    server.push(Fail(500))
    done = c.complete(PROMPT, None, "research", 5.0)
    assert done.text == ANSWER
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1"]
    server.reset(api_key="another-key")
    with pytest.raises(ProviderCallError) as err:
        c.complete(PROMPT, None, "research", 5.0)
    assert err.value.error_class == "AuthenticationError" and err.value.status == 401
    assert KEY not in str(err.value)
    assert len(server.requests) == 1  # a 401 is not retried
