"""The daemon's live cycle under a scripted, hostile feed: what the bad-input tests
(``test_bad_bars.py``, ``test_bad_provider_answers.py``) run and read back.

What runs is the daemon's own cycle: a ``RealtimeExecutor`` wired as
``executor.wiring.build_daemon`` wires it (``benchmarks/bench_latency.build_executor``),
the example settings (structure + momentum providers, every guardrail), a fresh journal
per run, the live commit cadence and a paper broker that is not ``simulated`` (so the
order row commits before the send, as in front of MT5 or an exchange), driven by
``run_cycle(now)`` with ``now`` = bar close + settle delay, as the scheduler calls it. Only
the feed is hostile: per cycle it hands over the bars that closed, interleaved with junk.

A ``Plan`` says what the feed does; ``build_scenario`` resolves it into the bars each cycle
hands over. Two streams share one M15 grid. The valid bars are consecutive rows of the
sample (segments where the strategy is known to propose, so orders do happen), journaled
warm-up rows before them, some slots missing (gaps) and up to two jumps of years (huge
gaps), some delivered with a non-UTC offset, several bars per cycle at times (catch-up).
Junk is built against the stream's state at the point it is handed over, so each junk bar
carries the exact rejection reason the validator's contract gives it. ``run_daemon`` runs
every cycle and returns the ``Facts`` the journal and the executor were left with.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import cache
from typing import Any

from hypothesis import HealthCheck, Phase
from sqlalchemy import select
from support.builders import a_bar, a_position
from support.daemon_helpers import settings_for

from benchmarks.bench_latency import (
    TimedPaperBroker,
    build_executor,
    load_sample,
)
from domain import (
    Bar,
    MarketSnapshot,
    normalize_timeframe,
    timeframe_seconds,
)
from executor.daemon import RealtimeExecutor
from executor.journal.models import (
    DecisionRow,
    ProposalRow,
    ProviderCallRow,
    RejectedBarRow,
)
from executor.journal.store import Journal
from executor.settings import Settings
from strategies.logic import StrategyContext
from strategies.snapshot import SnapshotBuilder

Stream = tuple[str, str]
TF = "M15"
STEP = timedelta(minutes=15)
STREAMS: tuple[Stream, ...] = (("EURUSD", TF), ("GBPUSD", TF))
T0 = datetime(2024, 1, 1, tzinfo=UTC)  # first slot of every example; warm-up bars before it
WARM = 150  # journaled bars per stream before the first cycle (the restart path warms on them)
MIN_SLOTS, MAX_SLOTS = 30, 80  # grid slots (bar closes) per example
SEGMENT = WARM + MAX_SLOTS  # sample rows per segment: warm-up, then the example's bars


# --------------------------------------------------------------------------- the daemon


@cache
def example_settings() -> Settings:
    """The example settings; the journal URL is unused (each example opens its own)."""
    return settings_for("sqlite://")


@cache
def sample_rows() -> tuple[Bar, ...]:
    return tuple(load_sample().bars)


@cache
def productive_segments() -> tuple[tuple[int, int, int], ...]:
    """(segment, first window index with a proposal, proposals in the window) for the
    sample's segments where the configured strategy proposes within the first
    ``MAX_SLOTS - 10`` bars after its warm-up (a flat position assumed), so examples built
    on them place orders. A bias, not an oracle: the daemon's own run decides; the
    follow-up tests count the orders."""
    journal = Journal.open("sqlite://")
    executor = build_executor(example_settings(), journal, _NoFeed(), [], mode="live")
    executor.start()
    try:
        c = executor.c
        ctx = StrategyContext(a_position(symbol="X"), c.strategy_params)
        rows = sample_rows()
        out: list[tuple[int, int, int]] = []
        for k in range(len(rows) // SEGMENT):
            builder = SnapshotBuilder(**c.snapshot_params)
            seg = rows[k * SEGMENT:(k + 1) * SEGMENT]
            hits: list[int] = []
            for i, bar in enumerate(seg):
                snapshot = builder.update(bar)
                if i >= WARM and c.strategy.on_bar(snapshot, ctx):
                    hits.append(i - WARM)
            if hits and hits[0] < MAX_SLOTS - 10:
                out.append((k, hits[0], len(hits)))
        return tuple(out)
    finally:
        executor.stop()
        journal.close()


class _NoFeed:
    def closed_bars(self, symbol: str, timeframe: str, since: datetime | None,
                    now: datetime) -> list[Bar]:
        return []


class HostileFeed:
    """A feed that hands over, per cycle, whatever the scenario scripted for that cycle:
    the bars that closed, interleaved with junk, ignoring ``since`` (a feed re-sending
    old bars is one of the faults)."""

    def __init__(self, batches: Sequence[dict[Stream, list[Bar]]]) -> None:
        self.batches = batches
        self.cycle = -1

    def closed_bars(self, symbol: str, timeframe: str, since: datetime | None,
                    now: datetime) -> list[Bar]:
        return list(self.batches[self.cycle].get((symbol, timeframe), ()))


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Junk:
    """One bad bar to hand over at ``slot`` of stream ``stream``, before or after that
    slot's valid bar. ``kind`` picks the fault, ``a`` and ``b`` parametrise it."""

    slot: int
    stream: int
    before: bool
    kind: str
    a: Any = 0
    b: Any = 0


