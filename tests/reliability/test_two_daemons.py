"""Two daemons on one account: exactly one trades.

Real `dta run --mode live` processes (the CLI the operators run: ``runbooks.cli.main``,
started through this file so that the test strategy ``AlwaysLong`` of
tests/support/doubles.py is registered first), all on the same account, the same journal
(SQLite, or PostgreSQL when DTA_TEST_DATABASE_URL is set) and the same loopback exchange:
the real ``ccxt.binance`` client against tests/fakes/binance_fake.py, run by this test on
127.0.0.1. Each process signs with its own API key (same secret, same account), so the
exchange can tell which process sent what. The journal starts as an earlier life of the
daemon left it: cleared for live, with the bars up to a few minutes ago.

1. A takes the lease and is READY (sd_notify); B, started while A runs, exits 5 with the
   lease error naming the account and the holder (A's pid, or PostgreSQL's advisory lock),
   before it reaches the exchange or opens a run in the journal.
2. A trades at its first bar close: the exchange accepts the order and the answer is lost
   (connection dropped), so A's journal holds it ``unknown``: an order in doubt across both
   hand-overs that follow. A is stopped with SIGTERM (exit 0).
3. C takes over (the lease is free after the graceful stop) and, at start-up, asks the
   exchange about that order; it is SIGKILLed while the question is in flight, holding the
   lease.
4. D takes over (the kernel or PostgreSQL freed the lease with C), settles the order by
   lookup, protects the long it finds (one sell OCO: its stop and target) and is READY;
   SIGTERM.
At the exchange: one order, placed once, by A; none sent by B or C; D's OCO only.

Timing: the live scheduler fires at every bar close (1m bars) plus the settle delay, so each
daemon gets the settle delay that puts its first tick where the test wants it: A's a few
seconds after start, C's and D's far past the moment they are stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.binance_fake import MINUTE_MS, FakeBinance, _fmt
from support.builders import a_bar
from support.doubles import AlwaysLong, NotifySocket

from domain import OrderState
from executor.journal.store import Journal
from executor.lease import advisory_key

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
ACCOUNT = "twin-acct"
SECRET = "twin-secret"
EXIT_REFUSED = 5  # runbooks/common.py
A_FIRST_TICK = 8.0  # seconds from A's start to its first bar-close tick (start-up ~2-3 s)
IDLE_TICK = 45.0  # C and D: a tick this far away never comes before they are stopped
WAIT = 60.0  # for a process to be READY or to exit


class KeyedExchange(FakeBinance):
    """The fake exchange, one account, with one API key per daemon (all with the same
    secret): every signed request is recorded with the key that signed it."""

    def __init__(self, keys: list[str]) -> None:
        # BTC neither daemon bought: the strategy sells, and this test judges who sends.
        super().__init__(api_key=keys[0], secret=SECRET,
                         balances={"USDT": 1_000_000.0, "BTC": 10.0})
        self.keys = frozenset(keys)
        self.signed: list[tuple[str, str, str, str]] = []  # key, method, path, client id
        # Run on each signed request, before it is processed.
        self.on_signed: Callable[[str, str, str], None] | None = None
        self._local = threading.local()

    def kline(self, sid: str, open_ms: int, minutes: int) -> list[Any]:
        """A steady rise, one cent a candle: momentum (and ``AlwaysLong`` with it) says
        long at every bar, so A's first tick buys whatever the minute. With the default
        candles' 11-minute cycle, a falling minute made it a sell, which a spot account
        holding none of our BTC refuses (the ``no_shorts`` check), so A sent nothing. The
        rise ends at the last price, so the long's OCO (1 % around the close) is valid."""
        row = super().kline(sid, open_ms, minutes)
        step = minutes * MINUTE_MS
        o = self.symbols[sid]["price"] + 0.01 * (open_ms // step - self.now_ms() // step)
        c = o + 0.005
        return [row[0], _fmt(o, 3), _fmt(c + 0.002, 3), _fmt(o - 0.002, 3), _fmt(c, 3),
                *row[5:]]

    def route(self, method: str, path: str, q: dict[str, str], raw: str, headers: Any,
              step: tuple[Any, ...] | None) -> tuple[int, Any]:
        self._local.method, self._local.path = method, path
        return super().route(method, path, q, raw, headers, step)

    def _verify(self, q: dict[str, str], raw: str, headers: Any) -> tuple[int, Any] | None:
        key = headers.get("X-MBX-APIKEY")
        if key not in self.keys:
            return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        self.signed.append((key, self._local.method, self._local.path,
                            q.get("newClientOrderId") or q.get("origClientOrderId") or ""))
        if self.on_signed is not None:
            self.on_signed(key, self._local.method, self._local.path)
        return super()._verify(q, raw, {"X-MBX-APIKEY": self.api_key})

    def sent_by(self, key: str) -> list[str]:
        """Client ids of the orders ``key`` sent (POST /api/v3/order)."""
        return [c for k, m, p, c in self.signed
                if k == key and (m, p) == ("POST", "/api/v3/order")]


def config_toml(path: Path, exchange: FakeBinance) -> Path:
    """A live ccxt daemon on 1m bars, like tests/integration/test_live_wiring.py's: stale catch-up
    bars are vetoed, the newest closed bar gets one small market order."""
    urls = ", ".join(f'{k} = "{v}"' for k, v in exchange.api_urls().items())
    path.write_text(f"""\
account = "{ACCOUNT}"
log_level = "info"

[strategy]
name = "{AlwaysLong.name}"

[[ensemble.providers]]
name = "momentum"
kind = "momentum"
params = {{ period = 20 }}

[guardrails]
# Only the newest bar of A's first cycle may trade (the one before closed 60 s + settle
# ago): an order on an older bar would see its own fill on the next bar of the same
# cycle, and A would settle it itself instead of leaving it in doubt for C and D.
stale_after_bars = 1.0
max_position_lots = 0.01
max_order_notional = 1000.0

[guardrails.consensus]
rule = "either"
min_agreement = 1
min_confidence = 0.0
conflict_margin = 1.0

[paper]
contract_size = 1.0
order_volume_lots = 0.001

[broker]
kind = "ccxt"
symbols = ["BTC/USDT"]
timeframe = "1m"
ccxt_api_urls = {{ {urls} }}

[broker.ccxt]
symbols = ["BTC/USDT"]
timeout_ms = 2000
rate_limit_ms = 1
""")
    return path


@dataclass
class DtaProcess:
    name: str
    proc: subprocess.Popen[str]
    notify: NotifySocket
    out: Path
    err: Path
    first_tick: float  # wall time of its first bar-close tick

    @property
    def key(self) -> str:
        return f"twin-key-{self.name}"

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + WAIT
        while not self.notify.wait_for("READY=1", 0.2):
            assert self.proc.poll() is None, (
                f"{self.name} exited {self.proc.returncode} before READY:\n{self.stderr()[-3000:]}")
            assert time.monotonic() < deadline, f"{self.name} not READY after {WAIT}s"

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {WAIT}s:\n{self.stderr()[-3000:]}")

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        return self.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.notify.close()


@pytest.fixture
def daemons() -> Iterator[list[DtaProcess]]:
    started: list[DtaProcess] = []
    yield started
    for d in started:  # whatever happened: no child outlives the test
        d.close()


def start(name: str, url: str, config: Path, tmp_path: Path, first_tick_in: float,
          started: list[DtaProcess]) -> DtaProcess:
    """`dta run --mode live` with its own API key and a settle delay that puts its first
    bar-close tick (1m bars: every minute + settle) ``first_tick_in`` seconds from now."""
    first_tick = time.time() + first_tick_in
    notify = NotifySocket(tmp_path / f"{name}.sock")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTA_")}
    env.update(PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]),
               NOTIFY_SOCKET=str(notify.path), DTA_EXCHANGE_API_KEY=f"twin-key-{name}",
               DTA_EXCHANGE_API_SECRET=SECRET,
               DTA_SCHEDULER__SETTLE_DELAY_SECONDS=f"{first_tick % 60:.3f}")
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, __file__, "run", "--mode", "live", "--config", str(config),
             "--journal-url", url, "--json"],
            cwd=tmp_path, env=env, stdout=stdout, stderr=stderr, text=True)
    d = DtaProcess(name, proc, notify, out, err, first_tick)
    started.append(d)
    return d


