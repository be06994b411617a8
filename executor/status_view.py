"""Where the account stands, as one value: what `dta status` prints and the console's
Overview page draws, built once from the journal and the settings at a given ``now``.

Read through ``executor/journal/direct.py`` (the database driver alone), so `dta status`
answers within its 300 ms without importing SQLAlchemy; the console builds the same value
from the same reads, so the two cannot disagree.

Equity, PnL, positions and the equity curve: ``executor/status_equity.py`` says how they
are computed (from the journal's fills; no broker is asked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from domain import timeframe_seconds
from executor.journal import status_reads as reads
from executor.status_equity import EquityPoint, EquityView, PositionView, equity_view

if TYPE_CHECKING:
    from executor.journal.direct import DirectReader
    from executor.settings import Settings

__all__ = ["DEFAULT_STALE_BARS", "EquityPoint", "EquityView", "PositionView", "StatusView",
           "build_status_view", "human_duration"]

# A stream is stale after this many bar lengths without a new bar when the
# ``stale_after_bars`` guardrail is not set (with it set, the guardrail's own figure).
DEFAULT_STALE_BARS = 2.0
OPEN_INCIDENTS = ("open", "acknowledged")


def human_duration(seconds: float | None) -> str:
    """A duration for people: "42 s", "3 min", "2 h 5 min", "3 d 4 h", "1,162 d"."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    if d < 30:
        return f"{d} d {h} h" if h else f"{d} d"
    return f"{d:,} d"


@dataclass(frozen=True, slots=True)
class TradingStateView:
    state: str
    operator: str | None
    reason: str | None
    trigger: str | None
    since: datetime | None


@dataclass(frozen=True, slots=True)
class StreamView:
    symbol: str
    timeframe: str
    bars: int
    last_bar: datetime | None  # the newest journaled bar's open time
    last_close: float | None
    age_s: float | None  # since that bar closed
    stale_after_s: float
    stale: bool

    @property
    def name(self) -> str:
        return f"{self.symbol}/{self.timeframe}"


@dataclass(frozen=True, slots=True)
class WorkingOrderView:
    client_order_id: str
    symbol: str
    side: str
    volume: float
    filled_volume: float
    state: str
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class IncidentView:
    id: int
    at: datetime | None
    severity: str
    kind: str
    status: str
    message: str
    age_s: float | None


@dataclass(frozen=True, slots=True)
class ApprovalView:
    id: int
    decision_id: int
    symbol: str
    direction: str
    why: str
    created_at: datetime | None
    expires_at: datetime | None
    clock: str  # wall | replay: the clock its expiry is judged on
    time_left_s: float | None  # on that clock; 0 once past (it expires at the next look)


@dataclass(frozen=True, slots=True)
class ProviderView:
    provider: str
    kind: str | None
    weight: float | None
    in_rotation: bool
    disabled_by: str | None
    disabled_reason: str | None
    breaker: str
    breaker_since: datetime | None