@dataclass(frozen=True)
class Plan:
    slots: int
    segments: tuple[int, int]  # sample segment per stream
    dropped: tuple[frozenset[int], frozenset[int]] = (frozenset(), frozenset())
    jumps: tuple[tuple[int, int], ...] = ()  # (slot, extra slots): the grid jumps ahead
    merged: frozenset[int] = frozenset()  # slots whose cycle also takes the next slot
    offset_slots: frozenset[int] = frozenset()  # valid bars handed over in non-UTC time
    offset: timedelta = timedelta(hours=2)
    junk: tuple[Junk, ...] = ()


@dataclass(frozen=True)
class Item:
    stream: Stream
    bar: Bar
    kind: str  # "valid" or the junk kind
    reason: str | None  # the rejection reason the validator's contract gives; None if valid


@dataclass
class Scenario:
    warm: dict[Stream, list[Bar]]
    cycles: list[tuple[datetime, dict[Stream, list[Item]]]] = field(default_factory=list)

    def items(self) -> Iterator[Item]:
        """In the order the daemon handles them: cycle, then stream, then as handed over."""
        for _now, batches in self.cycles:
            for stream in STREAMS:
                yield from batches.get(stream, ())

    def batches(self, *, junk: bool = True) -> list[dict[Stream, list[Bar]]]:
        return [{s: [i.bar for i in items if junk or i.reason is None]
                 for s, items in batches.items()} for _now, batches in self.cycles]


PRICE_KINDS = ("non_finite", "wrong_type", "uncaught_types", "non_positive", "high_below_low",
               "open_outside", "close_outside", "negative_volume", "negative_spread")
TIME_KINDS = ("duplicate", "out_of_order", "misaligned", "not_closed", "naive_time",
              "not_a_datetime")
STREAM_KINDS = ("foreign_symbol", "foreign_timeframe", "unknown_timeframe")
# Drawn with equal weight: each kind is about 1/18 of the junk. "uncaught_types",
# "naive_time", "not_a_datetime" and the two foreign kinds crashed the daemon or reached a
# strategy until fixed; a regression test at the end pins each of those bugs on a fixed
# example as well.
SUPPORTED_KINDS = (*PRICE_KINDS, *TIME_KINDS, *STREAM_KINDS)

# The validator's contract: the reason each kind is rejected with. Its checks run in the
# order stream (an unknown timeframe included), values, time, so a bar with two faults gets
# the first one's reason: a foreign bar with a NaN or a naive time too is ``wrong_stream``.
_REASON = {"non_finite": "non_finite", "wrong_type": "non_finite",
           "uncaught_types": "non_finite",
           "non_positive": "non_positive_price", "high_below_low": "high_below_low",
           "open_outside": "open_outside_range", "close_outside": "close_outside_range",
           "negative_volume": "negative_volume", "negative_spread": "negative_spread",
           "duplicate": "duplicate", "out_of_order": "out_of_order",
           "misaligned": "misaligned", "not_closed": "not_closed",
           "naive_time": "invalid_time", "not_a_datetime": "invalid_time",
           "foreign_symbol": "wrong_stream", "foreign_timeframe": "wrong_stream",
           "unknown_timeframe": "unknown_timeframe"}


