"""Venue models for the conformance suite: one driver per account model the product trades,
each wrapping the real daemon (as `dta run` wires it) and the venue's own view of the
account, so a scenario can compare the two after every step.

A step is "send an order through the daemon's router, then let the next bar close": the
daemon learns of fills at its cycle (live brokers poll them per bar), so the next cycle is
part of the step. A restart is a process death (nothing uncommitted survives, the kernel
frees the lease) followed by a fresh start with start-up reconciliation, as systemd's
restart does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from domain import OrderIntent, OrderSide, OrderType, client_order_id
from executor.daemon import RealtimeExecutor
from executor.engine.startup import journal_net_positions
from executor.journal.store import Journal
from executor.wiring import Daemon, build_daemon
from support.builders import an_intent


class VenueModel(Protocol):
    name: str
    symbol: str
    lot: float  # the volume unit scenarios are written in
    shorts: bool  # can the account hold a short (spot cannot)
    partial_fills: bool  # can the venue fill part of a market order and cancel the rest
    fills_while_down: bool  # can an order fill at the venue while the daemon is down
    protective_exits: bool  # does the venue hold our stop and target
    fee_rate: float  # commission taken out of the traded quantity (spot: base-asset fees)
    dust: float  # lots a close may leave behind: what the venue's amount step cannot sell

    def start(self) -> None: ...

    def send(self, side: OrderSide, lots: float, *, partial: float | None = None,
             die_before_poll: bool = False) -> None: ...

    def protected(self, side: OrderSide, lots: float, exit_by: str) -> None:
        """Open with a stop and a target, then let the venue close it at ``exit_by``
        ("sl" or "tp")."""
        ...

    def restart(self) -> None: ...

    def venue_position(self) -> float: ...

    def venue_gross(self) -> float: ...

    def venue_open_orders(self) -> int: ...

    def venue_realized(self) -> float | None:
        """Realised PnL as the venue reports it; None where it reports none (spot)."""
        ...

    def close(self) -> None: ...

    @property
    def executor(self) -> RealtimeExecutor: ...

    @property
    def journal(self) -> Journal: ...

    @property
    def account(self) -> str: ...


@dataclass(frozen=True, slots=True)
class View:
    """What one side believes after a step: net signed volume, gross lots over every open
    ticket (MT5 hedging holds long and short tickets at once) and orders still working."""

    position: float
    gross: float
    working: int


def daemon_view(venue: VenueModel) -> View:
    ex = venue.executor
    p = ex.broker.position(venue.symbol)
    gross = p.gross_volume if p.gross_volume is not None else abs(p.volume)
    return View(round(p.volume, 10), round(gross, 10), len(ex.tracker.working))


def journal_realized(venue: VenueModel) -> float:
    """The daemon's realised PnL: what it journaled with each fill."""
    return round(sum(f.realized_pnl for f in venue.journal.orders.fills(account=venue.account)), 2)


def journal_position(venue: VenueModel) -> float:
    return round(journal_net_positions(venue.journal, venue.account).get(venue.symbol, 0.0),
                 10)


# --------------------------------------------------------------------------- live venues


class _Venue:
    """What every venue model shares: the daemon it drives, the clock of its bars, and
    how one scripted order goes through the daemon's router."""

    name: str
    symbol: str
    lot: float
    account: str

    def __init__(self, tmp_path: Path, strategy: str) -> None:
        self.url = f"sqlite:///{tmp_path / f'{self.name}.sqlite'}"
        self.strategy = strategy
        self._daemon: Daemon | None = None
        self._n = itertools.count(1)

    @property
    def executor(self) -> RealtimeExecutor:
        assert self._daemon is not None
        return self._daemon.executor

    @property
    def journal(self) -> Journal:
        assert self._daemon is not None
        return self._daemon.journal

    def _intent(self, side: OrderSide, lots: float, now: datetime,
                stops: tuple[float, float] | None) -> OrderIntent:
        n = next(self._n)
        coid = client_order_id(self.account, self.symbol, now, f"conformance:{n}")
        return an_intent(client_order_id=coid, account=self.account, symbol=self.symbol, side=side,
                         volume=round(lots * self.lot, 8), order_type=OrderType.MARKET,
                         bar_time=now, stop_loss=stops[0] if stops else None,
                         take_profit=stops[1] if stops else None)


