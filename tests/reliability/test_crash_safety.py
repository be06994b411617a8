"""Crash safety: a child process (crash_child.py) submits live orders through the
OrderRouter and is SIGKILLed 50 times at random points: at start-up while it resolves what
the previous life left, between journal commit and the request, while the request is in
flight (some delayed), and right after the venue accepted an order but before the answer
left. Every combination of
- venue (crash_venues.py, crash_swap_venue.py; each runs in this process, on 127.0.0.1):
  the real ``ccxt.binance`` client against the spot fake; the real MT5 rpyc client against
  our bridge serving the fake MetaTrader5 module; the real ``ccxt.binanceusdm`` client
  against the USD-M fake, where every entry gets its stop and target at the exchange
  (conditional orders placed by the engine after the entry filled: kills land between an
  entry and its exits too, and on the conditional order endpoint), and the price moves
  now and then so exits fire while a life runs or none does; and (``spot-protect``,
  crash_spot_venue.py) ``ccxt.binance`` against the spot fake with each long's stop and
  target as one OCO the engine places, kills on the order-list endpoint too;
- journal: a SQLite file, or PostgreSQL when DTA_TEST_DATABASE_URL is set (the
  ``journal_url`` fixture of tests/conftest.py),
must end, after a final clean life, with:
- zero duplicates: no client order id placed twice at the venue (MT5 carries the id in the
  order comment; on the swap, no ``clientAlgoId`` twice either);
- zero lost: every venue order (and every MT5 deal) is journaled, every journaled order
  that claims to be at the venue is there exactly once with the same ticket and volume,
  and every other one was provably never placed (declared lost after the resolver's grace,
  which exceeds the recvWindow after which Binance refuses a request, and the fake
  terminal's few milliseconds between a request's arrival and its execution);
- nothing left ``submitting`` or ``unknown``;
- on the swap and spot-protect, zero positions without a stop: at every life's start (the
  life waits for the test after start-up) and at the end, an open position has exactly
  one stop and at most one target at the exchange (on spot: one OCO of ours), a flat one
  (or dust) none; every trade journaled as a fill (a fired leg's as its entry's exit), the
  journal's position the exchange's.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from crash_spot_venue import SpotProtectVenue
from crash_swap_venue import SwapVenue
from crash_venues import ACCOUNT, KILLS, BinanceVenue, Mt5Venue, Venue, journaled_orders

from executor.journal.store import Journal

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).resolve().parent / "crash_child.py"
VENUES: dict[str, Callable[[], Venue]] = {"ccxt": BinanceVenue, "mt5": Mt5Venue,
                                          "swap": SwapVenue,
                                          "spot-protect": SpotProtectVenue}


# --------------------------------------------------------------------------- lives


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
        kind, _, _ = self.events.get(timeout=60)
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

    def reset(self) -> None:
        """Forget the lives of an earlier test (pids can be reused)."""
        self.exited.clear()
        self.errors.clear()
        while not self.events.empty():
            self.events.get_nowait()

    def spawn(self, **args: Any) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"spawn {json.dumps(args)}\n".encode())
        self.proc.stdin.flush()
        pid = self.wait_for("pid", None, 30)
        assert pid is not None, "the zygote did not fork"
        return pid

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

    def wait_exit(self, pid: int, timeout: float) -> int | None:
        """The life's exit code; ``None`` if it died without one or is still running."""
        deadline = time.monotonic() + timeout
        while pid not in self.exited and alive(pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # the reader thread may still be on the exit line
        return self.exited.get(pid)

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


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    """One zygote for every variant: lives are venue- and journal-agnostic until forked."""
    with (tmp_path_factory.mktemp("crash") / "zygote.log").open("wb") as stderr:
        z = Zygote(stderr)
        yield z
        z.close()


# --------------------------------------------------------------------------- the test


def kill_first_life(venue_name: str, venue: Venue, url: str, stderr: Any) -> None:
    """Life 0 is the program itself, exec'd, killed the moment its first order is accepted."""
    proc = subprocess.Popen([sys.executable, str(CHILD), "run", "--venue", venue_name,
                             "--port", str(venue.port), "--journal", url, "--account",
                             ACCOUNT, "--orders", str(venue.cycles)],
                            stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT)
    venue.set_on_order(lambda: os.kill(proc.pid, signal.SIGKILL))
    try:
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        venue.set_on_order(None)
        kill(proc.pid)


def kill_lives(zygote: Zygote, venue: Venue, args: dict[str, Any],
               rng: random.Random, kills: dict[str, int]) -> int:
    """Spawn and SIGKILL lives until ``KILLS`` kills landed; returns the lives spawned."""
    lives = 0
    while sum(kills.values()) < KILLS:
        lives += 1
        assert lives < 3 * KILLS, f"kills are not landing: {kills}"
        venue.stir(rng)  # (the swap: a price move while no life runs, now and then)
        if rng.random() < 0.3:  # slow the next request down: a wider in-flight window
            venue.delay_next_send(rng.uniform(0.005, 0.05))
        mode = rng.choice(["startup", "timer", "timer", "after_accept", "after_accept"])
        target: dict[str, int] = {}
        if mode == "after_accept":
            countdown = [rng.randint(1, 3)]

            def hook(c: list[int] = countdown, t: dict[str, int] = target) -> bool:
                c[0] -= 1
                # (an order may be accepted before spawn() told us the pid: kill at the
                # next one then, rather than let the life run to the end)
                if c[0] <= 0 and "pid" in t and "killed" not in t:
                    t["killed"] = 1
                    os.kill(t["pid"], signal.SIGKILL)  # accepted, answer not sent
                    return True
                return False

            venue.set_on_order(hook)
        pid = zygote.spawn(**args)
        target["pid"] = pid
        if mode == "startup":
            time.sleep(rng.uniform(0.0, 0.04))
        elif zygote.wait_for("ready", pid, 30) == pid:
            venue.at_ready(pid, args["journal_url"])
            if mode == "timer":
                venue.during(rng.uniform(0.0, 0.08), rng)
            else:
                deadline = time.monotonic() + 10
                while alive(pid) and pid not in zygote.exited \
                        and time.monotonic() < deadline:
                    time.sleep(0.002)
        counted = kill(pid) or (mode == "after_accept" and pid not in zygote.exited)
        venue.set_on_order(None)
        if counted:
            kills[mode] = kills.get(mode, 0) + 1
        if zygote.errors:
            venue.diagnose(args["journal_url"])
        assert not zygote.errors, zygote.errors
    return lives


def final_life(zygote: Zygote, venue: Venue, args: dict[str, Any]) -> None:
    """The last life runs to the end and waits out the grace: nothing stays in doubt."""
    last = zygote.spawn(**{**args, "settle": True})
    for point in ("ready", "settled") if venue.handshake else ():
        if zygote.wait_for(point, last, 60) != last:
            venue.diagnose(args["journal_url"])
            raise AssertionError(f"the final life never got {point}: {zygote.errors}")
        venue.at_ready(last, args["journal_url"], settled=point == "settled")
    if zygote.wait_exit(last, 300) != 0:
        venue.diagnose(args["journal_url"])
        raise AssertionError(f"the final life failed: {zygote.errors}")


@pytest.mark.slow
@pytest.mark.parametrize("venue_name", ["ccxt", "mt5", "swap", "spot-protect"])
def test_sigkill_at_random_points_loses_and_duplicates_nothing(
        venue_name: str, journal_url: str, zygote: Zygote, tmp_path: Path) -> None:
    rng = random.Random(f"{venue_name}-5050")
    url = journal_url
    Journal.open(url).close()  # migrated once, up front
    zygote.reset()
    venue = VENUES[venue_name]()
    args = dict(venue=venue_name, port=venue.port, journal_url=url, account=ACCOUNT,
                orders=venue.cycles, settle=False, migrate=False, handshake=venue.handshake)
    kills: dict[str, int] = {}
    started = time.monotonic()
    try:
        with (tmp_path / "child.log").open("wb") as stderr:
            kill_first_life(venue_name, venue, url, stderr)
        kills["after_accept"] = 1
        lives = 1 + kill_lives(zygote, venue, args, rng, kills)
        assert sum(kills.values()) == KILLS and len(kills) == 3
        reached = sum(1 for o in journaled_orders(url) if o.protective_kind is None)
        assert reached < venue.cycles  # every kill landed while orders were going out
        final_life(zygote, venue, args)
    finally:
        venue.set_on_order(None)
        venue.close()

    report = venue.verify(url)
    elapsed = time.monotonic() - started
    print(f"\n{venue_name} on {url.split(':')[0]}: {KILLS} kills {kills} over {lives} lives, "
          f"{reached} orders journaled before the final life, {report}, {elapsed:.1f}s")
    # Bounded in time, generously: the machine running the suite may be loaded.
    assert elapsed < 150 * max(1, KILLS // 50)