def build_scenario(plan: Plan) -> Scenario:
    """Resolve a plan into the bars each cycle hands over, each labelled valid or with the
    rejection it must get. Junk is built against the stream's state where it is handed
    over (the last accepted bar, the cycle's ``now``), so its label is exact."""
    rows = sample_rows()
    jumps = dict(plan.jumps)
    slot_time: list[datetime] = []
    shift = 0
    for s in range(plan.slots):
        shift += jumps.get(s, 0)
        slot_time.append(T0 + (s + shift) * STEP)
    settle = timedelta(seconds=example_settings().scheduler.settle_delay_seconds)
    tz = timezone(plan.offset)

    valid: dict[tuple[int, int], Bar] = {}  # (stream, slot) -> valid bar
    warm: dict[Stream, list[Bar]] = {}
    for k, (symbol, tf) in enumerate(STREAMS):
        seg = rows[plan.segments[k] * SEGMENT:(plan.segments[k] + 1) * SEGMENT]
        warm[(symbol, tf)] = [_bar(symbol, seg[i], T0 - (WARM - i) * STEP)
                              for i in range(WARM)]
        j = WARM
        for s in range(plan.slots):
            if s in plan.dropped[k]:
                continue
            t = slot_time[s]
            valid[(k, s)] = _bar(symbol, seg[j], t.astimezone(tz) if s in plan.offset_slots
                                 else t)
            j += 1

    junk_at: dict[tuple[int, int, bool], list[Junk]] = {}
    for jk in plan.junk:
        junk_at.setdefault((jk.stream, jk.slot % plan.slots, jk.before), []).append(jk)

    scenario = Scenario(warm)
    last: dict[int, Bar] = {k: warm[s][-1] for k, s in enumerate(STREAMS)}
    cycle_slots: list[int] = []
    for s in range(plan.slots):
        cycle_slots.append(s)
        if s in plan.merged and s < plan.slots - 1:
            continue  # this cycle catches up: the next slot closes in it too
        now = slot_time[s] + STEP + settle
        batches: dict[Stream, list[Item]] = {}
        for k, stream in enumerate(STREAMS):
            out: list[Item] = []
            for slot in cycle_slots:
                bar = valid.get((k, slot))
                for jk in junk_at.get((k, slot, True), ()):
                    out.append(_junk(jk, stream, last[k], bar, slot_time[slot], now))
                if bar is not None:
                    out.append(Item(stream, bar, "valid", None))
                    last[k] = bar
                for jk in junk_at.get((k, slot, False), ()):
                    out.append(_junk(jk, stream, last[k], bar, slot_time[slot], now))
            batches[stream] = out
        scenario.cycles.append((now, batches))
        cycle_slots = []
    return scenario


def _bar(symbol: str, row: Bar, t: datetime) -> Bar:
    """The sample's ``row`` as a bar of ``symbol`` at ``t``."""
    return a_bar(symbol=symbol, timeframe=TF, time=t, open=row.open, high=row.high,
                 low=row.low, close=row.close, volume=row.volume, spread=row.spread)