class _LiveVenue(_Venue):
    """A live adapter against a loopback venue: bars one minute apart on a clock the
    venue shares, start-up reconciliation at every start."""

    def __init__(self, tmp_path: Path, strategy: str) -> None:
        super().__init__(tmp_path, strategy)
        self._t0 = datetime.now(UTC).replace(second=0, microsecond=0)
        self._minutes = 0

    def _now(self) -> datetime:
        return self._t0 + timedelta(minutes=self._minutes, seconds=2)

    def _settings(self) -> Any:
        raise NotImplementedError

    def _journal(self) -> Journal:
        journal = Journal.open(self.url)
        journal.clearances.record_clearance(account=self.account, strategy=self.strategy,
                                            action="promote", mode="live", person="desk",
                                            note="test")
        return journal

    def start(self) -> None:
        from executor.engine.startup import start_live

        settings = self._settings()
        journal = self._journal()
        self._daemon = build_daemon(settings, journal)
        self.executor.start()
        start_live(settings, self._daemon, journal)
        self.executor.run_cycle(self._now())

    def _next_bar(self) -> None:
        """Move the venue to the next minute (its bar has closed)."""
        raise NotImplementedError

    def _bar(self) -> None:
        self._minutes += 1
        self._next_bar()
        self.executor.run_cycle(self._now())

    def _script_partial(self, fraction: float) -> None:
        raise NotImplementedError

    def send(self, side: OrderSide, lots: float, *, partial: float | None = None,
             die_before_poll: bool = False, stops: tuple[float, float] | None = None,
             ) -> None:
        if partial is not None:
            self._script_partial(partial)
        self.executor.decider.submit(self._intent(side, lots, self._now(), stops), self._now())
        self.executor.journal.commit()
        if die_before_poll:  # the venue filled it; the daemon dies before it hears so
            self.restart()
        self._bar()

    def _disconnect(self) -> None:
        """Close what the adapter holds open (the MT5 bridge connection)."""

    def restart(self) -> None:
        """The process dies (what it had not committed is gone, the kernel frees its
        lease) and systemd starts it again."""
        self.die()
        self.start()

    def die(self) -> None:
        """The process dies: what it had not committed is gone, the kernel frees its
        lease; the venue goes on without it."""
        assert self._daemon is not None
        self._daemon.journal.rollback()
        self._daemon.live.lease.release()
        self._disconnect()
        self._daemon.journal.close()
        self._daemon = None

    def close(self) -> None:
        if self._daemon is not None:
            self.executor.stop("stopped")
            self._daemon.live.lease.release()
            self._disconnect()
            self._daemon.journal.close()
            self._daemon = None


