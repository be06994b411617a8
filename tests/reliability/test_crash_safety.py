"""Crash safety: a child process (tests/crash_child.py) submits live orders through the
OrderRouter (SQLite journal file, real ccxt.binance against the fake exchange running in
this process) and is SIGKILLed 50 times at random points: at start-up while it resolves
what the previous life left, between journal commit and the HTTP request, while the
request is in flight (some delayed), and right after the exchange accepted an order but
before the answer left. After a final clean life:
- zero duplicates: no client order id exists twice on the exchange;
- zero lost: every exchange order is in the journal, every journaled order that claims to
  be at the exchange is there exactly once, and every other one was provably never placed
  (declared lost after the resolver's grace, which exceeds the recvWindow after which the
  exchange refuses a request);
- nothing left ``submitting`` or ``unknown``.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fakes.binance_fake import FakeBinance

from executor.journal.store import Journal
from strategies.domain import OrderState

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "crash_child.py"
ACCOUNT = "crash-acct"
# `make soak` sets DTA_SOAK_KILLS=500; the suite runs 50 (bounded in time).
KILLS = int(os.environ.get("DTA_SOAK_KILLS", "50"))
ORDERS = max(160, KILLS * 16 // 5)


class Zygote:
    """``crash_child.py zygote``: forks pre-imported lives on request."""

    def __init__(self, stderr: Any) -> None:
        self.proc = subprocess.Popen([sys.executable, str(CHILD), "zygote"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr, cwd=ROOT)
        self.events: queue.Queue[tuple[str, int, str]] = queue.Queue()
        self.exited: dict[int, int] = {}
        self.errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        kind, _, _ = self.events.get(timeout=30)
        assert kind == "zygote"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            words = raw.decode(errors="replace").split(maxsplit=2)
            if len(words) >= 2 and words[1].isdigit():
                kind, pid, rest = words[0], int(words[1]), words[2] if len(words) > 2 else ""
                if kind == "exit":
                    self.exited[pid] = int(rest.split()[0])
                if kind == "error":
                    self.errors.append(rest)
                self.events.put((kind, pid, rest))

    def spawn(self, **args: Any) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"spawn {json.dumps(args)}\n".encode())
        self.proc.stdin.flush()
        return self.wait_for("pid", None, 10)  # type: ignore[return-value]

    def wait_for(self, kind: str, pid: int | None, timeout: float) -> int | None:
        """The pid once it printed ``kind``; ``None`` on timeout, exit or death."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                k, p, _ = self.events.get(timeout=0.02)
            except queue.Empty:
                if pid is not None and not alive(pid):
                    return None
                continue
            if k == kind and (pid is None or p == pid):
                return p
            if pid is not None and p == pid and k == "exit":
                return None
        return None

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def kill(pid: int) -> bool:
    """SIGKILL; True if it was still running (a kill that counts)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.002)
    return True


@pytest.mark.slow
def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(5_0_50)
    url = f"sqlite:///{tmp_path / 'journal.sqlite'}"
    Journal.open(url).close()  # migrated once, up front
    stderr = (tmp_path / "child.log").open("wb")
    fake = FakeBinance().start()
    args = dict(port=fake.port, journal_url=url, account=ACCOUNT, orders=ORDERS,
                settle=False, migrate=False)
    kills: dict[str, int] = {}
    started = time.monotonic()
    try:
        # Life 0 is the program itself, exec'd, killed the moment its first order is accepted.
        proc = subprocess.Popen([sys.executable, str(CHILD), "run", "--port", str(fake.port),
                                 "--journal", url, "--account", ACCOUNT, "--orders",
                                 str(ORDERS)], stdout=subprocess.DEVNULL, stderr=stderr)
        fake.on_order = lambda _o: os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        fake.on_order = None
        kills["after_accept"] = 1

        zygote = Zygote(stderr)
        lives = 0
        while sum(kills.values()) < KILLS:
            lives += 1
            assert lives < 3 * KILLS, f"kills are not landing: {kills}"
            if rng.random() < 0.3:  # slow the next request down: a wider in-flight window
                fake.script("POST", "/api/v3/order", ("delay", rng.uniform(0.005, 0.05)))
            mode = rng.choice(["startup", "timer", "timer", "after_accept", "after_accept"])
            target: dict[str, int] = {}
            if mode == "after_accept":
                countdown = [rng.randint(1, 3)]

                def hook(_order: dict[str, Any], c: list[int] = countdown,
                         t: dict[str, int] = target) -> None:
                    c[0] -= 1
                    if c[0] == 0 and "pid" in t:
                        os.kill(t["pid"], signal.SIGKILL)  # accepted, answer not sent

                fake.on_order = hook
            pid = zygote.spawn(**args)
            target["pid"] = pid
            if mode == "startup":
                time.sleep(rng.uniform(0.0, 0.04))
            elif zygote.wait_for("ready", pid, 20) == pid:
                if mode == "timer":
                    time.sleep(rng.uniform(0.0, 0.08))
                else:
                    deadline = time.monotonic() + 5
                    while alive(pid) and pid not in zygote.exited \
                            and time.monotonic() < deadline:
                        time.sleep(0.002)
            counted = kill(pid) or (mode == "after_accept" and pid not in zygote.exited)
            fake.on_order = None
            if counted:
                kills[mode] = kills.get(mode, 0) + 1
            assert not zygote.errors, zygote.errors
        assert sum(kills.values()) == KILLS and len(kills) == 3
        placed_before_final = len(fake.orders)
        assert placed_before_final < ORDERS  # every kill landed while orders were going out

        # The last life runs to the end and waits out the grace: nothing stays in doubt.
        last = zygote.spawn(**{**args, "settle": True})
        deadline = time.monotonic() + 60
        while last not in zygote.exited and alive(last) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert zygote.exited.get(last) == 0, zygote.errors
        zygote.close()
    finally:
        fake.on_order = None
        stderr.close()
        fake.stop()

    journal = Journal.open(url)
    try:
        orders = journal.orders(ACCOUNT)
        journaled = {o.client_order_id for o in orders}
        assert len(orders) == len(journaled) == ORDERS
        by_id: dict[str, list[dict[str, Any]]] = {}
        for eo in fake.orders:
            by_id.setdefault(eo["clientOrderId"], []).append(eo)
        # zero duplicates
        assert {c: len(v) for c, v in by_id.items() if len(v) > 1} == {}
        # zero lost: every exchange order is journaled ...
        assert set(by_id) <= journaled
        lost = 0
        for o in orders:
            assert o.state not in (OrderState.SUBMITTING, OrderState.UNKNOWN)
            placed = by_id.get(o.client_order_id, [])
            if o.state is OrderState.FILLED:
                # ... and every journaled fill is the one exchange order with that id
                [eo] = placed
                assert o.broker_order_id == str(eo["orderId"])
                assert o.filled_volume == pytest.approx(float(eo["executedQty"]))
            else:
                assert o.state is OrderState.REJECTED and o.reason.startswith("lost:"), o
                assert placed == []  # declared lost only when it provably never landed
                lost += 1
        elapsed = time.monotonic() - started
        print(f"\n{KILLS} kills {kills} over {lives} lives, {placed_before_final} orders "
              f"placed before the final life, {len(fake.orders)} in all, {lost} never "
              f"placed (journaled lost), {elapsed:.1f}s")
        assert elapsed < 60 * max(1, KILLS // 50)
    finally:
        journal.close()
