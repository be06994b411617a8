"""Live updates by server-sent events: ``GET /events`` streams one event per journal
topic that changed (approvals, orders, incidents, state, params, providers, bars), named
after the topic; ``static/console.js`` turns each into an htmx trigger (``dta:approvals``
on the body) and every fragment that shows that topic re-renders itself
(``hx-trigger="dta:approvals from:body"``).

The probe (``Journal.changes``: max ids and status counts) runs at most every
``PROBE_S`` whichever number of pages are open (one shared reading), so a write reaches an
open page within about ``PROBE_S`` plus a fragment's render.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from executor.console.web import Console, SignedIn, console_of

router = APIRouter()
PROBE_S = 0.2
HEARTBEAT_S = 15.0


class SharedMarks:
    """The newest change marks, read again only once they are ``PROBE_S`` old."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._lock = threading.Lock()
        self._at = 0.0
        self._marks: dict[str, Any] = {}

    def current(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= PROBE_S * 0.9:
                with self._console.journal() as j:
                    self._marks = j.changes.marks()
                self._at = now
            return self._marks


def shared_marks(console: Console) -> SharedMarks:
    marks = console.shared.get("marks")
    if not isinstance(marks, SharedMarks):
        marks = console.shared["marks"] = SharedMarks(console)
    return marks


async def _stream(request: Request, marks: SharedMarks) -> AsyncIterator[str]:
    last = await run_in_threadpool(marks.current)
    yield "retry: 1000\nevent: hello\ndata: {}\n\n"
    quiet = 0.0
    while not await request.is_disconnected():
        await asyncio.sleep(PROBE_S)
        now = await run_in_threadpool(marks.current)
        changed = [topic for topic, mark in now.items() if last.get(topic) != mark]
        last = now
        for topic in changed:
            yield f"event: {topic}\ndata: {topic}\n\n"
        quiet = 0.0 if changed else quiet + PROBE_S
        if quiet >= HEARTBEAT_S:  # keeps proxies and tunnels from closing an idle stream
            quiet = 0.0
            yield ": heartbeat\n\n"


@router.get("/events")
async def events(request: Request, _user: SignedIn) -> StreamingResponse:
    marks = shared_marks(console_of(request))
    return StreamingResponse(_stream(request, marks), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})
