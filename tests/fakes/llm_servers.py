"""Fake OpenAI Chat Completions and Anthropic Messages servers on 127.0.0.1.

The tests drive the real ``openai`` and ``anthropic`` SDKs against these servers, so the
fakes must speak the wire format those SDKs parse. Shapes follow the APIs' documentation
and the SDKs' own generated types:

OpenAI, ``POST /v1/chat/completions`` (https://platform.openai.com/docs/api-reference/chat/create,
``openai/types/chat/chat_completion.py``, ``openai/types/completion_usage.py``)::

    {"id": "chatcmpl-...", "object": "chat.completion", "created": 1700000000,
     "model": "...", "choices": [{"index": 0, "finish_reason": "stop" | "length",
       "message": {"role": "assistant", "content": "...", "refusal": null}, "logprobs": null}],
     "usage": {"prompt_tokens": N, "completion_tokens": M, "total_tokens": N + M}}

    Structured output is requested with ``response_format={"type": "json_schema",
    "json_schema": {"name", "strict", "schema"}}``
    (https://platform.openai.com/docs/guides/structured-outputs).
    Errors (https://platform.openai.com/docs/guides/error-codes) carry
    ``{"error": {"message", "type", "param", "code"}}``: 429 ``rate_limit_exceeded`` when
    requests come too fast, 500 ``server_error`` "The server had an error while processing
    your request", 401 ``invalid_api_key``; ``x-request-id`` names the request.

Anthropic, ``POST /v1/messages`` (https://docs.anthropic.com/en/api/messages,
``anthropic/types/message.py``, ``anthropic/types/usage.py``)::

    {"id": "msg_...", "type": "message", "role": "assistant", "model": "...",
     "content": [{"type": "text", "text": "..."}], "stop_reason": "end_turn" | "max_tokens",
     "stop_sequence": null, "usage": {"input_tokens": N, "output_tokens": M}}

    The request carries the key (``x-api-key``, or ``Authorization: Bearer`` as SDK 2.x
    sends it) and an ``anthropic-version`` header and a required
    ``max_tokens``; structured output is ``output_config={"format": {"type": "json_schema",
    "schema": ...}}``. Errors (https://docs.anthropic.com/en/api/errors,
    ``anthropic/types/shared/error_response.py``) are
    ``{"type": "error", "error": {"type", "message"}, "request_id"}`` with a ``request-id``
    header: 429 ``rate_limit_error``, 500 ``api_error``, 529 ``overloaded_error`` (the API
    is temporarily overloaded for everyone), 401 ``authentication_error``.

Answers a voter must not count (documented, and the inconvenient part of each API):

    OpenAI ``finish_reason`` is one of "stop", "length", "content_filter" ("content was
    omitted due to a flag from our content filters"), "tool_calls" (and the deprecated
    "function_call") (https://platform.openai.com/docs/api-reference/chat/object,
    ``openai/types/chat/chat_completion.py``). With structured output a model that
    declines answers ``content: null`` and puts its explanation in the assistant
    message's ``refusal`` field (https://platform.openai.com/docs/guides/structured-outputs
    section "Refusals"); a tool call comes as ``message.tool_calls``.

    Anthropic ``stop_reason`` is one of "end_turn", "max_tokens", "stop_sequence",
    "tool_use", "pause_turn", "refusal" (the model declined for safety reasons), and
    "model_context_window_exceeded" (the answer stopped at the context window, not at
    ``max_tokens``) (https://docs.anthropic.com/en/api/messages,
    https://platform.claude.com/docs/en/build-with-claude/handling-stop-reasons,
    ``anthropic/types/stop_reason.py``); ``content`` is a list of blocks, where a
    ``tool_use`` block (``{"type": "tool_use", "id", "name", "input"}``) may sit beside the
    text. Usage is ``input_tokens`` / ``output_tokens`` (plus the cache counts), and
    OpenAI's ``prompt_tokens`` / ``completion_tokens`` / ``total_tokens``: plain integers
    the provider reports, which a broken or hostile server may send negative or absurd.

Behaviour is scripted per request: each server has a queue of one-shot behaviours and a
default ``responder`` (a function of the decoded request) used when the queue is empty.
A behaviour can answer, delay, hang until released, fail with any documented error (a 429
with the ``Retry-After`` it is given, a 529 ``overloaded_error``), truncate
(``finish_reason: length`` / ``stop_reason: max_tokens``), return a body that is not JSON,
drop the connection, or (``Shaped``, see "answers that must not vote") answer in one of
the shapes above: a refusal, a filtered answer, a tool call beside the text, any finish or
stop reason (an unknown one too), an empty ``choices`` list; ``oversized`` builds an
answer far beyond any token limit and ``Reply``'s token counts can be anything.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

# --------------------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Reply:
    """A successful completion whose assistant text is ``text``."""

    text: str
    delay: float = 0.0
    truncated: bool = False  # finish_reason "length" / stop_reason "max_tokens"
    prompt_tokens: int | None = None  # default: a 4-chars-per-token estimate
    completion_tokens: int | None = None


@dataclass(frozen=True)
class Fail:
    """An API error with the documented body for this server's API."""

    status: int
    error_type: str | None = None  # default: the documented type for the status
    message: str | None = None
    delay: float = 0.0
    # The ``Retry-After`` header of a 429 (seconds, or an HTTP date); default "1".
    retry_after: str | None = None


