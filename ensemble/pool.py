"""The ensemble's worker pool: a small thread pool whose workers are daemon threads.

Why not ``concurrent.futures.ThreadPoolExecutor``: Python joins every one of its worker
threads at interpreter exit (``concurrent.futures.thread`` registers an exit hook), even
after ``shutdown(wait=False)``. An LLM call the ensemble has abandoned (its decision
stopped waiting at the deadline) may still be blocked in its SDK: sleeping out a
``Retry-After`` (the anthropic SDK sleeps whatever the server asks, the openai SDK up to
two minutes), or reading a slow socket. With a ``ThreadPoolExecutor`` that call kept the
daemon process alive after ``stop``; here the process exits at once and the abandoned
call dies with it. Nothing is lost: an abandoned call's answer never counts, and a late
one is telemetry only.

Semantics used by ``Ensemble`` are the executor's: ``submit`` returns a
``concurrent.futures.Future`` (so ``wait``, ``cancel`` of a queued call and done callbacks
work as before), at most ``max_workers`` threads, started on demand and reused, and
``shutdown(wait=False, cancel_futures=True)`` cancels what has not started.
``free_workers`` says how many calls submitted now would all start at once.

``abandon``: a call its decision stopped waiting for gives up its place. Its thread runs
it to the end (a Python thread cannot be stopped from outside; the call's own budget,
``call_budget.py``, ends it at the decision's deadline plus the late grace) and then
exits, and a new thread may start in its place at once: calls abandoned by one decision
never leave the next one without workers for its healthy providers, which used to queue
behind them and time out without ever being sent. At most ``max_abandoned`` run at once
(beyond that a call keeps its place), so a bug that left calls unbounded could not grow
threads without end.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_WorkItem = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class DaemonThreadPool:
    def __init__(self, max_workers: int, thread_name_prefix: str = "pool",
                 max_abandoned: int | None = None) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.max_workers = max_workers
        self.max_abandoned = 4 * max_workers if max_abandoned is None else max_abandoned
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # released by a worker waiting for work
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False
        self._pending = 0  # submitted and not finished: queued or running (not abandoned)
        self._workers = 0  # threads serving the queue (abandoned ones not counted)
        self._running: dict[Future[Any], bool] = {}  # started, not finished: abandoned?
        self._started = 0  # threads ever started (names)

    @property
    def abandoned(self) -> int:
        """Abandoned calls still running."""
        with self._lock:
            return sum(self._running.values())

    def free_workers(self) -> int:
        """How many calls submitted now would each get a worker at once (an idle one or a
        new thread) instead of queueing: ``max_workers`` minus the calls queued or running
        (abandoned calls still running included)."""
        with self._lock:
            return max(self.max_workers - self._pending, 0)

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            future: Future[T] = Future()
            self._pending += 1
            self._queue.put((future, fn, args))
            if not self._idle.acquire(blocking=False) and self._workers < self.max_workers:
                t = threading.Thread(target=self._work, daemon=True,
                                     name=f"{self._prefix}_{self._started}")
                self._started += 1
                self._workers += 1
                t.start()
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
            return future

    def abandon(self, future: Future[Any]) -> bool:
        """Nobody waits for ``future`` any more: if it is running, its thread leaves the
        pool once it is done and its place is free now. False if it is not running (never
        started, or already finished) or ``max_abandoned`` calls already are."""
        with self._lock:
            if self._running.get(future) is not False:
                return False
            if sum(self._running.values()) >= self.max_abandoned:
                return False
            self._running[future] = True
            self._pending -= 1
            self._workers -= 1
            return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls. ``cancel_futures``: calls not started yet are cancelled (never
        run). ``wait``: join the workers (calls in flight finish first); without it, calls
        in flight are abandoned and, being on daemon threads, never delay process exit."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
                        self._pending -= 1
            self._queue.put(None)  # each worker passes it on, then exits
            threads = list(self._threads)
        if wait:
            for t in threads:
                t.join()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.put(None)
                return
            future, fn, args = item
            del item
            if future.set_running_or_notify_cancel():
                with self._lock:
                    self._running[future] = False
                try:
                    result = fn(*args)
                except BaseException as exc:  # handed to the caller through the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            with self._lock:
                if self._running.pop(future, False):
                    return  # abandoned: another thread has taken this one's place
                self._pending -= 1
            del future, fn, args
            self._idle.release()
