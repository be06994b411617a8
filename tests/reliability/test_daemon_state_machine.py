"""The whole live daemon as a state machine (issue 15, "Daemon state machine").

Hypothesis drives the real daemon, wired as `dta run --mode live` wires it, against each
live venue model of the conformance suite (tests/support/venues.py): the loopback
Binance spot exchange through the real ccxt client, and MetaTrader 5 netting and hedging
accounts through the real rpyc client, our bridge and the fake terminal; and the paper
simulator over a bar file. One rule at a time:
- a bar closes, with the strategy proposing nothing, a trade the ensemble agrees with (it
  is sent) or one it opposes (a conflict: queued for a human);
- the venue misbehaves on the next order: the answer is lost after the order was accepted
  (the outcome is unknown; MT5: the call times out, or ``order_send`` answers ``None``),
  it is refused (Binance -2010, -1013; MT5 NO_MONEY, INVALID_VOLUME), or a market order
  fills in part and the rest expires (Binance EXPIRED; MT5 IOC: DONE_PARTIAL);
- the process dies (nothing uncommitted survives, the kernel frees the lease) at a step
  boundary, just before an order leaves, or just after the venue accepted it, and starts
  again with start-up reconciliation, as systemd restarts it;
- from another process: an analyst approves or rejects a queued request (weight feedback
  makes a parameter version), time runs past a request's time-to-live, an operator
  activates a parameter version or rolls back, and someone runs `dta trading-state
  halt|reduce|activate`, with or without naming themselves;
- the account loses money (the daily drawdown halt is in play).

After every step (``@invariant``):
- no client order id reaches the exchange's matching engine twice (Binance accepts a
  closed order's id again, so the fake would take a duplicate: this is the check). On MT5
  an order's requests are grouped by its comment token: on hedging one order may be sent
  as legs (close each opposite ticket by ``position=``, then open the rest), so the check
  is one request per named ticket, at most one opening leg, and never more lots than the
  order; on netting one request per token;
- no approved request is lost: after a cycle none is left ``approved``; each the analyst
  approved ends executed (with its order row), rejected at execution with a journaled
  reason, or expired;
- every order at the venue is journaled, with the side and amount the venue got; every
  journaled order is the strategy's agreed proposal or exactly what its approval showed;
- the trading state is relaxed (HALTED -> REDUCING/ACTIVE, REDUCING -> ACTIVE) only by a
  person named explicitly (never "system", never a login name guessed from ``$USER``);
- the daily drawdown halt holds whatever versions and restarts came between: a cycle that
  read an equity past the active version's limit against the day's journaled baseline
  leaves the daemon HALTED;
- once the daemon has polled the fills of every order the venue holds (always right after
  a restart's reconciliation; an order sent after a cycle's poll shows at the next bar),
  its book, its journal's fills and the venue agree: the base balance on spot; on MT5 the
  net and gross lots of ``positions_get`` for our magic number.

On paper the venue's faults, the kills at the send and the account's losses are skipped
(no venue, nothing fills while it is down, no money leaves); its clock is its bar file's,
whose bars are longer than the live TTL, so its TTL is counted in bars.

Two defects it found are pinned by regression tests: a `dta trading-state reduce` while
HALTED relaxed trading under the login name (tests/integration/test_operator_safety.py),
and a restart after a partly filled market order whose answer was lost crashed start-up
(below).

``DTA_STATE_MACHINE_EXAMPLES`` sets the number of examples over all venues, split by
``VENUES`` (200 in `make test`; `make soak` runs more).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from support.builders import a_proposal, an_intent, an_order
from support.daemon_helpers import EXAMPLE, settings_for
from typer.testing import CliRunner

from domain import (
    Direction,
    MarketSnapshot,
    OrderSide,
    OrderState,
    OrderType,
    Proposal,
    client_order_id,
)
from domain.orders import protected_entry
from ensemble.local import MomentumProvider
from executor.approval_request import ApprovalRequest
from executor.approvals import ApprovalError, decide
from executor.engine.startup import journal_net_positions
from executor.journal.store import Journal
from executor.settings import Settings
from executor.wiring import Daemon, build_daemon
from guardrails.params import ParamError, activate, active_version, propose, rollback
from guardrails.state import TradingState
from strategies.logic import StrategyContext
from strategies.registry import STRATEGIES

ACCOUNT = "bn-live"
SYMBOL = "BTC/USDT"
FUNDED_BTC = 0.0  # a new account: quote currency only, every BTC on it is ours
MOMENTUM_PERIOD = 5
TTL_MINUTES = 6
HALT_PCT = 5.0
NAMED = ("ann", "bob")  # people who name themselves with --operator
LOGIN = "login-guess"  # $USER: what a command would guess when nobody is named
EXAMPLES = int(os.environ.get("DTA_STATE_MACHINE_EXAMPLES", "200"))
STEPS = 12
PAPER_TTL_BARS = 2  # paper's bars are longer than TTL_MINUTES: its TTL is in bars
STRICTNESS = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class Died(BaseException):
    """The process is killed here (a BaseException: nothing in the daemon catches it)."""


@dataclass(frozen=True, slots=True)
class Proposed:
    """What the scripted strategy proposed, and whether the ensemble was to agree."""

    bar_time: datetime
    direction: Direction
    stop: float
    target: float
    agreed: bool


class Scripted:
    """The machine's strategy: at each bar it takes the next instruction, "agree" or
    "conflict", and proposes the side the momentum provider (the ensemble's only voter)
    votes for, or the opposite one. Nothing when no instruction waits or momentum is flat."""

    name = "test_state_machine_scripted"
    plan: ClassVar[deque[str]] = deque()
    proposed: ClassVar[list[Proposed]] = []

    def __init__(self, **_params: object) -> None:
        self.momentum = MomentumProvider(period=MOMENTUM_PERIOD)

    @classmethod
    def reset(cls) -> None:
        cls.plan = deque()
        cls.proposed = []

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        if not Scripted.plan:
            return ()
        what = Scripted.plan.popleft()
        b = snapshot.bar
        probe = a_proposal(strategy=self.name, symbol=snapshot.symbol, timeframe=snapshot.timeframe,
                           bar_time=b.time, direction=Direction.LONG, entry=b.close,
                           stop=b.close * 0.99, target=b.close * 1.02, reason="probe")
        vote = self.momentum.evaluate(probe, snapshot).direction
        if vote is Direction.FLAT:
            return ()
        agreed = what == "agree"
        direction = vote if agreed else (
            Direction.SHORT if vote is Direction.LONG else Direction.LONG)
        sign = 1 if direction is Direction.LONG else -1
        stop, target = b.close * (1 - sign * 0.01), b.close * (1 + sign * 0.02)
        Scripted.proposed.append(Proposed(b.time, direction, stop, target, agreed))
        return (a_proposal(strategy=self.name, symbol=snapshot.symbol, timeframe=snapshot.timeframe,
                           bar_time=b.time, direction=direction, entry=b.close, stop=stop,
                           target=target, reason=what),)


def _guardrails(ttl_minutes: int = TTL_MINUTES) -> dict[str, Any]:
    return {"stale_after_bars": 1.5, "max_position_lots": 1.0,
            "max_gross_exposure_lots": 1.0, "max_order_notional": 1e6,
            "max_orders_per_minute": 1000, "max_spread": None,
            "min_stop_atr": None, "max_daily_loss": None,
            "daily_drawdown_halt_pct": HALT_PCT,
            "approval_ttl_seconds": ttl_minutes * 60,
            "consensus": {"rule": "either", "min_agreement": 1,
                          "min_confidence": 0.0, "conflict_margin": 1.0}}


def _settings(url: str, fake: Any) -> Settings:
    return settings_for(
        url, mode="live", account=ACCOUNT,
        exchange_api_key=fake.api_key, exchange_api_secret=fake.secret,
        strategy={"name": Scripted.name, "params": {}},
        ensemble={"providers": [{"name": "momentum", "kind": "momentum",
                                 "params": {"period": MOMENTUM_PERIOD}}]},
        paper={"contract_size": 1.0, "order_volume_lots": 0.001},
        guardrails=_guardrails(),
        broker={"kind": "ccxt", "symbols": [SYMBOL], "timeframe": "1m",
                "ccxt_api_urls": fake.api_urls(),
                "ccxt": {"timeout_ms": 2000, "rate_limit_ms": 1, "read_backoff_seconds": 0.0,
                         "ohlcv_limit": 60, "history_days": 30},
                "resolver": {"grace_lookups": 2, "grace_seconds": 0.0,
                             "backoff_seconds": 0.0, "max_backoff_seconds": 0.0}})


class RecordingFake:
    """The loopback exchange, remembering the client id of every order that reached its
    matching engine (accepted or refused for the balance or a filter)."""

    @staticmethod
    def make() -> Any:
        from fakes.binance_fake import FakeBinance

        class Recording(FakeBinance):
            def __init__(self, **kw: Any) -> None:
                super().__init__(**kw)
                self.order_posts: list[str] = []

            def new_order(self, q: dict[str, str], partial: float | None) -> tuple[int, Any]:
                self.order_posts.append(q.get("newClientOrderId", ""))
                return super().new_order(q, partial)

        balances = {"USDT": 1_000_000.0}
        if FUNDED_BTC:
            balances["BTC"] = FUNDED_BTC
        return Recording(balances=balances).start()


# ----================================================================== venues


class SmVenue:
    """What the machine needs of one venue model: the daemon's settings, the venue's clock
    and bars, its faults, and its own truth for the invariants."""

    name: str
    account: str
    symbol: str
    faults: tuple[str, ...]
    lot: float  # the strategy's order volume
    live: bool = True  # a live adapter (lease, start-up reconciliation, kill points)

    def settings(self, url: str) -> Settings:
        raise NotImplementedError

    def sync(self, now: datetime, daemon: Daemon | None) -> None:
        """The venue's clock (and the daemon's view of it) shows the simulated time."""

    def script(self, fault: str) -> None:
        raise NotImplementedError

    def orders_seen(self) -> int:
        """How many orders of ours the venue holds (the fill polls' progress marker)."""
        raise NotImplementedError

    def disconnect(self, daemon: Daemon) -> None:
        """What the process held open dies with it."""

    def lose(self, pct: float, daemon: Daemon) -> None:
        raise NotImplementedError

    def equity_floor(self) -> float:
        """A lower bound of the equity the daemon read at the last cycle."""
        raise NotImplementedError

    def check_never_twice(self, ops: Journal) -> None:
        raise NotImplementedError

    def check_journaled(self, ops: Journal) -> None:
        raise NotImplementedError

    def check_positions(self, daemon: Daemon, journal_net: float, restarts: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class PaperVenue(SmVenue):
    """The paper simulator over the conformance suite's bar file (its own venue: fills at
    the next bar's open). No venue faults, nothing fills while it is down, no money to
    lose: those rules are skipped; its clock is the bar file's."""

    name = "paper"
    account = "paper-1"
    symbol = "EURUSD"
    faults = ()
    lot = 0.01
    live = False

    def __init__(self) -> None:
        from support.samples import write_sample_head

        self.dir = Path(tempfile.mkdtemp(prefix="dta-sm-paper-"))
        self.data = write_sample_head(self.dir / "EURUSD_M15.csv", 400)

    def settings(self, url: str) -> Settings:
        return settings_for(
            url, account=self.account,
            strategy={"name": Scripted.name, "params": {}},
            ensemble={"providers": [{"name": "momentum", "kind": "momentum",
                                     "params": {"period": MOMENTUM_PERIOD}}]},
            paper={"order_volume_lots": self.lot},
            guardrails=_guardrails(PAPER_TTL_BARS * 15))  # M15 bars

    def orders_seen(self) -> int:
        return 0  # settled: see ``settled``

    @staticmethod
    def settled(daemon: Daemon) -> bool:
        return not getattr(daemon.executor.broker, "_pending", {})

    def equity_floor(self) -> float:
        return float("inf")  # nothing takes money from the simulator: no halt to judge

    def check_never_twice(self, ops: Journal) -> None:
        """The simulator is the daemon's own: nothing reaches a venue."""

    def check_journaled(self, ops: Journal) -> None:
        """As above."""

    def check_positions(self, daemon: Daemon, journal_net: float, restarts: int) -> None:
        net = round(daemon.executor.broker.position(self.symbol).volume, 10)
        assert net == pytest.approx(journal_net, abs=1e-9), (
            f"simulator holds {net}, its journal {journal_net} ({restarts} restarts)")

    def stop(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class CcxtVenue(SmVenue):
    """Binance spot through the real ccxt client (the loopback fake): a new account,
    quote currency only, so every BTC on it is ours."""

    name = "ccxt-spot"
    account = ACCOUNT
    symbol = SYMBOL
    faults = ("accept_then_drop", "reject_balance", "reject_filter", "partial")
    lot = 0.001

    def __init__(self) -> None:
        self.fake = RecordingFake.make()

    def settings(self, url: str) -> Settings:
        return _settings(url, self.fake)

    def sync(self, now: datetime, daemon: Daemon | None) -> None:
        """The exchange's clock shows the simulated time; the client signs requests with
        the same clock (what ``load_time_difference`` would find)."""
        self.fake.time_offset_ms = int((now - datetime.now(UTC)).total_seconds() * 1000)
        if daemon is not None:
            daemon.live.broker.exchange.options["timeDifference"] = -self.fake.time_offset_ms

    def script(self, fault: str) -> None:
        step = {"accept_then_drop": ("accept_then_drop",),
                "reject_balance": ("reject", -2010,
                                   "Account has insufficient balance for requested action."),
                "reject_filter": ("reject", -1013, "Filter failure: LOT_SIZE"),
                "partial": ("partial", 0.5)}[fault]
        self.fake.faults.clear()
        self.fake.script("POST", "/api/v3/order", step)

    def orders_seen(self) -> int:
        return len(self.fake.orders)

    def lose(self, pct: float, daemon: Daemon) -> None:
        self.fake.balances["USDT"] = round(self.fake.balances["USDT"] * (1 - pct / 100), 8)
        # The cached balance would hide it for a wall second: the account changed.
        daemon.live.broker._account_changed()

    def equity_floor(self) -> float:
        # BTC valued above any price the fake quotes: the equity the daemon read is lower.
        return (self.fake.balances.get("USDT", 0.0)
                + self.fake.balances.get("BTC", 0.0) * 31_000.0)

    def check_never_twice(self, ops: Journal) -> None:
        # Binance accepts a closed order's id again, so the fake would take a duplicate.
        twice = {c: n for c, n in Counter(self.fake.order_posts).items() if n > 1}
        assert not twice, f"client order ids sent twice: {twice}"

    def check_journaled(self, ops: Journal) -> None:
        for o in list(self.fake.orders):
            mine = ops.orders.get_order(o["clientOrderId"])
            assert mine is not None, f"order {o['clientOrderId']} at the venue, not journaled"
            side = mine.intent.side.value.upper()
            assert o["side"] == side, (o, mine)
            qty = float(o["origQty"])
            if side == "BUY":
                assert qty == pytest.approx(mine.intent.volume, abs=1e-9), (o, mine)
            else:  # a sell may be cut to our (fee-shaved) holding, never above the order
                assert 0 < qty <= mine.intent.volume + 1e-9, (o, mine)

    def check_positions(self, daemon: Daemon, journal_net: float, restarts: int) -> None:
        net = round(daemon.executor.broker.position(SYMBOL).volume, 10)
        venue = round(self.fake.balances.get("BTC", 0.0) - FUNDED_BTC, 10)
        assert net == pytest.approx(journal_net, abs=1e-9) == venue, (
            f"daemon holds {net}, its journal {journal_net}, the venue {venue} "
            f"({restarts} restarts)")

    def stop(self) -> None:
        self.fake.stop()


class Mt5Venue(SmVenue):
    """MetaTrader 5 through the real rpyc client, our bridge and the fake terminal, in
    netting or hedging mode: the conformance suite's ``Mt5Account`` (its fake, bridge and
    ``positions_get`` truth) with the machine's settings and clock. The venue's bars follow
    the same eleven-minute pattern as the Binance fake's, a function of the bar's time (a
    restart reads the same history again)."""

    symbol = "EURUSD"
    # -10005 RES_E_INTERNAL_FAIL_TIMEOUT (mt5lasterror_py); retcodes 10019 NO_MONEY and
    # 10014 INVALID_VOLUME (MQL5 "Trade Server Return Codes").
    faults = ("accept_then_sleep", "accept_then_none", "reject_money", "reject_volume",
              "partial")
    lot = 0.02  # a half fill is still one volume step

    def __init__(self, margin_mode: str) -> None:
        from support.venues import Mt5Account

        machine = self

        class Account(Mt5Account):
            def _settings(self) -> Any:
                assert machine._cached is not None
                return machine._cached

        self.name = f"mt5-{margin_mode}"
        self.account = "mt5-live"
        self.margin_mode = margin_mode
        self._cached: Settings | None = None
        self.now = datetime.now(UTC)
        self.dir = Path(tempfile.mkdtemp(prefix="dta-sm-mt5-"))
        self.acct = Account(self.dir, Scripted.name, margin_mode)
        self.fake = self.acct.fake
        self.M = self.acct.M
        self.fake.balance = 100_000.0
        self.fake.clock = lambda: self.now.timestamp()

    def settings(self, url: str) -> Settings:
        mt5 = self.M.client_settings(self.fake, self.acct.bridge.port,
                                     filling_preference=("ioc", "fok", "return"),
                                     call_timeout_seconds=1.0)
        self._cached = settings_for(
            url, mode="live", account=self.account,
            mt5_password=self.fake.account_password,
            mt5_bridge_secret=self.M.SECRET.decode(),
            strategy={"name": Scripted.name, "params": {}},
            ensemble={"providers": [{"name": "momentum", "kind": "momentum",
                                     "params": {"period": MOMENTUM_PERIOD}}]},
            paper={"order_volume_lots": self.lot},
            guardrails=_guardrails(),
            broker={"kind": "mt5", "symbols": [self.symbol], "timeframe": "M1",
                    "mt5": mt5.model_dump(mode="json"),
                    "resolver": {"grace_lookups": 2, "grace_seconds": 0.0,
                                 "backoff_seconds": 0.0, "max_backoff_seconds": 0.0}})
        return self._cached

    @staticmethod
    def _close(server_minute: int) -> float:
        return round(1.1 + 0.0004 * ((server_minute * 7) % 11), 5)

    def sync(self, now: datetime, daemon: Daemon | None) -> None:
        """Bars up to the one forming at ``now``; the tick at the last close; the broker's
        own clock (its start-up check of the server clock) on the simulated time."""
        self.now = now
        server = self.fake.to_server(now.timestamp())
        last = server // 60
        bars = []
        for m in range(last - 59, last + 1):
            o, c = self._close(m - 1), self._close(m)
            bars.append((m * 60, o, max(o, c) + 0.0002, min(o, c) - 0.0002, c, 100, 10, 0))
        self.fake.set_rates(self.symbol, self.M.TIMEFRAME_M1, bars)
        self.fake.set_tick(self.symbol, bars[-1][4], round(bars[-1][4] + 0.0001, 5))
        if daemon is None:
            # Being built: its start-up check compares the terminal's newest tick with the
            # wall clock, before the broker can be handed the simulated one.
            self.fake.clock = time.time
        else:
            self.fake.clock = lambda: self.now.timestamp()
            daemon.live.broker._clock = lambda: self.now

    def script(self, fault: str) -> None:
        step = {"accept_then_sleep": ("accept_then_sleep", 1.5),
                "accept_then_none": ("accept_then_none", self.M.RES_E_INTERNAL_FAIL_TIMEOUT),
                "reject_money": ("reject", self.M.TRADE_RETCODE_NO_MONEY),
                "reject_volume": ("reject", self.M.TRADE_RETCODE_INVALID_VOLUME),
                "partial": ("partial", 0.5)}[fault]
        self.fake.order_script.clear()
        self.fake.script_order_send(step)

    def _magic(self) -> int:
        assert self._cached is not None
        return int(self._cached.broker.mt5.magic)

    def _our_orders(self) -> list[Any]:
        with self.fake._lock:
            return [o for o in [*self.fake.orders.values(), *self.fake.history_orders.values()]
                    if o.magic == self._magic()]

    def orders_seen(self) -> int:
        return len(self._our_orders())

    def disconnect(self, daemon: Daemon) -> None:
        daemon.live.broker.client.close()

    def lose(self, pct: float, daemon: Daemon) -> None:
        self.fake.balance = round(self.fake.balance * (1 - pct / 100), 2)
        daemon.live.broker._equity.invalidate()  # the account changed

    def equity_floor(self) -> float:
        return self.fake.balance + self.fake.credit + self.fake.floating_profit()

    def _requests(self) -> dict[str, list[dict[str, Any]]]:
        """Every market request of ours the server took, grouped by comment token (one
        client id; on hedging its legs: a close per named ticket, then the rest)."""
        by_token: dict[str, list[dict[str, Any]]] = {}
        with self.fake._lock:
            sent = list(self.fake.sent_requests)
        for r in sent:
            if r.get("magic") == self._magic() and r.get("action") == self.M.TRADE_ACTION_DEAL:
                by_token.setdefault(str(r.get("comment", "")), []).append(r)
        return by_token

    def check_never_twice(self, ops: Journal) -> None:
        for token, legs in self._requests().items():
            positions = Counter(int(r.get("position") or 0) for r in legs)
            again = {p: n for p, n in positions.items() if n > 1}
            assert not again, (
                f"order {token} sent twice: legs {again} (0: the opening leg) of {legs}")
            if self.margin_mode == "netting":
                assert len(legs) == 1, f"order {token} sent {len(legs)} times on netting"
            mine = ops.orders.get_order(token)
            if mine is not None:
                total = round(sum(float(r["volume"]) for r in legs), 8)
                assert total <= mine.intent.volume + 1e-9, (
                    f"order {token}: {total} lots sent for {mine.intent.volume}: {legs}")

    def check_journaled(self, ops: Journal) -> None:
        requests = self._requests()
        for token, legs in requests.items():
            mine = ops.orders.get_order(token)
            assert mine is not None, f"order {token} at the venue, not journaled"
            buy = mine.intent.side is OrderSide.BUY
            for r in legs:
                assert (r["type"] == self.M.ORDER_TYPE_BUY) == buy, (r, mine)
        for o in self._our_orders():
            assert o.comment in requests, f"venue order {o} was never requested"

    def check_positions(self, daemon: Daemon, journal_net: float, restarts: int) -> None:
        p = daemon.executor.broker.position(self.symbol)
        net = round(p.volume, 10)
        gross = round(p.gross_volume if p.gross_volume is not None else abs(p.volume), 10)
        venue_net, venue_gross = self.acct.venue_position(), self.acct.venue_gross()
        assert net == pytest.approx(journal_net, abs=1e-9) == venue_net, (
            f"daemon holds {net}, its journal {journal_net}, the venue {venue_net} "
            f"({restarts} restarts)")
        assert gross == pytest.approx(venue_gross, abs=1e-9), (
            f"daemon's gross {gross}, the venue's {venue_gross} ({restarts} restarts)")

    def stop(self) -> None:
        self.acct.bridge.close()
        shutil.rmtree(self.dir, ignore_errors=True)


_TEMPLATE: dict[str, Path] = {}


def _template_journal(account: str) -> Path:
    """A migrated journal with the desk's clearance, copied for each example (migrating
    a fresh file per example would cost more than the example)."""
    if account not in _TEMPLATE:
        path = Path(tempfile.mkdtemp(prefix="dta-sm-template-")) / "journal.sqlite"
        j = Journal.open(f"sqlite:///{path}")
        j.clearances.record_clearance(account=account, strategy=Scripted.name, action="promote",
                                      mode="live", person="desk", note="state machine")
        j.close()
        _TEMPLATE[account] = path
    return _TEMPLATE[account]


class DaemonMachine(RuleBasedStateMachine):
    """The machine against one venue model (``make_venue``; see ``machine_for``)."""

    make_venue: ClassVar[Callable[[], SmVenue]] = CcxtVenue

    def __init__(self) -> None:
        super().__init__()
        Scripted.reset()
        self.venue = type(self).make_venue()
        self.dir = Path(tempfile.mkdtemp(prefix="dta-sm-"))
        shutil.copy(_template_journal(self.venue.account), self.dir / "journal.sqlite")
        self.url = f"sqlite:///{self.dir / 'journal.sqlite'}"
        self.settings = self.venue.settings(self.url)
        # The fake's candles repeat every 11 minutes: starting on that cycle, every example
        # sees the same market whenever it runs (hypothesis replays must draw the same).
        # Simulated time runs ahead of the wall clock, as the ccxt adapter's polls expect.
        minute = int(datetime.now(UTC).timestamp() // 60) + 1
        self.t0 = datetime.fromtimestamp((minute + (-minute) % 11) * 60, UTC)
        self.minutes = 0
        self.bar_time: datetime | None = None  # paper: the bar file's clock
        self.daemon: Daemon | None = None
        self.die_at: str | None = None
        self.orders_at_poll = 0
        self.approved_by_us: set[int] = set()
        self.ops = Journal.open(self.url, migrate_schema=False)  # the operators' process
        self.runner = CliRunner()
        self.restarts = 0
        self._start()

    # ------------------------------------------------------------------ the process

    @property
    def now(self) -> datetime:
        if self.bar_time is not None:
            return self.bar_time
        return self.t0 + timedelta(minutes=self.minutes, seconds=2)

    @property
    def ex(self) -> Any:
        assert self.daemon is not None
        return self.daemon.executor

    def _sync_clocks(self) -> None:
        self.venue.sync(self.now, self.daemon)

    def _start(self) -> None:
        if not self.venue.live:
            self._start_paper()
            return
        from executor.engine.startup import start_live

        journal = Journal.open(self.url, migrate_schema=False)  # migrated: the template
        self._sync_clocks()
        self.daemon = build_daemon(self.settings, journal)
        # A fresh journal's first catch-up: enough bars for the indicators, not the
        # default 500 (each restart would warm them all again).
        self.daemon.live.feed.initial_bars = 40
        self._sync_clocks()
        self.ex.poll_seconds = 0.0  # follow operator changes at every cycle
        self._instrument()
        self.ex.start()
        start_live(self.settings, self.daemon, journal)
        self.orders_at_poll = self.venue.orders_seen()  # reconciliation took every fill
        self._cycle()

    def _start_paper(self) -> None:
        assert isinstance(self.venue, PaperVenue)
        journal = Journal.open(self.url, migrate_schema=False)
        self.daemon = build_daemon(self.settings, journal, data=self.venue.data)
        self.ex.poll_seconds = 0.0
        self._instrument()
        self.ex.start()
        first = self.bar_time is None
        self._next_bar_time()
        self._cycle()
        for _ in range(MOMENTUM_PERIOD + 1 if first else 0):  # the indicator's warm-up
            self._next_bar_time()
            self._cycle()

    def _next_bar_time(self) -> None:
        assert self.daemon is not None and self.daemon.feed is not None
        t = self.daemon.feed.next_close_time()
        assert t is not None, "the bar file ran out"
        self.bar_time = t

    def _instrument(self) -> None:
        """Kill points around the send, and the count of venue orders at each fill poll."""
        assert self.daemon is not None
        broker = self.daemon.live.broker if self.venue.live else self.ex.broker
        submit, on_bar = broker.submit, broker.on_bar

        def dying_submit(order: Any) -> Any:
            if self.die_at == "before_send":
                self.die_at = None
                raise Died()
            result = submit(order)
            if self.die_at == "after_send":
                self.die_at = None
                raise Died()
            return result

        def counting_on_bar(bar: Any) -> Any:
            fills = on_bar(bar)
            self.orders_at_poll = self.venue.orders_seen()
            return fills

        broker.submit = dying_submit
        broker.on_bar = counting_on_bar

    def _cycle(self) -> None:
        """One cycle at the current time; a death inside it is followed by a restart."""
        self._sync_clocks()
        # Bars are a minute apart: the journal's trading-state cache (a quarter second of
        # wall time) has expired by the next one, so an operator's change is seen.
        self.ex.journal.trading_state._cache.clear()
        try:
            handled = self.ex.run_cycle(self.now)
        except Died:
            self._die()
            self._start()
            return
        self.die_at = None
        if not self.venue.live:
            self.ex.journal.commit()  # paper commits per batch
        self._check_after_cycle(handled)

    def _die(self) -> None:
        assert self.daemon is not None
        from executor.daemon import _close

        self.daemon.journal.rollback()  # what the process had not committed is gone
        if self.daemon.live is not None:
            self.daemon.live.lease.release()  # the kernel frees it with the process
            self.venue.disconnect(self.daemon)
        _close(self.ex.c.ensemble)
        self.daemon.journal.close()
        self.daemon = None
        self.restarts += 1

    def teardown(self) -> None:
        try:
            if self.daemon is not None:
                self.ex.stop("stopped")
                if self.daemon.live is not None:
                    self.daemon.live.lease.release()
                    self.venue.disconnect(self.daemon)
                self.daemon.journal.close()
                self.daemon = None
            self.ops.close()
        finally:
            self.venue.stop()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _bar(self, what: str | None) -> None:
        if what is not None:
            Scripted.plan.append(what)
        self.minutes += 1
        if not self.venue.live:
            self._next_bar_time()  # a bar is longer than the TTL
        self._cycle()
        Scripted.plan.clear()

    # ------------------------------------------------------------------ rules: market

    @rule(what=st.sampled_from(["none", "agree", "agree", "conflict", "conflict"]))
    def bar(self, what: str) -> None:
        self._bar(None if what == "none" else what)

    @precondition(lambda self: bool(self.venue.faults))
    @rule(what=st.sampled_from(["agree", "conflict"]), fault=st.integers(0, 19))
    def bar_with_venue_fault(self, what: str, fault: int) -> None:
        """The next order (this bar's, or an approval's) meets one of the venue's faults:
        the answer lost after the order was accepted, a refusal, a partial fill."""
        self.venue.script(self.venue.faults[fault % len(self.venue.faults)])
        self._bar(what)

    @rule()
    def process_killed_between_steps(self) -> None:
        """The process dies between two steps; systemd starts it again at once (live:
        with start-up reconciliation)."""
        self._die()
        self._start()

    @precondition(lambda self: self.venue.live)
    @rule(point=st.sampled_from(["before_send", "after_send"]),
          what=st.sampled_from(["agree", "conflict"]))
    def process_killed_at_the_send(self, point: str, what: str) -> None:
        """The process dies at the next bar just before an order leaves (its row
        committed) or just after the venue accepted it (the answer never journaled)
        (paper: the simulator dies with the process, nothing is at a venue)."""
        self.die_at = point
        self._bar(what)

    @rule()
    def time_passes_beyond_the_ttl(self) -> None:
        self.minutes += TTL_MINUTES
        for _ in range(1 if self.venue.live else PAPER_TTL_BARS + 1):
            self._bar(None)

    @precondition(lambda self: self.venue.live)
    @rule(pct=st.sampled_from([0.5, 1.0, 2.0, 5.5]))
    def account_loses(self, pct: float) -> None:
        """Equity falls (a loss elsewhere on the account, a withdrawal)."""
        assert self.daemon is not None
        self.venue.lose(pct, self.daemon)

    # ------------------------------------------------------------------ rules: people

    @rule(index=st.integers(0, 3), who=st.sampled_from(NAMED))
    def analyst_approves(self, index: int, who: str) -> None:
        self._decide(index, True, who)

    @rule(index=st.integers(0, 3), who=st.sampled_from(NAMED))
    def analyst_rejects(self, index: int, who: str) -> None:
        self._decide(index, False, who)

    def _decide(self, index: int, approve: bool, who: str) -> None:
        """`dta approvals approve|reject` from another process, in the request's time."""
        self.ops.rollback()
        pending = self.ops.approvals.all("pending")
        if not pending:
            return
        request = pending[index % len(pending)]
        try:
            decide(self.ops, request.id or 0, approve=approve, operator=who,
                   note="state machine", now=self.now,
                   feedback=self.settings.guardrails.weight_feedback)
        except ApprovalError:
            return  # expired meanwhile: marked so, never executed
        self.ops.commit()
        if approve:
            self.approved_by_us.add(request.id or 0)

    @rule(pct=st.sampled_from([4.0, 5.0, 6.0]), who=st.sampled_from(NAMED))
    def operator_activates_a_version(self, pct: float, who: str) -> None:
        self.ops.rollback()
        current = active_version(self.ops.params)
        assert current is not None
        content = dict(current.content)
        content["guardrails"] = {**content["guardrails"], "daily_drawdown_halt_pct": pct}
        v = propose(self.ops.params, content, author="quant", reason=f"halt at {pct} %")
        activate(self.ops.params, v.version, operator=who, reason="state machine")
        self.ops.commit()

    @rule(who=st.sampled_from(NAMED))
    def operator_rolls_back(self, who: str) -> None:
        self.ops.rollback()
        try:
            rollback(self.ops.params, operator=who, reason="state machine")
        except ParamError:
            return
        self.ops.commit()

    @rule(action=st.sampled_from(["halt", "reduce", "activate", "activate"]),
          who=st.sampled_from([*NAMED, None]))
    def trading_state_from_the_cli(self, action: str, who: str | None) -> None:
        args = ["trading-state", action, "--reason", "state machine"]
        if who is not None:
            args += ["--operator", who]
        args += ["--config", str(EXAMPLE), "--journal-url", self.url]
        result = self.runner.invoke(_cli(), args, env={"USER": LOGIN, "SUDO_USER": None,
                                                       "LOGNAME": LOGIN})
        assert result.exit_code in (0, 2, 5), result.output

    # ------------------------------------------------------------------ invariants

    def _check_after_cycle(self, bars: int) -> None:
        """After a cycle that ran to its end: no approval is left waiting to be sent, and
        (when it closed a bar: the halt is judged at each bar) the daily halt holds."""
        j = self.ops
        j.rollback()
        left = j.approvals.all("approved")
        assert not left, f"approved requests left unexecuted after a cycle: {left}"
        if bars:
            self._check_daily_halt()

    def _check_daily_halt(self) -> None:
        j = self.ops
        baseline = j.risk_days.day_start(self.venue.account)
        active = active_version(j.params)
        if baseline is None or active is None:
            return
        pct = (active.content.get("guardrails") or {}).get("daily_drawdown_halt_pct")
        if not pct:
            return
        equity = self.venue.equity_floor()
        if equity <= baseline[1] * (1 - (pct + 0.05) / 100):
            state = TradingState(j.trading_state.trading_state().state)
            assert state is TradingState.HALTED, (
                f"equity {equity:.2f} is past the {pct} % daily halt from the day's "
                f"{baseline[1]:.2f} (version {active.version}, {self.restarts} restarts), "
                f"state {state}")

    @invariant()
    def no_client_order_id_twice(self) -> None:
        self.ops.rollback()
        self.venue.check_never_twice(self.ops)

    @invariant()
    def venue_orders_are_journaled_as_sent(self) -> None:
        self.ops.rollback()
        self.venue.check_journaled(self.ops)

    @invariant()
    def orders_match_their_decision_or_approval(self) -> None:
        j = self.ops
        j.rollback()
        approvals = {a.client_order_id: a for a in j.approvals.all() if a.client_order_id}
        for a in j.approvals.all():
            if a.status == "executed":
                assert a.client_order_id and j.orders.get_order(a.client_order_id) is not None, (
                    f"approval #{a.id} executed without its order")
        agreed = {(p.bar_time, p.direction): p for p in Scripted.proposed if p.agreed}
        for order in j.orders.all(self.venue.account):
            intent = order.intent
            if order.protective_kind is not None:  # an entry's exit (engine/protection.py)
                entry = protected_entry(intent.client_order_id)
                assert entry and j.orders.get_order(entry[0]) is not None, (
                    f"protective order {intent.client_order_id} without its entry")
                continue
            a = approvals.get(intent.client_order_id)
            if a is not None:
                shown = ApprovalRequest.from_payload(a.intent)
                assert a.status == "executed", (a, order)
                assert (intent.side, intent.volume, intent.stop_loss, intent.take_profit) == (
                    shown.side, shown.volume, shown.stop_loss, shown.take_profit), (
                    f"approval #{a.id} showed {shown}, sent {intent}")
                continue
            direction = Direction.LONG if intent.side is OrderSide.BUY else Direction.SHORT
            p = agreed.get((intent.bar_time, direction))
            assert p is not None, (
                f"order {intent.client_order_id} ({intent.side.value} at "
                f"{intent.bar_time}) is no agreed proposal and no approval")
            assert (intent.stop_loss, intent.take_profit) == pytest.approx(
                (p.stop, p.target)), (p, intent)

    @invariant()
    def approvals_end_executed_rejected_or_expired(self) -> None:
        self.ops.rollback()
        for approval_id in self.approved_by_us:
            a = self.ops.approvals.get_approval(approval_id)
            assert a is not None
            if a.status == "rejected":
                assert a.note, f"approval #{a.id} rejected at execution without a reason"
            else:
                assert a.status in ("approved", "executed", "expired"), a

    @invariant()
    def trading_state_relaxed_only_by_a_named_person(self) -> None:
        rows = sorted(self.ops.trading_state.trading_state_events(limit=100_000),
                      key=lambda r: r.id or 0)
        state = TradingState.ACTIVE
        for r in rows:
            new = TradingState(r.state)
            if STRICTNESS[new] < STRICTNESS[state]:
                assert r.trigger == "manual" and r.operator in NAMED, (
                    f"trading state {state.value} -> {new.value} relaxed by "
                    f"{r.operator!r} (trigger {r.trigger}): not a person who named "
                    "themselves")
            state = new

    @invariant()
    def positions_agree(self) -> None:
        """Checked once the daemon has polled the fills of every order the venue has (an
        order sent after the cycle's poll shows at the next bar; until then the book is
        capped by the balance, which already moved)."""
        assert self.daemon is not None
        if isinstance(self.venue, PaperVenue):
            if not self.venue.settled(self.daemon):
                return
        elif self.orders_at_poll != self.venue.orders_seen():
            return
        self.ops.rollback()
        journal = journal_net_positions(self.ops, self.venue.account).get(
            self.venue.symbol, 0.0)
        self.venue.check_positions(self.daemon, journal, self.restarts)


def _cli() -> Any:
    from runbooks.cli import app

    return app


@pytest.fixture
def scripted() -> Iterator[None]:
    STRATEGIES[Scripted.name] = Scripted
    yield
    STRATEGIES.pop(Scripted.name, None)


@pytest.fixture
def warnings_only() -> Iterator[None]:
    """Thousands of cycles: their info lines would swamp the captured output; warnings
    and errors still show."""
    import logging

    import structlog

    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.configure(**before)


# Each venue model with its share of the examples (the Binance fake's larger: it has run
# longest and its spot quirks are the most numerous).
VENUES: dict[str, tuple[Callable[[], SmVenue], float]] = {
    "ccxt-spot": (CcxtVenue, 0.4),
    "mt5-netting": (lambda: Mt5Venue("netting"), 0.25),
    "mt5-hedging": (lambda: Mt5Venue("hedging"), 0.25),
    "paper": (PaperVenue, 0.1),
}


def machine_for(venue: str) -> type[DaemonMachine]:
    """The machine class driving ``venue`` (hypothesis builds one per example)."""
    make = VENUES[venue][0]
    return type(f"DaemonMachine_{venue.replace('-', '_')}", (DaemonMachine,),
                {"make_venue": staticmethod(make)})


@pytest.mark.parametrize("venue", list(VENUES))
def test_daemon_state_machine(venue: str, scripted: None, warnings_only: None) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    examples = max(1, round(EXAMPLES * VENUES[venue][1]))
    run_state_machine_as_test(machine_for(venue), settings=settings(
        max_examples=examples, stateful_step_count=STEPS, deadline=None,
        suppress_health_check=list(HealthCheck)))



def test_restart_adopts_a_partial_fill_whose_answer_was_lost(scripted: None) -> None:
    """Found by the state machine: the process dies right after the venue filled half a
    market order and expired the rest (Binance: EXPIRED with the partial executedQty).
    The journal says ``submitting``; the venue says cancelled with 0.0005 filled. Start-up
    must adopt that, not crash on "submitting -> cancelled" (every restart would again)."""
    m = DaemonMachine()
    try:
        m.venue.script("partial")
        m.die_at = "after_send"
        intent = an_intent(client_order_id=client_order_id(ACCOUNT, SYMBOL, m.now, "regression"),
                           account=ACCOUNT, symbol=SYMBOL, side=OrderSide.BUY, volume=0.001,
                           order_type=OrderType.MARKET, bar_time=m.now)
        with pytest.raises(Died):
            m.ex.decider.submit(intent, m.now)
        m._die()
        m._start()
        order = m.ex.journal.orders.get_order(intent.client_order_id)
        assert order is not None and order.state is OrderState.CANCELLED, order
        assert order.filled_volume == pytest.approx(0.0005)
        m.orders_at_poll = m.venue.orders_seen()  # reconciliation journaled the fills
        m.positions_agree()
    finally:
        m.teardown()


@pytest.mark.parametrize("venue", ["mt5-netting", "mt5-hedging"])
def test_the_mt5_check_sees_an_order_sent_again_after_a_restart(
        venue: str, scripted: None) -> None:
    """The MT5 "never sent twice" check groups an order's legs by comment token; it must
    still fail when a restarted daemon sends a journaled order once more (as a retry of
    an order whose answer was lost would)."""
    m = machine_for(venue)()
    try:
        for what in ("agree", "agree", "agree"):  # an opening order, then more
            m.bar(what)
        for _ in range(8):
            if m.ops.orders.all(m.venue.account):
                break
            m.bar("agree")
        m.no_client_order_id_twice()
        m._die()
        m._start()
        m.ops.rollback()
        sent = m.ops.orders.all(m.venue.account)[0]
        # it leaves again
        m.ex.broker.submit(an_order(intent=sent.intent, state=OrderState.SUBMITTING))
        with pytest.raises(AssertionError, match="sent"):
            m.no_client_order_id_twice()
    finally:
        m.teardown()