def prepare_journal(url: str, exchange: FakeBinance) -> None:
    """Migrated; the account cleared for live (as `dta promote` records it); and the
    exchange's 1m bars up to three minutes ago, as an earlier life of the daemon left them:
    A's first cycle then fetches the few bars closed since, not 500 bars of catch-up."""
    minute = 60_000
    now_ms = int(time.time() * 1000)
    last = now_ms - now_ms % minute - 3 * minute
    journal = Journal.open(url)
    try:
        journal.clearances.record_clearance(account=ACCOUNT, strategy=AlwaysLong.name,
                                            action="promote", mode="live", person="desk",
                                            note="two-daemon test")
        for open_ms in range(last - 40 * minute, last + 1, minute):
            k = exchange.kline("BTCUSDT", open_ms, 1)
            o, h, lo, c, v = (float(x) for x in k[1:6])
            journal.runs.record_bar(a_bar(symbol="BTC/USDT", timeframe="M1",
                                          time=datetime.fromtimestamp(open_ms / 1000, UTC),
                                          open=o, high=h, low=lo, close=c, volume=v))
        journal.commit()
    finally:
        journal.close()


def run_statuses(url: str) -> list[str]:
    """The journal's runs, newest first."""
    journal = Journal.open(url, migrate_schema=False)
    try:
        return [r.status for r in journal.queries.runs()]
    finally:
        journal.close()