@dataclass(frozen=True)
class Hang:
    """Accept the request and answer nothing until the server is released or closed."""

    max_seconds: float = 30.0


@dataclass(frozen=True)
class RawBody:
    """Status 200 with a body that is not what the API documents (e.g. not JSON)."""

    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without an HTTP response."""


Behaviour = Reply | Fail | Hang | RawBody | Disconnect
Responder = Callable[[dict[str, Any]], Behaviour]


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


def _estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


# --------------------------------------------------------------------------- server base


class _FakeServer:
    """A ThreadingHTTPServer in a daemon thread, with a script of behaviours."""

    api = "base"
    path = "/"

    def __init__(self, responder: Responder | None = None, *, api_key: str = "test-key",
                 model: str = "fake-model") -> None:
        self.responder: Responder = responder or (lambda _req: Reply('{"ok": true}'))
        self.api_key = api_key
        self.model = model
        self.script: deque[Behaviour] = deque()
        self.requests: list[SeenRequest] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._counter = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One buffered write per response and no Nagle delay: otherwise headers and
            # body go out as two segments and a delayed ACK adds ~40 ms per request.
            wbufsize = -1
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,),
                                        name=f"fake-{self.api}", daemon=True)

    # -- lifecycle

    def start(self) -> _FakeServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> _FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        raise NotImplementedError

    # -- scripting

    def reset(self, responder: Responder | None = None, *, api_key: str | None = None,
              ) -> None:
        """Forget the script and the seen requests (a module-scoped server between tests)."""
        with self._lock:
            self.script.clear()
            self.requests.clear()
            if responder is not None:
                self.responder = responder
            if api_key is not None:
                self.api_key = api_key

    def push(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self.script.extend(behaviours)

    def _next(self, body: dict[str, Any]) -> Behaviour:
        with self._lock:
            if self.script:
                return self.script.popleft()
        return self.responder(body)

    # -- request handling

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_error(h, 400, None, "request body is not valid JSON")
            return
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self._lock:
            self.requests.append(SeenRequest(h.path, headers, body))
            self._counter += 1
            n = self._counter
        if h.path.split("?")[0] != self.path:
            self._send_error(h, 404, None, f"unknown path {h.path}")
            return
        problem = self._check_request(headers, body)
        if problem is not None:
            status, message = problem
            self._send_error(h, status, None, message)
            return
        behaviour = self._next(body)
        if isinstance(behaviour, Hang):
            self.release.wait(behaviour.max_seconds)
            h.close_connection = True
            return
        if isinstance(behaviour, Disconnect):
            h.close_connection = True
            h.connection.close()
            return
        if isinstance(behaviour, RawBody):
            self._send(h, 200, behaviour.body, behaviour.content_type)
            return
        if behaviour.delay and self.release.wait(behaviour.delay):
            return  # released while delaying: the test is over
        if isinstance(behaviour, Fail):
            self._send_error(h, behaviour.status, behaviour.error_type, behaviour.message,
                             retry_after=behaviour.retry_after)
            return
        self._send(h, 200, json.dumps(self._completion(body, behaviour, n)).encode())

    def _send(self, h: BaseHTTPRequestHandler, status: int, payload: bytes,
              content_type: str = "application/json", extra: dict[str, str] | None = None,
              ) -> None:
        try:
            h.send_response(status)
            h.send_header("content-type", content_type)
            h.send_header("content-length", str(len(payload)))
            for k, v in (extra or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(payload)
            h.wfile.flush()
        except OSError:
            pass  # the client gave up (timeout): nothing to answer

    def _send_error(self, h: BaseHTTPRequestHandler, status: int, error_type: str | None,
                    message: str | None, retry_after: str | None = None) -> None:
        raise NotImplementedError

    def _check_request(self, headers: dict[str, str], body: dict[str, Any],
                       ) -> tuple[int, str] | None:
        raise NotImplementedError

    def _completion(self, body: dict[str, Any], reply: Reply, n: int) -> dict[str, Any]:
        raise NotImplementedError


def _prompt_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    system = body.get("system")
    if isinstance(system, str):
        parts.append(system)
    for m in body.get("messages", []):
        content = m.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return "\n".join(parts)


# --------------------------------------------------------------------------- OpenAI


class FakeOpenAIServer(_FakeServer):
    """``POST /v1/chat/completions`` as OpenAI, vLLM, llama.cpp and Ollama serve it."""

    api = "openai"
    path = "/v1/chat/completions"

    _DEFAULT_ERRORS: ClassVar[dict[int, tuple[str, str | None, str]]] = {
        400: ("invalid_request_error", None, "Invalid request."),
        401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
        429: ("requests", "rate_limit_exceeded",
              "Rate limit reached for requests. Please try again in 1s."),
        500: ("server_error", None, "The server had an error while processing your request. "
              "Sorry about that!"),
        503: ("server_error", None, "The engine is currently overloaded, please try again "
              "later."),
    }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _check_request(self, headers: dict[str, str], body: dict[str, Any],
                       ) -> tuple[int, str] | None:
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, "Incorrect API key provided."
        if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
            return 400, "'model' and 'messages' are required properties."
        fmt = body.get("response_format")
        if fmt is not None:
            ok = (fmt.get("type") == "json_schema"
                  and isinstance(fmt.get("json_schema", {}).get("schema"), dict)
                  and isinstance(fmt.get("json_schema", {}).get("name"), str))
            if not ok and fmt.get("type") not in ("json_object", "text"):
                return 400, "Invalid 'response_format'."
        return None

    def _send_error(self, h: BaseHTTPRequestHandler, status: int, error_type: str | None,
                    message: str | None, retry_after: str | None = None) -> None:
        d_type, d_code, d_msg = self._DEFAULT_ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None,
                     "Error."))
        payload = {"error": {"message": message or d_msg, "type": error_type or d_type,
                             "param": None, "code": d_code}}
        extra = {"x-request-id": f"req_{status}_{time.monotonic_ns()}"}
        if status == 429:
            extra["retry-after"] = retry_after or "1"
        self._send(h, status, json.dumps(payload).encode(), extra=extra)

    def _completion(self, body: dict[str, Any], reply: Reply, n: int) -> dict[str, Any]:
        prompt_tokens = reply.prompt_tokens or _estimate_tokens(_prompt_text(body))
        completion_tokens = reply.completion_tokens or _estimate_tokens(reply.text)
        payload = {
            "id": f"chatcmpl-fake{n}",
            "object": "chat.completion",
            "created": 1_700_000_000 + n,
            "model": body.get("model", self.model),
            "system_fingerprint": "fp_fake",
            "choices": [{
                "index": 0,
                "finish_reason": "length" if reply.truncated else "stop",
                "message": {"role": "assistant", "content": reply.text, "refusal": None},
                "logprobs": None,
            }],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        return shape_openai(payload, reply) if isinstance(reply, Shaped) else payload


# --------------------------------------------------------------------------- Anthropic


class FakeAnthropicServer(_FakeServer):
    """``POST /v1/messages`` as the Anthropic API serves it."""

    api = "anthropic"
    path = "/v1/messages"

    _DEFAULT_ERRORS: ClassVar[dict[int, tuple[str, str]]] = {
        400: ("invalid_request_error", "Invalid request."),
        401: ("authentication_error", "invalid x-api-key"),
        429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute "
              "rate limit."),
        500: ("api_error", "Internal server error"),
        529: ("overloaded_error", "Overloaded"),
    }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _check_request(self, headers: dict[str, str], body: dict[str, Any],
                       ) -> tuple[int, str] | None:
        # The API documents ``x-api-key``; anthropic SDK 2.x sends ``Authorization: Bearer``.
        if (headers.get("x-api-key") != self.api_key
                and headers.get("authorization") != f"Bearer {self.api_key}"):
            return 401, "invalid x-api-key"
        if "anthropic-version" not in headers:
            return 400, "anthropic-version: header is required"
        if not isinstance(body.get("max_tokens"), int):
            return 400, "max_tokens: Field required"
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return 400, "messages: Field required"
        cfg = body.get("output_config")
        if cfg is not None:
            fmt = cfg.get("format") or {}
            if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
                return 400, "output_config.format: invalid"
        return None

    def _send_error(self, h: BaseHTTPRequestHandler, status: int, error_type: str | None,
                    message: str | None, retry_after: str | None = None) -> None:
        d_type, d_msg = self._DEFAULT_ERRORS.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", "Error."))
        if status == 401:
            d_type = "authentication_error"
        request_id = f"req_fake{status}{time.monotonic_ns()}"
        payload = {"type": "error",
                   "error": {"type": error_type or d_type, "message": message or d_msg},
                   "request_id": request_id}
        extra = {"request-id": request_id}
        if status == 429:
            extra["retry-after"] = retry_after or "1"
        self._send(h, status, json.dumps(payload).encode(), extra=extra)

    def _completion(self, body: dict[str, Any], reply: Reply, n: int) -> dict[str, Any]:
        input_tokens = reply.prompt_tokens or _estimate_tokens(_prompt_text(body))
        output_tokens = reply.completion_tokens or _estimate_tokens(reply.text)
        payload = {
            "id": f"msg_fake{n:06d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", self.model),
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": "max_tokens" if reply.truncated else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        }
        return shape_anthropic(payload, reply) if isinstance(reply, Shaped) else payload


# ----------------------------------------------------------- answers that must not vote


@dataclass(frozen=True)
class Shaped(Reply):
    """A 200 answer in a documented shape that is not a usable vote (module docstring).

    ``finish`` is sent as the OpenAI ``finish_reason`` / Anthropic ``stop_reason`` (any
    string, an undocumented one too); ``refusal`` puts that text in OpenAI's
    ``message.refusal`` with ``content: null`` (``text`` is ignored there; on Anthropic it
    becomes the text block, as the API returns the model's explanation as text);
    ``tool_call`` adds a tool call beside the text (OpenAI ``message.tool_calls``,
    Anthropic a ``tool_use`` content block); ``no_choices`` answers ``"choices": []``.
    """

    finish: str | None = None
    refusal: str | None = None
    tool_call: bool = False
    no_choices: bool = False


_TOOL_INPUT = {"symbol": "EURUSD", "side": "buy", "lots": 100}


def shape_openai(payload: dict[str, Any], reply: Shaped) -> dict[str, Any]:
    if reply.no_choices:
        payload["choices"] = []
        return payload
    choice = payload["choices"][0]
    message = choice["message"]
    if reply.refusal is not None:
        message["content"] = None
        message["refusal"] = reply.refusal
    if reply.tool_call:
        message["tool_calls"] = [{"id": "call_fake1", "type": "function", "function": {
            "name": "place_order", "arguments": json.dumps(_TOOL_INPUT)}}]
    if reply.finish is not None:
        choice["finish_reason"] = reply.finish
    return payload


def shape_anthropic(payload: dict[str, Any], reply: Shaped) -> dict[str, Any]:
    if reply.refusal is not None:
        payload["content"] = [{"type": "text", "text": reply.refusal}]
    if reply.tool_call:
        payload["content"].append({"type": "tool_use", "id": "toolu_fake1",
                                   "name": "place_order", "input": dict(_TOOL_INPUT)})
    if reply.finish is not None:
        payload["stop_reason"] = reply.finish
    return payload


def oversized(chars: int = 2_000_000) -> Reply:
    """An answer far beyond any ``max_tokens`` the client asked for: a broken or hostile
    server, since a real API stops at the limit (``finish_reason: length``)."""
    return Reply('{"rationale": "' + "x" * chars + '"}', completion_tokens=chars // 4)


# --------------------------------------------------------------------------- responders

_JSON_BLOCK = re.compile(r"```json\s*(\{.*?\})\s*```", re.DOTALL)


def prompt_input(body: dict[str, Any]) -> dict[str, Any] | None:
    """The stage input JSON the prompt templates embed in a ```json block, if any."""
    m = _JSON_BLOCK.search(_prompt_text(body))
    if m is None:
        return None
    try:
        value = json.loads(m.group(1))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def research_answer(inp: dict[str, Any], *, agree: bool = True, confidence: float = 0.7,
                    tags: tuple[str, ...] = ("order_block_bullish",)) -> dict[str, Any]:
    """A well-formed research answer for the embedded input: the proposal's own levels."""
    p = inp["proposal"]
    direction = p["direction"] if agree else ("short" if p["direction"] == "long" else "long")
    if agree:
        entry, stop, target = p["entry"], p["stop"], p["target"]
    else:
        entry, stop, target = p["entry"], p["target"], p["stop"]
    return {"symbol": inp["symbol"], "direction": direction, "confidence": confidence,
            "entry": entry, "stop": stop, "target": target, "tags": list(tags),
            "rationale": f"{direction} from the order block retest"}


def stage_responder(*, agree: bool = True, confidence: float = 0.7) -> Responder:
    """A deterministic 'model' for every persona stage, reading the embedded input."""

    def respond(body: dict[str, Any]) -> Behaviour:
        inp = prompt_input(body)
        if inp is None:
            return Reply("I cannot find the input.")
        stage = inp.get("stage")
        if stage == "research":
            tags = (("order_block_bullish",) if inp["proposal"]["direction"] == "long"
                    else ("order_block_bearish",))
            return Reply(json.dumps(research_answer(inp, agree=agree, confidence=confidence,
                                                    tags=tags)))
        if stage == "risk":
            return Reply(json.dumps({"action": "approve", "size_factor": 1.0,
                                     "reason": "risk within limits"}))
        if stage == "execution":
            return Reply(json.dumps({"approve": True, "issues": [],
                                     "reason": "order consistent with the market"}))
        return Reply("unknown stage")

    return respond


def iter_requests(server: _FakeServer) -> Iterator[SeenRequest]:
    yield from list(server.requests)


# --------------------------------------------------------------------------- connection level
#
# Behaviours of the connection rather than of the answer, as real networks and overloaded
# servers produce them. Each is a ``Reply`` (so the scripted flow above answers it like
# one) whose bytes go out differently: ``_next`` notes it for the handler thread, ``_send``
# then writes the response its way.
#
# - ``Trickle``: the status line and headers at once, then the body a few bytes at a time
#   with a pause between, as a slow or congested stream does. httpx's timeouts are per
#   operation ("the read timeout is the maximum duration to wait for a chunk of data to be
#   received", https://www.python-httpx.org/advanced/timeouts/), so a chunk arriving
#   within each read timeout never times out however long the whole body takes.
# - ``Reset``: a TCP reset (RST, via ``SO_LINGER`` with a zero timeout, as in
#   https://man7.org/linux/man-pages/man7/socket.7.html) after the headers and part of the
#   body, or before any response: the client sees "connection reset by peer", never an
#   HTTP status.

import io as _io  # noqa: E402  (this section stays at the end of the file)
import os as _os  # noqa: E402
import socket as _socket  # noqa: E402
import struct as _struct  # noqa: E402


@dataclass(frozen=True)
class Trickle(Reply):
    """A valid completion whose body arrives ``chunk`` bytes every ``pause`` seconds."""

    chunk: int = 4
    pause: float = 0.1


@dataclass(frozen=True)
class Reset(Reply):
    """A TCP reset: after the headers and ``after_bytes`` of the body when ``headers``,
    else before any response."""

    headers: bool = True
    after_bytes: int = 16


_connection = threading.local()
_plain_next = _FakeServer._next
_plain_send = _FakeServer._send


def _next_noting_connection(self: _FakeServer, body: dict[str, Any]) -> Behaviour:
    behaviour = _plain_next(self, body)
    _connection.behaviour = behaviour if isinstance(behaviour, (Trickle, Reset)) else None
    if isinstance(behaviour, Reset) and not behaviour.headers:
        _connection.behaviour = None
        _reset_now(_connection_of(self))
        return Disconnect()
    return behaviour


def _connection_of(_server: _FakeServer) -> Any:
    return getattr(_connection, "handler", None)


def _reset_now(h: Any) -> None:
    """Close the handler's socket with a zero linger (an RST, not a FIN) now: ``detach``
    then ``os.close``, since the handler's buffered files would otherwise keep the socket
    open until the handler returns."""
    if h is None:
        return
    try:
        h.connection.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER,
                                _struct.pack("ii", 1, 0))
        _os.close(h.connection.detach())
    except OSError:
        pass
    _drop(h)


def _drop(h: Any) -> None:
    """The connection is gone: the handler's last flush and close go nowhere."""
    h.close_connection = True
    h.wfile = _io.BytesIO()
    h.rfile = _io.BytesIO()


def _send_by_connection(self: _FakeServer, h: BaseHTTPRequestHandler, status: int,
                        payload: bytes, content_type: str = "application/json",
                        extra: dict[str, str] | None = None) -> None:
    behaviour = getattr(_connection, "behaviour", None)
    _connection.behaviour = None
    if behaviour is None or status != 200:
        _plain_send(self, h, status, payload, content_type, extra)
        return
    try:
        h.send_response(status)
        h.send_header("content-type", content_type)
        h.send_header("content-length", str(len(payload)))
        h.end_headers()
        h.wfile.flush()
        if isinstance(behaviour, Reset):
            h.wfile.write(payload[:behaviour.after_bytes])
            h.wfile.flush()
            _reset_now(h)
            return
        for i in range(0, len(payload), behaviour.chunk):
            if self.release.wait(behaviour.pause):
                h.close_connection = True
                return  # released: the test is over
            h.wfile.write(payload[i:i + behaviour.chunk])
            h.wfile.flush()
    except OSError:
        _drop(h)  # the client gave up on the stream


def _handle_noting_handler(self: _FakeServer, h: BaseHTTPRequestHandler) -> None:
    _connection.handler = h
    try:
        _plain_handle(self, h)
    finally:
        _connection.handler = None
        _connection.behaviour = None


_plain_handle = _FakeServer._handle
_FakeServer._next = _next_noting_connection  # type: ignore[method-assign]
_FakeServer._send = _send_by_connection  # type: ignore[method-assign]
_FakeServer._handle = _handle_noting_handler  # type: ignore[method-assign]