class CcxtSpot(_LiveVenue):
    """Binance spot through the real ccxt client against the loopback fake: an account
    that starts with quote currency only (no base asset), fees as the fake charges them."""

    name = "ccxt-spot"
    account = "bn-live"
    symbol = "BTC/USDT"
    lot = 0.001
    shorts = False
    partial_fills = True
    fills_while_down = True
    protective_exits = True  # a long's stop and target: one sell OCO, placed by the engine
    fee_rate = 0.001  # Binance's standard spot commission, in the asset received
    dust = 0.01  # LOT_SIZE stepSize 0.00001 BTC: a fee-shaved holding sells in whole steps

    def __init__(self, tmp_path: Path, strategy: str) -> None:
        from fakes.binance_fake import FakeBinance

        super().__init__(tmp_path, strategy)
        self.fake = FakeBinance(balances={"USDT": 1_000_000.0})
        self.fake.start()

    def _settings(self) -> Any:
        from support.daemon_helpers import live_settings

        return live_settings(self.url, self.fake, self.strategy, ccxt={"history_days": 30})

    def _next_bar(self) -> None:
        self.fake.time_offset_ms = int((self._now() - datetime.now(UTC)).total_seconds()
                                       * 1000)

    def _script_partial(self, fraction: float) -> None:
        self.fake.script("POST", "/api/v3/order", ("partial", fraction))

    def protected(self, side: OrderSide, lots: float, exit_by: str) -> None:
        """Open a long with a stop and a target 1 % away; the engine places both at the
        exchange as one sell OCO; the price then trades through one of them, the fake
        executes that leg (expiring the other), and the next bar's poll sees the exit."""
        assert side is OrderSide.BUY, "spot holds no shorts"
        price = float(self.fake.symbols["BTCUSDT"]["price"])
        stop, target = round(price * 0.99, 2), round(price * 1.01, 2)
        self.send(side, lots, stops=(stop, target))
        assert len(self.open_legs()) == 2, "the stop and the target are at the exchange"
        self.fake.set_price("BTCUSDT", stop - 10 if exit_by == "sl" else target + 10)
        self._bar()
        assert self.open_legs() == [], "the other leg expired with the list"
        self.fake.set_price("BTCUSDT", price)

    def open_legs(self) -> list[str]:
        """Client ids of the open orders that belong to an order list (an OCO's legs)."""
        return [str(o["clientOrderId"]) for o in self.fake.orders
                if o["status"] in ("NEW", "PARTIALLY_FILLED") and o["orderListId"] != -1]

    def venue_position(self) -> float:
        return round(self.fake.balances.get("BTC", 0.0), 10)

    def venue_gross(self) -> float:
        return abs(self.venue_position())

    def venue_open_orders(self) -> int:
        """Open orders but the OCO legs: a protective leg is its position's exit, followed
        by the engine's keeper, not a working order of the tracker's."""
        return sum(1 for o in self.fake.orders if o["status"] in ("NEW", "PARTIALLY_FILLED")
                   and o["orderListId"] == -1)

    def venue_realized(self) -> float | None:
        return None  # Binance spot reports trades and balances, no realised PnL

    def close(self) -> None:
        super().close()
        self.fake.stop()


