"""The journal's tables as SQLAlchemy Core sees them, for the statements the repositories
build (Core and prepared statements, not the ORM: see ``prepared.py``)."""

from __future__ import annotations

from typing import Any

from executor.journal.models import (
    ApprovalRow,
    BarRow,
    BrokerErrorRow,
    ClearanceRow,
    CostRow,
    DayBaselineRow,
    DecisionRow,
    EaDealRow,
    FillRow,
    IncidentRow,
    OrderEventRow,
    OrderRow,
    ParameterSetRow,
    ParamEventRow,
    ParamVersionRow,
    ProposalRow,
    ProviderCallRow,
    ProviderEventRow,
    RejectedBarRow,
    RunRow,
    TradingStateEventRow,
    VerdictRow,
)

RUNS: Any = RunRow.__table__  # type: ignore[attr-defined]
BARS: Any = BarRow.__table__  # type: ignore[attr-defined]
# A processed bar's buffered row, in this column order (``UnitOfWork.pending_bars``).
BAR_KEYS = ("run_id", "symbol", "timeframe", "time", "open", "high", "low", "close",
            "volume", "spread", "gap_bars")
REJECTS: Any = RejectedBarRow.__table__  # type: ignore[attr-defined]
PARAMETER_SETS: Any = ParameterSetRow.__table__  # type: ignore[attr-defined]
PROPOSALS: Any = ProposalRow.__table__  # type: ignore[attr-defined]
DECISIONS: Any = DecisionRow.__table__  # type: ignore[attr-defined]
VERDICTS: Any = VerdictRow.__table__  # type: ignore[attr-defined]
ORDERS: Any = OrderRow.__table__  # type: ignore[attr-defined]
ORDER_EVENTS: Any = OrderEventRow.__table__  # type: ignore[attr-defined]
FILLS: Any = FillRow.__table__  # type: ignore[attr-defined]
STATE_EVENTS: Any = TradingStateEventRow.__table__  # type: ignore[attr-defined]
PARAM_VERSIONS: Any = ParamVersionRow.__table__  # type: ignore[attr-defined]
PARAM_EVENTS: Any = ParamEventRow.__table__  # type: ignore[attr-defined]
APPROVALS: Any = ApprovalRow.__table__  # type: ignore[attr-defined]
INCIDENTS: Any = IncidentRow.__table__  # type: ignore[attr-defined]
PROVIDER_CALLS: Any = ProviderCallRow.__table__  # type: ignore[attr-defined]
PROVIDER_EVENTS: Any = ProviderEventRow.__table__  # type: ignore[attr-defined]
EA_DEALS: Any = EaDealRow.__table__  # type: ignore[attr-defined]
CLEARANCES: Any = ClearanceRow.__table__  # type: ignore[attr-defined]
DAY_BASELINES: Any = DayBaselineRow.__table__  # type: ignore[attr-defined]
BROKER_ERRORS: Any = BrokerErrorRow.__table__  # type: ignore[attr-defined]
COSTS: Any = CostRow.__table__  # type: ignore[attr-defined]
