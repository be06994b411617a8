"""From a strategy's proposal to an order or a veto: ensemble -> guardrails -> act.

Every step is journaled before the next (proposal, decision with its provider calls,
verdict), so `dta trace` shows why any order was sent. An approved decision is sized and
sent through the router; a vetoed one that only needs a person goes to the approval queue.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING

import structlog
from structlog.contextvars import bound_contextvars

from domain import (
    Decision,
    Direction,
    MarketSnapshot,
    Order,
    OrderIntent,
    OrderSide,
    OrderState,
    OrderType,
    Proposal,
    Verdict,
    client_order_id,
)
from domain.errors import VenueError
from ensemble.late import call_row
from executor.brokers.base import Broker, VolumeRules
from executor.components import Components
from executor.engine.margin import margin_terms
from executor.engine.protection import ProtectiveOrders
from executor.engine.router import OrderRouter
from executor.engine.stats import RunStats
from executor.engine.triggers import Triggers, classes_down
from executor.journal.store import Journal
from executor.metrics import Metrics
from guardrails.base import AccountState
from guardrails.limits import THROTTLE_WINDOW

if TYPE_CHECKING:
    from executor.engine.approvals import ApprovalQueue

log = structlog.get_logger("dta.executor")


class Decider:
    def __init__(self, *, journal: Journal, broker: Broker, account: str,
                 router: OrderRouter, stats: RunStats, metrics: Metrics | None,
                 triggers: Triggers, points: dict[str, float], contract_size: float,
                 shorts: bool, protection: ProtectiveOrders | None = None) -> None:
        self.journal = journal
        self.broker = broker
        self.account = account
        self.router = router
        self.tracker = router.tracker
        self.stats = stats
        self.metrics = metrics
        self.triggers = triggers
        self.points = points  # per symbol; asked of the venue when not given
        self.contract_size = contract_size
        # Can the account hold a short? A spot account cannot (``holds_shorts = False``).
        self.shorts = shorts
        self.protection = protection
        # Times of the orders sent within the throttle's window (older ones are dropped
        # at each decision, so the guardrail context stays small however busy the run).
        self.order_times: deque[datetime] = deque()
        self.sizes: dict[str, VolumeRules | None] = {}  # the venue's order sizes
        self.c: Components  # set by the executor with every parameter version
        self.params_hash = ""  # the version's hash, once per version, not per order
        self.approvals: ApprovalQueue  # set by the executor

    def decide(self, proposal: Proposal, snapshot: MarketSnapshot, now: datetime) -> None:
        self.stats.proposals += 1
        proposal_id = self.journal.decisions.record_proposal(proposal, snapshot)
        decision = self.c.ensemble.evaluate(proposal, snapshot)
        decision_id = self.journal.decisions.record_decision(decision, proposal_id)
        with bound_contextvars(decision_id=decision_id, symbol=proposal.symbol):
            self._record_calls(decision, decision_id)
            self.stats.decisions += 1
            verdict = self.c.guardrails.check(
                decision, self.context(snapshot, now, self.volume(decision)))
            self.journal.decisions.record_verdict(verdict, decision_id)
            if self.metrics is not None:
                self.metrics.decisions.inc()
                for c in verdict.checks:
                    if not c.passed:
                        self.metrics.vetoes.labels(check=c.name).inc()
            self._act(decision, decision_id, verdict, now)

    def _act(self, decision: Decision, decision_id: int, verdict: Verdict,
             now: datetime) -> None:
        proposal = decision.proposal
        # A veto counts against the parameter set only when a check faulted the decision
        # itself; one that says the moment is wrong (halted, stale, providers down, equity
        # unknown) is no evidence for rolling the parameters back.
        faulted = (not verdict.approved
                   and any(not c.passed and not c.environmental for c in verdict.checks))
        regression = self.triggers.regression.decision(faulted)
        if verdict.approved:
            self.stats.approved += 1
            self.submit(self.intent(decision, decision_id), now)
        else:
            for c in verdict.checks:
                if not c.passed:
                    self.stats.vetoes[c.name] += 1
            if verdict.needs_approval:
                self.approvals.queue(decision, decision_id, verdict, now)
            log.info("decision_vetoed", symbol=proposal.symbol, decision_id=decision_id,
                     reasons=list(verdict.reasons), queued=verdict.needs_approval)
        if regression is not None:
            self.triggers.fire(regression)

    def _record_calls(self, decision: Decision, decision_id: int) -> None:
        for call in decision.calls:
            if self.metrics is not None:
                self.metrics.provider_call(call)
            self.journal.provider_calls.record_provider_call(call_row(call, decision_id))

    def submit(self, intent: OrderIntent, now: datetime) -> Order:
        with bound_contextvars(client_order_id=intent.client_order_id):
            if self.protection is not None:  # the legs an exit would trade against
                self.protection.before_order(intent)
            order = self.router.submit(intent)
            if self.protection is not None:  # its stop and target, right after it filled
                self.protection.after_order(order)
        self.stats.orders[order.state.value] += 1
        if self.metrics is not None:
            self.metrics.orders.labels(state=order.state.value).inc()
        self.order_times.append(now)
        if order.state in (OrderState.UNKNOWN, OrderState.REJECTED):
            self.triggers.broker_error(now, f"order_{order.state.value}",
                                       f"{order.client_order_id}: {order.reason}")
        return order

    # ------------------------------------------------------------------ sizing and intent

    def volume(self, decision: Decision) -> float:
        """The configured volume, scaled down by the risk stage's size factor (a reviewer
        that said "resize to 0.5" gets half) and rounded down to the venue's step: the
        guardrails judge the volume the venue would take (``OrderVolumeCheck`` vetoes one
        that rounds to nothing or below the venue's minimum)."""
        factor = decision.size_factor
        volume = (self.c.order_volume if factor >= 1.0
                  else round(self.c.order_volume * max(factor, 0.0), 8))
        rules = self.volume_rules(decision.proposal.symbol)
        return rules.round_down(volume) if rules is not None else volume

    def volume_rules(self, symbol: str) -> VolumeRules | None:
        """The venue's step and minimum for ``symbol``, asked once (None: unknown)."""
        if symbol in self.sizes:
            return self.sizes[symbol]
        ask = getattr(self.broker, "volume_rules", None)
        rules: VolumeRules | None = None
        if callable(ask):
            try:
                rules = ask(symbol)
            except VenueError as exc:
                log.error("volume_rules_read_failed", symbol=symbol, error=str(exc))
                return None  # asked again next time
        self.sizes[symbol] = rules
        return rules

    def intent(self, decision: Decision, decision_id: int,
               direction: Direction | None = None) -> OrderIntent:
        """The order for ``decision`` (in ``direction``: the decision's own by default)."""
        p = decision.proposal
        side = OrderSide.BUY if (direction or decision.direction) is Direction.LONG \
            else OrderSide.SELL
        coid = client_order_id(self.account, p.symbol, p.bar_time,
                               f"entry:{p.strategy}:{side.value}")
        return OrderIntent(
            client_order_id=coid, account=self.account, symbol=p.symbol, side=side,
            volume=self.volume(decision), order_type=OrderType.MARKET, bar_time=p.bar_time,
            stop_loss=p.stop, take_profit=p.target, params_hash=self.params_hash,
            decision_id=decision_id)

    # ------------------------------------------------------------------ what the checks see

    def context(self, snapshot: MarketSnapshot, now: datetime,
                volume: float) -> AccountState:
        return AccountState(
            positions=self.broker.positions(), order_volume=volume, now=now,
            snapshot=snapshot, equity=self.triggers.equity(),
            day_start_equity=self.triggers.day_start_equity,
            contract_size=self.contract_size, point=self.point(snapshot.symbol),
            recent_order_times=self.recent_order_times(now),
            classes_down=classes_down(self.c), working=self.tracker.working_exposure(),
            volume_min=rules.min if (rules := self.volume_rules(snapshot.symbol)) else None,
            shorts=self.shorts, margin=margin_terms(self.broker, snapshot.symbol))

    def recent_order_times(self, now: datetime) -> tuple[datetime, ...]:
        """The order times the throttle can still count at ``now``; older ones are dropped
        (times come in order; one out of order only stays a little longer)."""
        times = self.order_times
        horizon = now - THROTTLE_WINDOW
        while times and times[0] <= horizon:
            times.popleft()
        return tuple(times)

    def point(self, symbol: str) -> float | None:
        """The symbol's point (price tick): from the bar file in a replay, else asked once
        of the venue (MT5 ``symbol_info().point``, the ccxt market's price precision).
        Unknown stays ``None``, and a configured ``min_stop_points`` then fails closed."""
        point = self.points.get(symbol)
        if point is not None:
            return point
        ask = getattr(self.broker, "point", None)
        if not callable(ask):
            return None
        try:
            point = ask(symbol)
        except VenueError as exc:
            log.error("point_read_failed", symbol=symbol, error=str(exc))
            return None
        if point is not None and point > 0:
            self.points[symbol] = float(point)
            return float(point)
        return None