@pytest.mark.slow
def test_two_daemons_on_one_account_exactly_one_trades(
        journal_url: str, tmp_path: Path, daemons: list[DtaProcess]) -> None:
    url = journal_url
    t0 = time.monotonic()
    names = ["A", "B", "C", "D"]
    with KeyedExchange([f"twin-key-{n}" for n in names]) as exchange:
        prepare_journal(url, exchange)
        accepted = threading.Event()
        exchange.on_order = lambda _order: accepted.set()
        # A's order is accepted, its answer lost: A cannot know it traded.
        exchange.script("POST", "/api/v3/order", ("accept_then_drop",))
        config = config_toml(tmp_path / "dta.toml", exchange)

        # 1. A holds the lease; B, on the same account, is refused.
        a = start("A", url, config, tmp_path, A_FIRST_TICK, daemons)
        a.wait_ready()
        late = time.time() > a.first_tick  # very slow start: A ticks a minute later
        b = start("B", url, config, tmp_path, IDLE_TICK, daemons)
        assert b.wait() == EXIT_REFUSED, b.stderr()[-3000:]
        refusal = b.stderr()
        assert f"dta: account {ACCOUNT!r} is leased by another daemon" in refusal
        assert "refusing to trade it twice" in refusal
        if url.startswith("sqlite"):
            assert f"held by pid {a.proc.pid} " in refusal
        else:
            assert f"PostgreSQL advisory lock {advisory_key(ACCOUNT)}, backend pid " in refusal
        assert b.out.read_text() == ""  # no run summary: it never ran
        assert not [s for s in exchange.signed if s[0] == b.key]
        assert run_statuses(url) == ["running"]  # A's only

        # 2. A trades at its first bar close; SIGTERM: it finishes the cycle, exits 0.
        assert accepted.wait(A_FIRST_TICK + WAIT + 15), a.stderr()[-3000:]
        assert a.stop(signal.SIGTERM) == 0, a.stderr()[-3000:]
        summary = json.loads(a.out.read_text())
        assert summary["status"] == "stopped" and summary["orders"] == {"unknown": 1}
        [order_id] = exchange.sent_by(a.key)

        # 3. C takes over after the graceful stop; SIGKILL while it asks about the order.
        c_started = threading.Event()
        victim: list[DtaProcess] = []

        def kill_c_at_lookup(key: str, method: str, path: str) -> None:
            if key == "twin-key-C" and (method, path) == ("GET", "/api/v3/order"):
                c_started.wait(10)
                victim[0].proc.kill()  # SIGKILL, and dead before the answer leaves
                victim[0].proc.wait(timeout=10)

        exchange.on_signed = kill_c_at_lookup
        victim.append(start("C", url, config, tmp_path, IDLE_TICK, daemons))
        c_started.set()
        c = victim[0]
        assert c.wait() == -signal.SIGKILL, c.stderr()[-3000:]
        exchange.on_signed = None

        # 4. D takes over from the killed holder, settles the order by lookup; SIGTERM.
        d = start("D", url, config, tmp_path, IDLE_TICK, daemons)
        d.wait_ready()
        assert d.stop(signal.SIGTERM) == 0, d.stderr()[-3000:]
        placed = list(exchange.orders)
        signed = list(exchange.signed)

    # The exchange: one order, placed once, by A; B, C and D sent nothing. C got the
    # lease (it reached the exchange) and died asking; D settled the order by asking,
    # and protected the long it found: one OCO, its legs under the entry's ids.
    entries = [o for o in placed if o["orderListId"] == -1]
    assert Counter(o["clientOrderId"] for o in entries) == {order_id: 1}
    assert sorted(o["clientOrderId"] for o in placed if o["orderListId"] != -1) == [
        order_id + "sl", order_id + "tp"]
    assert [k for k, m, p, _c in signed if (m, p) == ("POST", "/api/v3/orderList/oco")] == [
        "twin-key-D"]
    assert [coid for _k, m, p, coid in signed if (m, p) == ("POST", "/api/v3/order")] == [
        order_id]
    lookups = [k for k, m, p, coid in signed
               if (m, p, coid) == ("GET", "/api/v3/order", order_id)]
    assert lookups[0] == "twin-key-C" and set(lookups) == {"twin-key-C", "twin-key-D"}
    journal = Journal.open(url, migrate_schema=False)
    try:
        [order] = [o for o in journal.orders.all(ACCOUNT) if o.protective_kind is None]
    finally:
        journal.close()
    assert order.client_order_id == order_id and order.state is OrderState.FILLED
    assert order.broker_order_id == str(entries[0]["orderId"])
    print(f"\ntwo daemons on {url.split(':')[0]}: {time.monotonic() - t0:.1f}s"
          + (" (A started after its first tick: one more minute)" if late else ""))


if __name__ == "__main__":  # one daemon of the test: `dta run` with AlwaysLong registered
    from runbooks.cli import main
    from strategies.registry import STRATEGIES

    STRATEGIES[AlwaysLong.name] = AlwaysLong
    main()
