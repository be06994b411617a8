"""Journal tables. Every step of a cycle writes what it decided and why, so that
``dta trace ORDER_ID`` can show the bar, snapshot, proposal, decision, verdict, order and
fills behind any order. Schema changes go through Alembic (``dta db upgrade``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from executor.journal.types import UTCDateTime


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"
    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = _ts()
    ended_at: datetime | None = _ts(nullable=True)
    mode: str
    account: str
    settings_hash: str
    params_hash: str
    status: str = "running"
    summary: dict[str, Any] | None = _json()


class BarRow(SQLModel, table=True):
    """A bar that passed validation and went through the cycle: the resume point."""

    __tablename__ = "bars"
    __table_args__ = (UniqueConstraint("symbol", "timeframe", "time", name="uq_bar"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = None
    symbol: str
    timeframe: str
    time: datetime = _ts()
    open: float
    high: float
    low: float
    close: float
    volume: float
    spread: float
    gap_bars: int = 0


class RejectedBarRow(SQLModel, table=True):
    __tablename__ = "rejected_bars"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = None
    symbol: str
    timeframe: str
    time: datetime | None = _ts(nullable=True)
    reason: str = Field(index=True)
    detail: str = ""


class ParameterSetRow(SQLModel, table=True):
    __tablename__ = "parameter_sets"
    hash: str = Field(primary_key=True)
    created_at: datetime = _ts()
    content: dict[str, Any] | None = _json()


class ProposalRow(SQLModel, table=True):
    __tablename__ = "proposals"
    __table_args__ = (Index("ix_proposal_symbol_time", "symbol", "bar_time"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = None
    strategy: str
    symbol: str
    timeframe: str
    bar_time: datetime = _ts()
    direction: str
    entry: float
    stop: float
    target: float
    reason: str
    tags: list[str] | None = _json()
    snapshot: dict[str, Any] | None = _json()


class DecisionRow(SQLModel, table=True):
    __tablename__ = "decisions"
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(index=True)
    direction: str
    confidence: float
    agreement: int
    voters: int
    provider_mix: list[str] | None = _json()
    signals: list[dict[str, Any]] | None = _json()
    contributions: dict[str, float] | None = _json()
    params_hash: str
    size_factor: float = Field(default=1.0, sa_column_kwargs={"server_default": "1.0"})


class VerdictRow(SQLModel, table=True):
    __tablename__ = "verdicts"
    id: int | None = Field(default=None, primary_key=True)
    decision_id: int = Field(index=True)
    approved: bool
    checks: list[dict[str, Any]] | None = _json()
    reasons: str = ""


class OrderRow(SQLModel, table=True):
    """Written and committed durably *before* the broker is called."""

    __tablename__ = "orders"
    client_order_id: str = Field(primary_key=True)
    run_id: int | None = None
    account: str = Field(index=True)
    symbol: str
    side: str
    volume: float
    order_type: str
    price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    reduce_only: bool = False
    bar_time: datetime = _ts()
    state: str = Field(index=True)
    filled_volume: float = 0.0
    avg_fill_price: float | None = None
    broker_order_id: str | None = None
    reason: str = ""
    decision_id: int | None = None
    params_hash: str = ""
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class OrderEventRow(SQLModel, table=True):
    """Every state transition of an order, in order: the audit trail."""

    __tablename__ = "order_events"
    id: int | None = Field(default=None, primary_key=True)
    client_order_id: str = Field(index=True)
    at: datetime = _ts()
    from_state: str | None = None
    to_state: str
    detail: str = ""


class FillRow(SQLModel, table=True):
    __tablename__ = "fills"
    fill_id: str = Field(primary_key=True)
    client_order_id: str = Field(index=True)
    symbol: str
    side: str
    time: datetime = _ts()
    price: float
    volume: float
    fee: float = 0.0
    kind: str = "entry"  # entry | stop_loss | take_profit | close
    realized_pnl: float = 0.0


class TradingStateEventRow(SQLModel, table=True):
    __tablename__ = "trading_state_events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    state: str  # ACTIVE | REDUCING | HALTED
    scope: str = "global"
    operator: str
    reason: str
    trigger: str = "manual"


class ParamVersionRow(SQLModel, table=True):
    """One version of the parameter set: strategy parameters, ensemble weights, guardrail
    limits. Append-only: a change is a new version with its parent; nothing is rewritten."""

    __tablename__ = "param_versions"
    version: int | None = Field(default=None, primary_key=True)
    hash: str = Field(index=True)
    content: dict[str, Any] | None = _json()
    parent: int | None = None
    author: str
    reason: str
    created_at: datetime = _ts()
    bad: bool = False  # set when an automatic rollback left this version
    evidence: dict[str, Any] | None = _json()  # why a tuning job proposed it


class ParamEventRow(SQLModel, table=True):
    """activate | rollback | auto_rollback events; the newest one names the active version."""

    __tablename__ = "param_events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    version: int = Field(index=True)
    action: str
    operator: str
    reason: str
    trigger: str | None = None


class ApprovalRow(SQLModel, table=True):
    """A decision waiting for a human: conflicting or low-confidence but otherwise allowed."""

    __tablename__ = "approvals"
    id: int | None = Field(default=None, primary_key=True)
    decision_id: int = Field(index=True)
    account: str
    symbol: str
    direction: str
    intent: dict[str, Any] | None = _json()
    why: str
    created_at: datetime = _ts()
    expires_at: datetime = _ts()
    status: str = Field(default="pending", index=True)  # pending|approved|rejected|expired|executed
    operator: str | None = None
    note: str | None = None
    decided_at: datetime | None = _ts(nullable=True)
    client_order_id: str | None = None


class IncidentRow(SQLModel, table=True):
    __tablename__ = "incidents"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    severity: str  # info | warning | high | critical
    kind: str
    message: str
    status: str = "open"  # open | acknowledged | resolved
    details: dict[str, Any] | None = _json()


class ProviderCallRow(SQLModel, table=True):
    """Telemetry of one provider call, for `dta providers matrix` and audits."""

    __tablename__ = "provider_calls"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    decision_id: int | None = Field(default=None, index=True)
    stage: str = ""  # research | risk | execution | vote
    provider: str = Field(index=True)
    provider_class: str = ""
    model: str = ""
    template_id: str | None = None
    template_version: str | None = None
    template_hash: str | None = None  # the rendered template's content hash
    replayed: bool = False  # answered from a recording, not by the provider
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    outcome: str
    abstained: bool = False
    error_class: str | None = None
    error: str | None = None  # the reason it abstained, was rejected or failed
    request_key: str | None = None
    raw_text: str | None = None
    input_json: str | None = None
    output_json: str | None = None


class ProviderEventRow(SQLModel, table=True):
    """An operator taking a provider out of rotation (disable) or back (enable), or the
    daemon journaling a breaker transition (``breaker_<state>``, operator ``system``)."""

    __tablename__ = "provider_events"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    provider: str = Field(index=True)
    action: str  # disable | enable | breaker_closed | breaker_open | breaker_half_open
    operator: str
    reason: str


class EaDealRow(SQLModel, table=True):
    """A deal of the desk's Expert Advisor, read in shadow mode (never one of ours)."""

    __tablename__ = "ea_deals"
    ticket: int = Field(primary_key=True)
    symbol: str = Field(index=True)
    time: datetime = _ts(index=True)
    side: str
    price: float
    volume: float
    entry: str = "in"
    sl: float | None = None
    tp: float | None = None
    magic: int = 0
    comment: str = ""
    run_id: int | None = None