class Mt5Account(_LiveVenue):
    """MetaTrader 5 through the real rpyc client and our bridge serving the fake terminal,
    in one of the account modes of ``account_info().margin_mode``: netting (one position
    per symbol) or hedging (a ticket per opening deal; an opposite deal closes nothing
    unless it names the position). The venue's truth is ``positions_get`` (net and gross
    lots of our magic number), ``orders_get`` and the deals' ``profit``."""

    account = "mt5-live"
    symbol = "EURUSD"
    lot = 0.01
    shorts = True
    partial_fills = True
    fills_while_down = True
    protective_exits = True
    fee_rate = 0.0  # commission is money on the account, never taken from the lots
    dust = 0.0

    def __init__(self, tmp_path: Path, strategy: str, margin_mode: str) -> None:
        from fakes import mt5_fake as M

        self.M = M
        self.name = f"mt5-{margin_mode}"
        super().__init__(tmp_path, strategy)
        mode = {"netting": M.ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
                "hedging": M.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING}[margin_mode]
        self.fake = M.FakeMetaTrader5(margin_mode=mode)
        self.bridge = M.start_bridge(self.fake)
        self.fake.clock = lambda: self._now().timestamp()
        self._rates()

    def _rates(self) -> None:
        self.fake.generate_rates(self.symbol, self.M.TIMEFRAME_M1, 60,
                                 now_utc=self._now().timestamp())

    def _settings(self) -> Any:
        from support.daemon_helpers import settings_for

        # IOC first: a market order fills what the market has and the rest is cancelled
        # (ORDER_FILLING_IOC); under FOK a partial market is simply not executed.
        mt5 = self.M.client_settings(self.fake, self.bridge.port,
                                     server_time_tolerance_seconds=900.0,
                                     filling_preference=("ioc", "fok", "return"))
        return settings_for(
            self.url, mode="live", account=self.account,
            mt5_password=self.fake.account_password,
            mt5_bridge_secret=self.M.SECRET.decode(),
            strategy={"name": self.strategy, "params": {}},
            paper={"order_volume_lots": 0.01},
            guardrails={"stale_after_bars": 1.5, "max_spread": None, "min_stop_atr": None},
            broker={"kind": "mt5", "symbols": [self.symbol], "timeframe": "M1",
                    "mt5": mt5.model_dump(mode="json")})

    def _next_bar(self) -> None:
        self.fake.move_price(self.symbol, 0.0003 * (1 if self._minutes % 3 else -1))
        self._rates()

    def _script_partial(self, fraction: float) -> None:
        self.fake.script_order_send(("partial", fraction))

    def _disconnect(self) -> None:
        assert self._daemon is not None
        self._daemon.live.broker.client.close()

    def protected(self, side: OrderSide, lots: float, exit_by: str) -> None:
        """The server holds the SL/TP on the position and closes it there
        (``hit_protection``: the deal's comment is ``[sl price]`` / ``[tp price]``)."""
        bid, ask = self.fake.ticks[self.symbol]
        price, sign = (ask, 1) if side is OrderSide.BUY else (bid, -1)
        self.send(side, lots, stops=(round(price - sign * 0.005, 5),
                                     round(price + sign * 0.005, 5)))
        for ticket in [p.ticket for p in self._ours()]:
            self.fake.hit_protection(ticket, exit_by)
        self._bar()

    def _ours(self) -> list[Any]:
        magic = self._settings().broker.mt5.magic
        return [p for p in self.fake.positions_get() or () if p.magic == magic]

    def venue_position(self) -> float:
        return round(sum(p.volume if p.type == self.M.ORDER_TYPE_BUY else -p.volume
                         for p in self._ours()), 10)

    def venue_gross(self) -> float:
        return round(sum(p.volume for p in self._ours()), 10)

    def venue_open_orders(self) -> int:
        return len(self.fake.orders_get() or ())

    def venue_realized(self) -> float | None:
        """DEAL_PROFIT summed over our deals: the server's realised PnL (an opening deal
        has none; a closing one carries the position's profit for its volume)."""
        magic = self._settings().broker.mt5.magic
        deals = self.fake.history_deals_get(0, 2**31 - 1) or ()
        return round(sum(d.profit for d in deals if d.magic == magic), 2)

    def close(self) -> None:
        super().close()
        self.bridge.close()


# --------------------------------------------------------------------------- paper