def _junk(jk: Junk, stream: Stream, last: Bar, upcoming: Bar | None, slot_time: datetime,
          now: datetime) -> Item:
    """The junk bar ``jk`` describes, given the last accepted bar of its stream and the
    slot's valid bar (its template: a corrupted copy of the bar about to arrive)."""
    base = upcoming or replace(last, time=slot_time)
    kind, a, b = jk.kind, jk.a, jk.b
    h, lo = base.high, base.low
    bar: Bar
    if kind in ("non_finite", "wrong_type"):  # a: field, b: its value
        bar = replace(base, **{a: b})
    elif kind == "non_positive":  # a: fields set to b (<= 0)
        bar = replace(base, **dict.fromkeys(a, b))
    elif kind == "high_below_low":  # a in (0, 1): high = low * a
        bar = replace(base, high=lo * a)
        if not bar.high < bar.low:
            bar = replace(bar, high=math.nextafter(lo, 0.0))
    elif kind in ("open_outside", "close_outside"):  # a: above?, b: distance factor > 0
        name = "open" if kind == "open_outside" else "close"
        value = h * (1.0 + b) if a else lo * (1.0 - b)
        if a and not value > h:
            value = math.nextafter(h, math.inf)
        if not a and not (0.0 < value < lo):
            value = math.nextafter(lo, 0.0)
        bar = replace(base, **{name: value})
    elif kind == "negative_volume":
        bar = replace(base, volume=-a)
    elif kind == "negative_spread":
        bar = replace(base, spread=-a)
    elif kind == "unknown_timeframe":
        bar = replace(base, timeframe=a)
    elif kind == "duplicate":  # a: exact copy of the last bar, or the slot's prices
        src = last if a else base
        bar = replace(src, time=_as(last.time, b))
    elif kind == "out_of_order":  # a: bars back
        bar = replace(base, time=_as(last.time - a * STEP, b))
    elif kind == "misaligned":  # a: bars ahead, b: microseconds off the grid
        bar = replace(base, time=last.time + a * STEP + timedelta(microseconds=b))
    elif kind == "not_closed":  # a: bars after the cycle's last closed slot
        closing = now - STEP - timedelta(seconds=example_settings().scheduler
                                         .settle_delay_seconds)
        bar = replace(base, time=_as(closing + a * STEP, b))
        assert bar.close_time > now
    elif kind == "naive_time":  # a: how the zone was lost, b: the slot's time or the last's
        t = (last.time if b else base.time).astimezone(UTC)
        bar = replace(base, time=t.replace(tzinfo=None) if a == 0  # naive UTC
                      else (t + BROKER_OFFSET).replace(tzinfo=None) if a == 1  # naive server
                      else t.replace(tzinfo=NoOffset()))  # a zone without an offset
    elif kind == "not_a_datetime":  # a: the time value, or a function of the slot's time
        bar = replace(base, time=a(base.time) if callable(a) else a)
    elif kind == "foreign_symbol":  # a: symbol, b: a second fault (NaN close, naive time)
        assert a != stream[0], "not a foreign symbol"
        bar = replace(base, symbol=a)
        if b == 1:
            bar = replace(bar, close=math.nan)
        elif b == 2:
            bar = replace(bar, time=bar.time.astimezone(UTC).replace(tzinfo=None))
    elif kind == "foreign_timeframe":  # a: timeframe, b: its bars after the last accepted
        assert normalize_timeframe(a) != normalize_timeframe(stream[1]), "not foreign"
        bar = replace(base, timeframe=a, time=last.time + b * timedelta(
            seconds=timeframe_seconds(a)))
    elif kind == "uncaught_types":  # a: the type every price, volume and spread is cast to
        bar = replace(base, **{f: a(getattr(base, f)) for f in FIELDS})
    else:  # pragma: no cover
        raise AssertionError(kind)
    return Item(stream, bar, kind, _REASON[kind])


def _as(t: datetime, hours: int) -> datetime:
    """The same instant, written with a UTC offset of ``hours`` (0: UTC)."""
    return t.astimezone(timezone(timedelta(hours=hours))) if hours else t


FIELDS = ("open", "high", "low", "close", "volume", "spread")  # a bar's six values
BROKER_OFFSET = timedelta(hours=2)  # a naive time in server time: the classic MT5 slip


class NoOffset(tzinfo):
    """A zone that knows no offset: a datetime carrying it is naive all the same."""

    def utcoffset(self, dt: datetime | None) -> None:
        return None

    def dst(self, dt: datetime | None) -> None:
        return None

    def tzname(self, dt: datetime | None) -> None:
        return None


# --------------------------------------------------------------------------- running


@dataclass
class Facts:
    """What one run left behind: the journal's rows and the executor's end state."""

    bars: dict[Stream, list[tuple[Any, ...]]]
    bar_streams: set[str]
    rejected: list[RejectedBarRow]
    proposals: list[tuple[Any, ...]]
    orders: list[tuple[Any, ...]]
    traces: dict[str, dict[str, Any]]
    fills: list[tuple[Any, ...]]
    snapshots: dict[Stream, MarketSnapshot]
    processed: int
    rejections: int
    gaps: int
    errors: dict[str, int]
    sent: int
    decisions: list[tuple[Any, ...]]
    signals: list[list[dict[str, Any]]]
    calls: list[ProviderCallRow]