class ClearanceRow(SQLModel, table=True):
    """Append-only promotion history: sign-offs, promotions and demotions per (account,
    strategy). The newest promote/demote names the mode the pair is cleared for."""

    __tablename__ = "clearances"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    account: str = Field(index=True)
    strategy: str
    action: str  # signoff | promote | demote
    mode: str
    role: str | None = None
    person: str
    note: str
    evidence: dict[str, Any] | None = _json()


class DayBaselineRow(SQLModel, table=True):
    """The account's equity at the start of a UTC trading day: the baseline of
    ``max_daily_loss`` and the daily drawdown halt. Journaled so neither a parameter
    version nor a restart starts the day over (a loss past the limit stays past it)."""

    __tablename__ = "day_baselines"
    account: str = Field(primary_key=True)
    day: datetime = Field(sa_column=Column(UTCDateTime(), primary_key=True))
    start_equity: float
    at: datetime = _ts()


class BrokerErrorRow(SQLModel, table=True):
    """One broker error (a rejected or unanswered order, a failed feed read): the window of
    the broker-error halt, rebuilt from here after a restart or a new parameter version."""

    __tablename__ = "broker_errors"
    id: int | None = Field(default=None, primary_key=True)
    account: str = Field(index=True)
    at: datetime = _ts()
    kind: str
    detail: str = ""


class CostRow(SQLModel, table=True):
    """A cost of holding a position that no fill shows: a perpetual swap's funding
    payments (``kind`` "funding"), read from the exchange. Keyed by the exchange's own id
    of the payment, so one read twice (an overlapping poll, a restart) is recorded once.
    ``amount`` is what the account received, in ``currency`` (the settlement asset):
    negative when it paid, as the exchange books it."""

    __tablename__ = "costs"
    account: str = Field(primary_key=True)
    cost_id: str = Field(primary_key=True)
    kind: str
    symbol: str
    time: datetime = _ts(index=True)
    amount: float
    currency: str
    recorded_at: datetime = _ts()