class Paper(_Venue):
    """The paper simulator over a bar file: its own venue (fills at the next bar's open
    +/- half the spread), configured as one of the venues the product trades (``paper``:
    MT5 netting; ``paper-spot``, ... as ``[paper] venue`` names them). Scenarios compare
    its end state with the live venues'."""

    name = "paper"
    venue = "mt5-netting"
    account = "paper-1"
    symbol = "EURUSD"
    lot = 0.01
    shorts = True
    partial_fills = False
    fills_while_down = False  # the simulator dies with the process: nothing fills then
    protective_exits = True
    fee_rate = 0.0
    dust = 0.0

    def __init__(self, tmp_path: Path, strategy: str, venue: str | None = None) -> None:
        from executor.brokers.paper_venue import PaperVenue
        from support.samples import write_sample_head

        if venue is not None:  # spot and swap: exits placed by the engine, held apart
            model = PaperVenue.of(venue)  # type: ignore[arg-type]
            self.name, self.venue, self.fee_rate = f"paper-{venue}", venue, model.fee_rate
            self.shorts = model.holds_shorts
        super().__init__(tmp_path, strategy)
        self.data = write_sample_head(tmp_path / "EURUSD_M15.csv", 400)
        self._now: datetime | None = None

    def start(self) -> None:
        from support.daemon_helpers import settings_for

        settings = settings_for(self.url, account=self.account,
                                strategy={"name": self.strategy, "params": {}},
                                paper={"venue": self.venue})
        journal = Journal.open(self.url)
        self._daemon = build_daemon(settings, journal, data=self.data)
        self.executor.start()
        self._bar()

    def _bar(self) -> None:
        assert self._daemon is not None and self._daemon.feed is not None
        t = self._daemon.feed.next_close_time()
        assert t is not None
        self._now = t
        self.executor.run_cycle(t)
        self.executor.journal.commit()

    def send(self, side: OrderSide, lots: float, *, partial: float | None = None,
             die_before_poll: bool = False, stops: tuple[float, float] | None = None,
             ) -> None:
        assert self._now is not None and partial is None and not die_before_poll
        self.executor.decider.submit(self._intent(side, lots, self._now, stops), self._now)
        self._bar()

    def protected(self, side: OrderSide, lots: float, exit_by: str) -> None:
        """The simulator closes at a stop or target the bars cross: the one to hit sits
        a pip from the price, the other far away, and bars run until it is hit."""
        snapshot = next(iter(self.executor.cycle.snapshots.values()))
        price, sign = snapshot.bar.close, (1 if side is OrderSide.BUY else -1)
        near, far = 0.0001, 0.05
        stop, target = ((price - sign * near, price + sign * far) if exit_by == "sl"
                        else (price - sign * far, price + sign * near))
        self.send(side, lots, stops=(stop, target))
        for _ in range(200):
            if self.executor.broker.position(self.symbol).is_flat:
                return
            self._bar()
        raise AssertionError(f"the paper {exit_by} was never hit")

    def restart(self) -> None:
        assert self._daemon is not None
        self.executor.stop("stopped")  # paper commits per batch: a clean stop
        self._daemon.journal.close()
        self._daemon = None
        self.start()

    def venue_position(self) -> float:
        return round(self.executor.broker.position(self.symbol).volume, 10)

    def venue_gross(self) -> float:
        return abs(self.venue_position())

    def venue_open_orders(self) -> int:
        return len(getattr(self.executor.broker, "_pending", {}))

    def venue_realized(self) -> float | None:
        return round(float(getattr(self.executor.broker, "realized_pnl", 0.0)), 2)

    def close(self) -> None:
        if self._daemon is not None:
            self.executor.stop("stopped")
            self._daemon.journal.close()
            self._daemon = None


def lost_at_once(settings: Any) -> Any:
    """``settings`` with a resolver that declares a lost send at once: a test cannot wait
    out the grace (which exceeds Binance's recvWindow) before the next generation goes."""
    resolver = settings.broker.resolver.model_copy(update={"grace_lookups": 1,
                                                            "grace_seconds": 0.0})
    return settings.model_copy(update={"broker": settings.broker.model_copy(
        update={"resolver": resolver})})


def in_lots(venue: VenueModel, volume: float) -> float:
    return round(volume / venue.lot, 6)


def make(name: str, tmp_path: Path, strategy: str) -> Any:
    if name.startswith("paper-"):
        return Paper(tmp_path, strategy, name.removeprefix("paper-"))
    if name.startswith("mt5-"):
        return Mt5Account(tmp_path, strategy, name.removeprefix("mt5-"))
    if name == "ccxt-swap":
        from support.venue_swap import CcxtSwap

        return CcxtSwap(tmp_path, strategy)
    return {"paper": Paper, "ccxt-spot": CcxtSpot}[name](tmp_path, strategy)
