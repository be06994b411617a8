"""A webhook on 127.0.0.1 that apprise's ``json://`` and ``form://`` destinations post to.

Apprise's Custom JSON notification (https://github.com/caronc/apprise/wiki/Notify_Custom_JSON,
https://appriseit.com/services/json/; ``apprise/plugins/custom_json.py``) sends
``POST {path}`` with ``Content-Type: application/json`` and the body::

    {"version": "1.0", "title": "...", "message": "...", "attachments": [],
     "type": "info" | "success" | "warning" | "failure"}

and counts any 2xx answer as delivered, anything else (or no answer within its socket
read timeout) as a failure. ``json://user:password@host`` adds HTTP basic auth. The Custom
Form destination (https://github.com/caronc/apprise/wiki/Notify_Custom_Form,
``custom_form.py``) posts the same fields form-encoded (``multipart/form-data`` when
there are attachments).

``failures``: answer HTTP 500 to that many posts first; ``hang``: never answer (the
handler waits until the receiver closes), as a stuck endpoint does.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AppriseReceiver:
    def __init__(self, *, failures: int = 0, delay: float = 0.0, hang: bool = False) -> None:
        self.posts: list[dict[str, Any]] = []  # every body received, accepted or not
        self.accepted: list[dict[str, Any]] = []  # the bodies answered 200
        self.paths: list[str] = []
        self.released = threading.Event()
        self.received = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = outer._read(self)
                with outer.received:
                    outer.posts.append(body)
                    outer.paths.append(self.path)
                    failing = len(outer.posts) <= failures
                    outer.received.notify_all()
                if hang:
                    outer.released.wait(60)
                    return
                if delay:
                    outer.released.wait(delay)
                if not failing:
                    with outer.received:
                        outer.accepted.append(body)
                        outer.received.notify_all()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, scheme: str = "json", path: str = "/hooks/T000/B000/tok3nSECRETvalue") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    @staticmethod
    def _read(handler: BaseHTTPRequestHandler) -> dict[str, Any]:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        kind = handler.headers.get("Content-Type", "")
        if kind.startswith("application/json"):
            return dict(json.loads(raw))
        if kind.startswith("application/x-www-form-urlencoded"):
            from urllib.parse import parse_qsl

            return dict(parse_qsl(raw.decode()))
        if kind.startswith("multipart/form-data"):
            from email.parser import BytesParser
            from email.policy import HTTP

            msg = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {kind}\r\n\r\n".encode() + raw)
            return {part.get_param("name", header="content-disposition"):
                    part.get_content() for part in msg.iter_parts()}
        return {"raw": raw.decode(errors="replace")}

    def wait_for(self, count: int, timeout: float = 10.0, *, accepted: bool = True) -> bool:
        """Until ``count`` bodies were accepted (or posted), or ``timeout``."""
        with self.received:
            return self.received.wait_for(
                lambda: len(self.accepted if accepted else self.posts) >= count, timeout)

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> AppriseReceiver:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