@dataclass(frozen=True, slots=True)
class StatusView:
    now: datetime
    account: str
    mode: str
    cleared_mode: str
    strategy: str
    journal: str
    settings_params_hash: str
    active_version: int | None
    active_hash: str | None
    param_versions: int
    trading_state: TradingStateView
    last_run: dict[str, Any] | None
    streams: tuple[StreamView, ...]
    rejected: dict[str, int]
    equity: EquityView
    positions: tuple[PositionView, ...]
    working_orders: tuple[WorkingOrderView, ...]
    orders_by_state: dict[str, int]
    incidents: tuple[IncidentView, ...]
    approvals: tuple[ApprovalView, ...]
    providers: tuple[ProviderView, ...] = field(default_factory=tuple)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    @property
    def stale_streams(self) -> tuple[StreamView, ...]:
        return tuple(s for s in self.streams if s.stale)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (`dta status --json`): timestamps ISO 8601 UTC, ages in seconds and in
        human units. Keeps the keys the command always had: ``configured_mode``,
        ``params_hash``, ``streams`` by ``SYMBOL/TF`` with ``count``, ``last`` and
        ``age_s``, ``params``, ``providers`` with ``provider`` and ``breaker``."""
        out: dict[str, Any] = _jsonable({f: getattr(self, f) for f in self.__slots__})
        out["configured_mode"] = self.mode
        out["params_hash"] = self.settings_params_hash
        out["params"] = {"active_version": self.active_version,
                         "active_hash": self.active_hash, "versions": self.param_versions}
        out["streams"] = {s.name: {**_jsonable(asdict(s)), "count": s.bars,
                                   "last": _jsonable(s.last_bar), "age": human_duration(s.age_s)}
                          for s in self.streams}
        for a, row in zip(self.approvals, out["approvals"], strict=True):
            row["time_left"] = human_duration(a.time_left_s)
        for i, row in zip(self.incidents, out["incidents"], strict=True):
            row["age"] = human_duration(i.age_s)
        out["rejected_total"] = self.rejected_total
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return _jsonable(asdict(value))
    return value


def build_status_view(reader: DirectReader, settings: Settings, now: datetime) -> StatusView:
    """The whole view, from one snapshot of the journal (``reader``) at ``now``."""
    from guardrails.params import ACTIVATING

    ts = reads.trading_state(reader)
    active = reads.active_param_version(reader, ACTIVATING)
    content = active["content"] if active else settings.parameter_set().values
    streams = _streams(reader, settings, now)
    marks = {s.symbol: s.last_close for s in streams if s.last_close is not None}
    mark_time = max((s.last_bar + timedelta(seconds=timeframe_seconds(s.timeframe))
                     for s in streams if s.last_bar is not None), default=None)
    positions, equity = _equity(reader, settings, now, marks, mark_time)
    return StatusView(
        now=now, account=settings.account, mode=settings.mode,
        cleared_mode=_cleared_mode(reader, settings), strategy=settings.strategy.name,
        journal=reader.url, settings_params_hash=settings.parameter_set().content_hash,
        active_version=active["version"] if active else None,
        active_hash=active["hash"] if active else None,
        param_versions=reads.param_version_count(reader),
        trading_state=TradingStateView(
            ts["state"], ts["operator"], ts["reason"], ts["trigger"], ts["at"])
        if ts else TradingStateView("ACTIVE", None, None, None, None),
        last_run=reads.last_run(reader), streams=streams,
        rejected=reads.rejected_counts(reader), equity=equity, positions=positions,
        working_orders=tuple(WorkingOrderView(
            o["client_order_id"], o["symbol"], o["side"], float(o["volume"]),
            float(o["filled_volume"] or 0.0), o["state"], o["created_at"])
            for o in reads.working_orders(reader, settings.account)),
        orders_by_state=reads.order_counts(reader),
        incidents=tuple(IncidentView(
            i["id"], i["at"], i["severity"], i["kind"], i["status"], i["message"],
            (now - i["at"]).total_seconds() if i["at"] else None)
            for i in reads.incidents(reader, OPEN_INCIDENTS)),
        approvals=_approvals(reader, now),
        providers=_providers(reader, settings, content, now))


def _streams(reader: DirectReader, settings: Settings,
             now: datetime) -> tuple[StreamView, ...]:
    from guardrails.monitors import StaleFeedMonitor

    stale_bars = settings.guardrails.stale_after_bars or DEFAULT_STALE_BARS
    out = []
    for s in reads.streams(reader):
        tf = timeframe_seconds(s["timeframe"])
        close_time = s["last"] + timedelta(seconds=tf) if s["last"] else None
        monitor = StaleFeedMonitor(stale_bars, tf)
        out.append(StreamView(
            s["symbol"], s["timeframe"], s["bars"], s["last"], s["close"],
            (now - close_time).total_seconds() if close_time else None,
            monitor.limit.total_seconds(),
            close_time is None or monitor.observe(now, close_time) is not None))
    return tuple(out)


def _approvals(reader: DirectReader, now: datetime) -> tuple[ApprovalView, ...]:
    from executor.approval_request import replay_clock_now

    out = []
    for a in reads.pending_approvals(reader):
        intent = a["intent"] or {}
        clock = str(intent.get("clock", "wall"))
        clock_now = now
        if clock == "replay" and intent.get("timeframe"):
            last = reads.last_bar_time(reader, a["symbol"], str(intent["timeframe"]))
            clock_now = replay_clock_now(str(intent["timeframe"]), last, a["created_at"])
        left = ((a["expires_at"] - clock_now).total_seconds()
                if a["expires_at"] is not None else None)
        out.append(ApprovalView(a["id"], a["decision_id"], a["symbol"], a["direction"],
                                a["why"], a["created_at"], a["expires_at"], clock,
                                max(0.0, left) if left is not None else None))
    return tuple(out)


def _cleared_mode(reader: DirectReader, settings: Settings) -> str:
    from guardrails.clearance import cleared_mode

    events = reads.clearance_events(reader, settings.account, settings.strategy.name)

    class _Store:
        def clearances(self, account: str | None = None,
                       strategy: str | None = None) -> Sequence[_Clearance]:
            return [_Clearance(e["action"], e["mode"]) for e in events]

    return cleared_mode(_Store(), settings.account, settings.strategy.name)


@dataclass(frozen=True, slots=True)
class _Clearance:
    action: str
    mode: str


def _providers(reader: DirectReader, settings: Settings, content: dict[str, Any],
               now: datetime) -> tuple[ProviderView, ...]:
    from executor.provider_state import breaker_state

    configured = dict(content.get("ensemble", {}).get("providers", {}))
    disabled, breakers = reads.provider_events(reader)
    cooldown_s = settings.ensemble.breaker.cooldown_s
    out = []
    for name, cfg in configured.items():
        off = disabled.get(name)
        event = breakers.get(name)
        out.append(ProviderView(
            name, cfg.get("kind"), cfg.get("weight"), off is None,
            off["operator"] if off else None, off["reason"] if off else None,
            breaker_state(event["action"] if event else None,
                          event["at"] if event else None, cooldown_s, now),
            event["at"] if event else None))
    return tuple(out)


def _equity(reader: DirectReader, settings: Settings, now: datetime,
            marks: dict[str, float], mark_time: datetime | None,
            ) -> tuple[tuple[PositionView, ...], EquityView]:
    fills = reads.account_fills(reader, settings.account)
    baseline = reads.day_baseline(reader, settings.account)
    return equity_view(fills, settings=settings, now=now, marks=marks, mark_time=mark_time,
                       baseline=baseline, costs=reads.account_costs(reader, settings.account))
