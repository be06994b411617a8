"""The approval queue: decisions that wait for a person, and what happens to them.

A decision the guardrails only vetoed for want of a human (a conflict, low confidence) is
queued as an ``ApprovalRequest``: one typed value, the exact order the person is shown and
the exact order sent once approved. Requests expire at their deadline, on the clock they
were made on (bar closes in a replay); an approved one is re-checked against every hard
limit as the market is now, and sent through the decider's path. The operator's side
(`dta approvals approve|reject`) is ``executor.approvals``.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from domain import Decision, MarketSnapshot, Verdict
from domain.errors import MalformedApproval
from executor.approval_request import ApprovalRequest
from executor.components import Components
from executor.engine.decider import Decider
from executor.engine.stats import RunStats
from executor.journal.models import ApprovalRow
from executor.journal.store import Journal

log = structlog.get_logger("dta.executor")

Stream = tuple[str, str]  # (symbol, timeframe)


class ApprovalQueue:
    def __init__(self, *, journal: Journal, account: str, stats: RunStats, decider: Decider,
                 snapshots: dict[Stream, MarketSnapshot], replaying: Callable[[], bool]) -> None:
        self.journal = journal
        self.account = account
        self.stats = stats
        self.decider = decider
        self.snapshots = snapshots  # the cycle's: the latest snapshot per stream
        self.replaying = replaying  # is the run on a replay's clock?
        self.c: Components  # set by the executor with every parameter version
        # Requests this process queued, by deadline: they expire exactly then.
        self.expiries: list[tuple[datetime, int]] = []
        self.checked = 0.0  # when the journal was last polled (monotonic seconds)
        self.poll_seconds = 1.0  # see ``RealtimeExecutor.poll_seconds``

    def queue(self, decision: Decision, decision_id: int, verdict: Verdict,
              now: datetime) -> None:
        """Queue the strategy's own trade for a human: on a conflict the ensemble opposed
        it, and the person approving overrides that opposition (``ApprovalRequest``)."""
        intent = self.decider.intent(decision, decision_id, decision.proposal.direction)
        clock = "replay" if self.replaying() else "wall"
        try:
            request = ApprovalRequest.of(intent, decision, clock=clock)
        except MalformedApproval as exc:
            self.stats.vetoes["approval_malformed"] += 1
            log.error("approval_not_queued", decision_id=decision_id, error=str(exc))
            return
        p = decision.proposal
        ttl = timedelta(seconds=self.c.guard.approval_ttl_seconds)
        approval_id = self.journal.approvals.create_approval(
            decision_id=decision_id, account=self.account, symbol=p.symbol,
            direction=request.direction.value, intent=request.payload(),
            why="; ".join(verdict.reasons), created_at=now, expires_at=now + ttl)
        self.stats.queued_for_approval += 1
        heapq.heappush(self.expiries, (now + ttl, approval_id))
        log.info("approval_queued", approval_id=approval_id, decision_id=decision_id)

    def service(self, now: datetime) -> None:
        """Expire what waited too long (never executed late); send what a human approved in
        time, after re-checking every hard limit against the market as it is now.

        Requests this process queued expire exactly at their deadline (in replay time too);
        the journal is polled for approvals from `dta approvals` at most once a wall second.
        """
        while self.expiries and self.expiries[0][0] <= now:
            expires_at, approval_id = heapq.heappop(self.expiries)
            if self.journal.approvals.set_approval_status(
                    approval_id, "expired", expected="pending", decided_at=expires_at):
                self.stats.approvals_expired += 1
        mono = time.monotonic()
        if mono - self.checked < self.poll_seconds:
            return
        self.checked = mono
        for a in self.journal.approvals.all("pending"):
            if a.expires_at <= now and self.journal.approvals.set_approval_status(
                    a.id or 0, "expired", expected="pending", decided_at=a.expires_at):
                self.stats.approvals_expired += 1
        for a in self.journal.approvals.all("approved"):
            if a.account == self.account:
                self._execute_approved(a, now)

    def _execute_approved(self, a: ApprovalRow, now: datetime) -> None:
        """Send exactly the order the request showed, re-checked as exactly that order.
        The request's ``executed`` mark and the order's row commit in one transaction: a
        failure or a crash between them cannot leave an approval marked executed with no
        order behind it."""
        late = a.decided_at is None or a.decided_at > a.expires_at or now > a.expires_at
        if late:
            self.journal.approvals.set_approval_status(a.id or 0, "expired", expected="approved",
                                                       note="approved after its time-to-live")
            self.stats.approvals_expired += 1
            return
        try:
            request = ApprovalRequest.from_payload(a.intent)
        except MalformedApproval as exc:
            self.journal.approvals.set_approval_status(a.id or 0, "rejected", expected="approved",
                                                       note=f"not executed: {exc}")
            self.journal.incidents.open_incident("high", "approval_malformed",
                                                 f"approval #{a.id}: {exc}")
            return
        stream = (a.symbol, request.timeframe)
        snapshot = self.snapshots.get(stream)
        if snapshot is None:
            return  # no bar of that stream yet in this process: wait for the next one
        verdict = self.c.guardrails.hard_checks_pass(
            request.decision(a.symbol),
            self.decider.context(snapshot, now, request.volume))
        if not verdict.approved:
            self.journal.approvals.set_approval_status(a.id or 0, "rejected", expected="approved",
                                                       note="hard limits failed at execution: "
                                                  + "; ".join(verdict.reasons))
            return
        intent = request.intent(self.account, a.symbol, a.decision_id)
        if self.journal.approvals.set_approval_status(a.id or 0, "executed", expected="approved",
                                                      client_order_id=intent.client_order_id,
                                                      commit=False):
            self.decider.submit(intent, now)  # commits the mark with the order's row
            self.stats.approvals_executed += 1

    def recover(self) -> None:
        """Start-up: a request marked ``executed`` whose order row never committed (a
        journal written before the mark and the row shared one transaction) is approved
        again, so the next cycle sends it or expires it; never silently forgotten."""
        for a in self.journal.approvals.all("executed"):
            if a.account != self.account or (
                    a.client_order_id and self.journal.orders.order_state(a.client_order_id)):
                continue
            if self.journal.approvals.set_approval_status(
                    a.id or 0, "approved", expected="executed",
                    note="marked executed without an order: approved again at start-up"):
                self.journal.incidents.open_incident(
                    "high", "approval_without_order",
                    f"approval #{a.id} was marked executed but its order "
                    f"{a.client_order_id} was never journaled; it is approved again and "
                    "will be sent if still in time")