def run_daemon(scenario: Scenario, *, junk: bool = True,
               settings: Settings | None = None) -> Facts:
    """Every cycle of ``scenario`` through a fresh daemon on a fresh in-memory journal
    (with the junk, or only the valid bars); the facts it journaled."""
    s = settings or example_settings()
    journal = Journal.open("sqlite://")
    for bars in scenario.warm.values():  # already processed before this life, as after
        for bar in bars:                 # a restart: start() warms the snapshots on them
            journal.runs.record_bar(bar)
    journal.commit()
    broker = TimedPaperBroker(contract_size=s.paper.contract_size,
                              initial_balance=s.paper.initial_balance)
    feed = HostileFeed(scenario.batches(junk=junk))
    executor = build_executor(s, journal, feed, STREAMS, broker, mode="live")
    failed = True
    try:
        executor.start()
        for c, (now, batches) in enumerate(scenario.cycles):
            feed.cycle = c
            try:
                executor.run_cycle(now)
            except Exception as exc:
                handed = {f"{k[0]}": [i.kind for i in v if junk or i.reason is None]
                          for k, v in batches.items()}
                raise AssertionError(f"run_cycle raised at cycle {c} (now {now}), which "
                                     f"handed over {handed}: {exc!r}") from exc
            assert executor.fatal_error is None, (c, executor.fatal_error)
            assert not executor.stop_requested.is_set(), c
        facts = _facts(executor, journal, broker)
        failed = False
        return facts
    finally:
        try:
            executor.stop()
        except Exception:
            if not failed:
                raise
            executor.c.ensemble.close()  # the journal is wedged: release the pool anyway
        finally:
            journal.close()


def _facts(executor: RealtimeExecutor, journal: Journal, broker: TimedPaperBroker) -> Facts:
    journal.commit()
    session = journal.uow.session
    orders = journal.orders.all()
    return Facts(
        bars={st_: [(b.time, b.open, b.high, b.low, b.close, b.volume, b.spread)
                    for b in journal.runs.iter_bars(*st_)] for st_ in STREAMS},
        bar_streams=set(journal.queries.bar_counts()["processed"]),
        rejected=list(session.scalars(select(RejectedBarRow).order_by(RejectedBarRow.id))),
        proposals=[(p.strategy, p.symbol, p.timeframe, p.bar_time, p.direction, p.entry,
                    p.stop, p.target, p.reason) for p in
                   session.scalars(select(ProposalRow).order_by(ProposalRow.id))],
        orders=[(o.client_order_id, o.intent.symbol, o.intent.side, o.intent.volume,
                 o.intent.bar_time, o.intent.stop_loss, o.intent.take_profit,
                 o.intent.decision_id, o.state, o.filled_volume, o.avg_fill_price)
                for o in orders],
        traces={o.client_order_id: journal.queries.trace(o.client_order_id) or {} for o in orders},
        fills=[(f.client_order_id, f.fill_id, f.symbol, f.side, f.time, f.price, f.volume)
               for f in journal.orders.fills()],
        snapshots=dict(executor.cycle.snapshots),
        processed=executor.stats.bars_processed,
        rejections=sum(executor.stats.bars_rejected.values()),
        gaps=executor.stats.gaps_flagged,
        errors=dict(executor.stats.errors),
        sent=len(broker.submits),
        decisions=[(d.direction, d.confidence, d.agreement, d.voters, d.contributions)
                   for d in session.scalars(select(DecisionRow).order_by(DecisionRow.id))],
        signals=[d.signals or [] for d in
                 session.scalars(select(DecisionRow).order_by(DecisionRow.id))],
        calls=journal.provider_calls.all(limit=1_000_000),
    )


# --------------------------------------------------------------------------- hypothesis

FAST = dict(deadline=None, derandomize=True, database=None,
            # No shrinking: a daemon run per step makes it minutes long; a failure names
            # the cycle and the bars handed over, and hypothesis prints the whole plan.
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
