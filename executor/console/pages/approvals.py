"""Approvals: the queue with each request's time left (on the request's own clock: the
wall clock live, the replay's bar closes in a replay), per request a price chart with the
SMC context and the proposed entry, stop and target, each provider's signal, confidence
and rationale (provider text: escaped and labelled, ``ensemble.provider_text.shown``), why
it was queued, approve / reject with a note in one click, and the weight change a verdict
caused. ``/approvals/{id}`` shows one request (notifications link there).

A verdict goes through ``executor.operator_actions.decide_approval``, as `dta approvals
approve|reject` does: the console role ``analyst`` and, with [governance.people], the
person's binding."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from executor.console.charts import chart
from executor.console.web import (
    CheckedForm,
    SignedIn,
    console_of,
    flash,
    refusals,
    render,
    require,
    text_field,
)
from executor.journal.models import ApprovalRow
from executor.journal.store import Journal

router = APIRouter()
DECIDE_ROLE = "analyst"
CHART_BARS = 120
RECENT_DECIDED = 10


def _weight_change(journal: Journal, approval_id: int) -> dict[str, Any] | None:
    """The parameter version a verdict's weight feedback created, with the weights
    before and after (None: the verdict moved no weight)."""
    from guardrails.params import weights_of

    versions = journal.params.param_versions()
    by_number = {v.version: v for v in versions}
    tag = f"weight feedback: request #{approval_id} "
    for v in versions:
        if v.reason.startswith(tag):
            parent = by_number.get(v.parent) if v.parent is not None else None
            before = weights_of(parent.content) if parent else {}
            after = weights_of(v.content)
            return {"version": v.version, "changes": [
                {"provider": p, "before": before.get(p), "after": w}
                for p, w in sorted(after.items()) if before.get(p) != w]}
    return None


def request_view(journal: Journal, a: ApprovalRow, wall_now: datetime, *,
                 with_chart: bool = True) -> dict[str, Any]:
    """One request as the page shows it."""
    from domain.errors import MalformedApproval
    from ensemble.provider_text import instruction_flags, shown
    from executor.approval_request import ApprovalRequest
    from executor.approvals import request_clock

    assert a.id is not None
    try:
        req: ApprovalRequest | None = ApprovalRequest.from_payload(a.intent)
    except MalformedApproval:
        req = None
    clock, now = request_clock(journal, a, wall_now)
    signals = [{"provider": s.get("provider"), "direction": s.get("direction"),
                "confidence": s.get("confidence"), "abstain_reason": s.get("abstain_reason"),
                "rationale": shown(s.get("rationale"), max_chars=1000),
                "flags": instruction_flags(s.get("rationale"))}
               for s in journal.decisions.decision_signals(a.decision_id)]
    view: dict[str, Any] = {
        "id": a.id, "status": a.status, "symbol": a.symbol, "direction": a.direction,
        "why": a.why, "created_at": a.created_at, "expires_at": a.expires_at,
        "clock": clock, "clock_now": now,
        "seconds_left": max(0.0, (a.expires_at - now).total_seconds()),
        "operator": a.operator, "note": a.note, "decided_at": a.decided_at,
        "client_order_id": a.client_order_id, "request": req, "signals": signals,
        "weight_change": _weight_change(journal, a.id) if a.status != "pending" else None,
        "chart": None}
    if with_chart and req is not None:
        view["chart"] = _chart_of(journal, a, req)
    return view


def _chart_of(journal: Journal, a: ApprovalRow, req: Any) -> dict[str, Any]:
    proposal = journal.decisions.proposal_of(a.decision_id)
    bars = journal.runs.bars_until(a.symbol, req.timeframe, req.bar_time, CHART_BARS)
    marker = {"time": req.bar_time, "position": "belowBar" if req.side.value == "buy"
              else "aboveBar", "color": "#6cb4ff", "shape": "arrowUp"
              if req.side.value == "buy" else "arrowDown", "text": f"request #{a.id}"}
    return chart(bars, snapshot=(proposal or {}).get("snapshot"),
                 levels={"entry": req.entry, "stop": req.stop_loss,
                         "target": req.take_profit}, markers=[marker])


def approvals_data(journal: Journal, wall_now: datetime) -> dict[str, Any]:
    """Pending requests (oldest first, each with its chart) and the latest decided."""
    pending = journal.approvals.all("pending")
    decided = [a for a in journal.approvals.all() if a.status != "pending"]
    return {"pending": [request_view(journal, a, wall_now) for a in pending],
            "decided": [request_view(journal, a, wall_now, with_chart=False)
                        for a in decided[-RECENT_DECIDED:][::-1]]}


def _can_decide(user: Any) -> bool:
    return DECIDE_ROLE in user.roles


@router.get("/approvals", response_class=HTMLResponse)
def approvals_page(request: Request, user: SignedIn) -> Response:
    with console_of(request).journal() as j:
        data = approvals_data(j, datetime.now(UTC))
    return render(request, "approvals.html", user, page="approvals",
                  can_decide=_can_decide(user), **data)


@router.get("/approvals/queue", response_class=HTMLResponse)
def approvals_fragment(request: Request, user: SignedIn) -> Response:
    """The queue alone: what a live update (``dta:approvals``) re-renders."""
    with console_of(request).journal() as j:
        data = approvals_data(j, datetime.now(UTC))
    return render(request, "partials/approvals_queue.html", user,
                  can_decide=_can_decide(user), **data)


@router.get("/approvals/{approval_id}", response_class=HTMLResponse)
def approval_page(request: Request, approval_id: int, user: SignedIn) -> Response:
    with console_of(request).journal() as j:
        a = j.approvals.get_approval(approval_id)
        if a is None:
            raise HTTPException(404, f"no approval request #{approval_id}")
        view = request_view(j, a, datetime.now(UTC))
    return render(request, "approval.html", user, page="approvals", a=view,
                  can_decide=_can_decide(user))


@router.post("/approvals/{approval_id}/decide", response_class=HTMLResponse)
def decide_request(request: Request, approval_id: int, user: SignedIn,
                   form: CheckedForm) -> Response:
    from executor.operator_actions import decide_approval

    require(request, user, DECIDE_ROLE)
    verdict = text_field(form, "verdict")
    if verdict not in ("approve", "reject"):
        raise HTTPException(422, "verdict must be approve or reject")
    console = console_of(request)
    settings = console.settings
    with refusals(), console.journal() as j:
        outcome = decide_approval(j, settings.governance, settings.guardrails.weight_feedback,
                                  approval_id, approve=verdict == "approve",
                                  person=user.name, note=text_field(form, "note"),
                                  now=datetime.now(UTC))
    extra = (f"; provider weights now {outcome.weights} (parameter v"
             f"{outcome.new_param_version})" if outcome.new_param_version else "")
    return flash(request, f"request #{approval_id} {outcome.status} by {user.name}{extra}",
                 topics=("approvals", "params"))
