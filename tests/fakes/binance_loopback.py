"""What Binance's REST APIs share, for the loopback fakes of spot (``binance_fake``) and
USD-M futures (``binance_usdm``): an HTTP server on 127.0.0.1, HMAC-SHA256 signed requests,
the klines generator, and scripted faults.

Binance signs spot and futures requests the same way ("Request security", SIGNED endpoints:
HMAC SHA256 of the total query string and body, ``X-MBX-APIKEY`` header; ``timestamp``
within ``recvWindow`` else -1021; a bad signature -1022; an unknown key -2015), and both
APIs answer errors with ``{"code": <negative>, "msg": ...}``
(developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security and
developers.binance.com/docs/derivatives/usds-margined-futures/general-info, "SIGNED
Endpoint Security"). Klines have the same twelve columns on both, oldest first, the last
one still forming ("Kline/Candlestick Data", spot ``GET /api/v3/klines``, USD-M
``GET /fapi/v1/klines``).

Faults (``script(method, path, *steps)``; each step applies to the next matching request):
``("delay", s)``, ``("drop",)`` (connection closed, request not processed),
``("accept_then_drop",)`` (processed, connection closed before the answer),
``("accept_then_sleep", s)`` (processed, answer late: the client times out),
``("reject", code, msg[, status])`` (Binance's JSON error body with HTTP ``status``, 400
unless given; 429 and 418 carry ``Retry-After`` as the "LIMITS" sections document),
``("http", status)`` (e.g. 503 with an HTML body), and what a subclass's ``route`` reads
from the step it is handed (``("partial", fraction)``, ``("timestamp",)``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MINUTE_MS = 60_000
INTERVALS = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "4h": 240,
             "6h": 360, "8h": 480, "12h": 720, "1d": 1440}


def fmt(x: float, places: int = 8) -> str:
    return f"{x:.{places}f}"


class LoopbackBinance:
    """The transport and the signed-request checks; ``route`` is the subclass's API."""

    thread_name = "fake-binance"

    def __init__(self, *, api_key: str, secret: str) -> None:
        self.api_key = api_key
        self.secret = secret
        self.symbols: dict[str, dict[str, Any]] = {}
        self.time_offset_ms = 0
        self.clock: Callable[[], float] = time.time
        self.requests: list[tuple[str, str]] = []
        self.faults: dict[tuple[str, str], deque[tuple[Any, ...]]] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def route(self, method: str, path: str, q: dict[str, str], raw: str,
              headers: Any, step: tuple[Any, ...] | None) -> tuple[int, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Any:
        fake = self

        class Handler(_Handler):
            exchange = fake

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name=self.thread_name)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ shared helpers

    def now_ms(self) -> int:
        return int(self.clock() * 1000) + self.time_offset_ms

    def script(self, method: str, path: str, *steps: tuple[Any, ...]) -> None:
        self.faults.setdefault((method.upper(), path), deque()).extend(steps)

    def refusal(self, q: dict[str, str], raw: str, headers: Any,
                step: tuple[Any, ...] | None) -> tuple[int, Any] | None:
        """What a SIGNED endpoint answers before doing anything: key, signature and
        timestamp checks, or a scripted ``("timestamp",)`` -1021."""
        problem = self._verify(q, raw, headers)
        if problem is None and step is not None and step[0] == "timestamp":
            problem = 400, {"code": -1021,
                            "msg": "Timestamp for this request is outside of the recvWindow."}
        return problem

    def _verify(self, q: dict[str, str], raw: str, headers: Any) -> tuple[int, Any] | None:
        if headers.get("X-MBX-APIKEY") != self.api_key:
            return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        signed, _, signature = raw.rpartition("&signature=")
        expected = hmac.new(self.secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            return 400, {"code": -1022, "msg": "Signature for this request is not valid."}
        ts = int(q.get("timestamp", "0"))
        window = int(q.get("recvWindow", "5000"))
        now = self.now_ms()
        if ts > now + 1000 or now - ts > window:
            return 400, {"code": -1021,
                         "msg": "Timestamp for this request is outside of the recvWindow."}
        return None


    def kline(self, sid: str, open_ms: int, minutes: int) -> list[Any]:
        """A deterministic candle for any open time; prices drift around the symbol's."""
        base = self.symbols[sid]["price"]
        k = open_ms // (minutes * MINUTE_MS)
        o = base * (1 + 0.001 * ((k % 11) - 5) / 5)
        c = base * (1 + 0.001 * (((k + 3) % 11) - 5) / 5)
        h, lo = max(o, c) * 1.0005, min(o, c) * 0.9995
        close_ms = open_ms + minutes * MINUTE_MS - 1
        return [open_ms, fmt(o, 2), fmt(h, 2), fmt(lo, 2), fmt(c, 2), fmt(1.5 + k % 7),
                close_ms, fmt(o * 1.5, 2), 100 + k % 50, fmt(0.7), fmt(o * 0.7, 2), "0"]

    def klines(self, q: dict[str, str]) -> tuple[int, Any]:
        sid = q.get("symbol", "")
        if sid not in self.symbols:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        minutes = INTERVALS.get(q.get("interval", ""))
        if minutes is None:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        limit = min(int(q.get("limit", 500)), 1000)
        step = minutes * MINUTE_MS
        now = self.now_ms()
        current_open = now - now % step  # the forming candle
        end = min(int(q["endTime"]), now) if "endTime" in q else now
        if "startTime" in q:
            start = int(q["startTime"])
            first = start + (-start) % step
            opens = [t for t in range(first, end + 1, step)][:limit]
        else:
            last = min(current_open, end - end % step)
            opens = [last - i * step for i in range(limit)][::-1]
        return 200, [self.kline(sid, t, minutes) for t in opens if t <= current_open]



def find_order(orders: list[dict[str, Any]], q: dict[str, str]) -> dict[str, Any] | None:
    """The newest order of ``q["symbol"]`` named by ``orderId`` or ``origClientOrderId``
    (spot and USD-M "Query Order" take the same two)."""
    for o in reversed(orders):
        if o["symbol"] != q.get("symbol"):
            continue
        if "orderId" in q and str(o["orderId"]) == q["orderId"]:
            return o
        if "origClientOrderId" in q and o["clientOrderId"] == q["origClientOrderId"]:
            return o
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that vanished mid-request (a killed child, a timeout) is routine."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    exchange: LoopbackBinance
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self, method: str) -> None:
        ex = self.exchange
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        raw = body if method in ("POST", "PUT") and body else parts.query
        q = dict(parse_qsl(raw, keep_blank_values=True))
        if parts.query and raw is body:
            q = {**dict(parse_qsl(parts.query)), **q}
        ex.requests.append((method, parts.path))
        queue = ex.faults.get((method, parts.path))
        step = queue.popleft() if queue else None
        kind = step[0] if step else None
        if kind == "delay":
            time.sleep(step[1])  # type: ignore[index]
        if kind == "drop":
            self._drop()
            return
        if kind == "http":
            self._send(step[1], "<html><body>Service Unavailable</body></html>",  # type: ignore[index]
                       content_type="text/html")
            return
        if kind == "reject":
            status = step[3] if len(step) > 3 else 400  # type: ignore[arg-type]
            headers = {"Retry-After": "1"} if status in (418, 429) else {}
            self._send(status, json.dumps({"code": step[1], "msg": step[2]}),  # type: ignore[index]
                       headers=headers)
            return
        status, payload = ex.route(method, parts.path, q, raw, self.headers, step)
        if kind == "accept_then_drop":
            self._drop()
            return
        if kind == "accept_then_sleep":
            time.sleep(step[1])  # type: ignore[index]
        self._send(status, json.dumps(payload))

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, status: int, text: str, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        data = text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PUT(self) -> None:
        self._handle("PUT")
