"""An analyst's verdict on a queued decision, and the weight feedback it carries.

Thin over the journal so `dta approvals approve|reject` and tests share one code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.errors import NotFound, OperatorRefusal
from executor.journal.store import Journal
from executor.settings import WeightFeedbackSettings
from guardrails.approvals import Vote, updated_weights
from guardrails.params import active_version, first_weights, weights_of, with_weights


class ApprovalError(OperatorRefusal):
    """The request cannot be decided (already decided, expired, no operator or note)."""


class UnknownApproval(ApprovalError, NotFound):
    """No request has that number."""


@dataclass(frozen=True, slots=True)
class ApprovalOutcome:
    approval_id: int
    status: str
    new_param_version: int | None
    weights: dict[str, float]


def decide(journal: Journal, approval_id: int, *, approve: bool, operator: str, note: str,
           now: datetime, feedback: WeightFeedbackSettings) -> ApprovalOutcome:
    if not operator.strip() or not note.strip():
        raise ApprovalError("an operator and a note are required")
    request = journal.approvals.get_approval(approval_id)
    if request is None:
        raise UnknownApproval(f"no approval request #{approval_id}")
    if request.status != "pending":
        raise ApprovalError(f"request #{approval_id} is {request.status}, not pending")
    clock, now = request_clock(journal, request, now)
    if now >= request.expires_at:
        journal.approvals.set_approval_status(approval_id, "expired", expected="pending",
                                              decided_at=request.expires_at)
        raise ApprovalError(f"request #{approval_id} expired at "
                            f"{request.expires_at.isoformat()} on the {clock} clock (now "
                            f"{now.isoformat()}): it will never execute")
    status = "approved" if approve else "rejected"
    if not journal.approvals.set_approval_status(approval_id, status, expected="pending",
                                                 operator=operator, note=note, decided_at=now):
        raise ApprovalError(f"request #{approval_id} changed while deciding; look again")
    version, weights = _feed_weights(journal, request.decision_id, request.direction, approve,
                                      operator, approval_id, feedback)
    return ApprovalOutcome(approval_id, status, version, weights)


def request_clock(journal: Journal, request: Any, wall_now: datetime) -> tuple[str, datetime]:
    """Which clock a request's expiry is judged on, and that clock's time now. A request a
    replay made lives on the replay's clock: its "now" is the close of the newest bar the
    replay journaled for the request's stream (the replay stands there until it runs
    again), not the wall clock, which is always days past a replay's bars. A live
    daemon's request lives on the wall clock."""
    from domain.errors import MalformedApproval
    from executor.approval_request import ApprovalRequest, replay_clock_now

    try:
        shown = ApprovalRequest.from_payload(request.intent)
    except MalformedApproval:
        return "wall", wall_now
    if shown.clock != "replay":
        return "wall", wall_now
    last = journal.runs.last_bar_time(request.symbol, shown.timeframe)
    return "replay", replay_clock_now(shown.timeframe, last, request.created_at)


def _feed_weights(journal: Journal, decision_id: int, direction: str, approve: bool,
                  operator: str, approval_id: int,
                  feedback: WeightFeedbackSettings) -> tuple[int | None, dict[str, float]]:
    active = active_version(journal.params)
    if active is None or not feedback.enabled:
        return None, weights_of(active.content) if active else {}
    votes = [Vote(s["provider"], "flat" if s.get("abstain_reason") else s["direction"])
             for s in journal.decisions.decision_signals(decision_id)]
    current = weights_of(active.content)
    new = updated_weights(current, first_weights(journal.params), votes, direction, approve,
                          eta=feedback.eta, min_factor=feedback.min_factor,
                          max_factor=feedback.max_factor)
    if new == current:
        return None, current
    verdict = "approved" if approve else "rejected"
    reason = f"weight feedback: request #{approval_id} {verdict} by {operator}"
    created = journal.params.add_param_version(with_weights(active.content, new), active.version,
                                               "approval-feedback", reason)
    journal.params.add_param_event(created.version, "activate", "approval-feedback", reason)
    return created.version, new
