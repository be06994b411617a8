"""The order a human is asked to approve, as one typed value.

The request shown by `dta approvals show` and the order sent after approval are the same
object: the router gets ``intent()`` of exactly what was queued, and the guardrails re-check
``decision()`` of exactly that (side, volume, stop, target). Before this type the payload
was a dict read with "?" defaults in one place and rebuilt from other fields in another,
and a conflict (ensemble against strategy) was shown as the strategy's trade but sent with
the ensemble's side and the strategy's stops on the wrong sides of the entry.

A conflict request is the *strategy's* trade: the human overrides the ensemble's
disagreement, so the side is the proposal's direction and the stops are the proposal's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from domain import (
    Decision,
    Direction,
    OrderIntent,
    OrderSide,
    OrderType,
    Proposal,
    ensure_utc,
    timeframe_seconds,
)
from domain.errors import MalformedApproval


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    client_order_id: str
    side: OrderSide
    volume: float
    stop_loss: float
    take_profit: float
    entry: float
    bar_time: datetime
    strategy: str
    timeframe: str
    params_hash: str
    reason: str
    confidence: float
    agreement: int
    voters: int
    # The clock the request was made on, and so the one its expiry is judged on: "wall"
    # (a live daemon) or "replay" (a replay's simulated clock: bar closes).
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.clock not in ("wall", "replay"):
            raise MalformedApproval(f"request {self.client_order_id}: unknown clock "
                                    f"{self.clock!r}")
        if not self.volume > 0:
            raise MalformedApproval(f"request {self.client_order_id}: volume {self.volume!r} "
                                    "is not positive")
        sign = self.side.sign
        if sign * (self.entry - self.stop_loss) <= 0 or sign * (self.take_profit - self.entry) <= 0:
            raise MalformedApproval(
                f"request {self.client_order_id}: a {self.side.value} needs stop < entry < "
                f"target (buy) or the reverse (sell); got stop {self.stop_loss}, entry "
                f"{self.entry}, target {self.take_profit}")

    @property
    def direction(self) -> Direction:
        return Direction.LONG if self.side is OrderSide.BUY else Direction.SHORT

    @classmethod
    def of(cls, intent: OrderIntent, decision: Decision, *,
           clock: str = "wall") -> ApprovalRequest:
        """The request for ``intent`` (built from ``decision``'s proposal)."""
        p = decision.proposal
        if intent.stop_loss is None or intent.take_profit is None:
            raise MalformedApproval(f"request {intent.client_order_id}: no stop or target")
        return cls(client_order_id=intent.client_order_id, side=intent.side,
                   volume=intent.volume, stop_loss=intent.stop_loss,
                   take_profit=intent.take_profit, entry=p.entry, bar_time=p.bar_time,
                   strategy=p.strategy, timeframe=p.timeframe, params_hash=intent.params_hash,
                   reason=p.reason, confidence=decision.confidence,
                   agreement=decision.agreement, voters=decision.voters, clock=clock)

    def payload(self) -> dict[str, Any]:
        """The journal's JSON form (``approvals.intent``)."""
        out = asdict(self)
        out["side"] = self.side.value
        out["bar_time"] = self.bar_time.isoformat()
        return out

    @classmethod
    def from_payload(cls, data: dict[str, Any] | None) -> ApprovalRequest:
        if not data:
            raise MalformedApproval("the request has no order")
        try:
            return cls(
                client_order_id=str(data["client_order_id"]), side=OrderSide(data["side"]),
                volume=float(data["volume"]), stop_loss=float(data["stop_loss"]),
                take_profit=float(data["take_profit"]), entry=float(data["entry"]),
                bar_time=ensure_utc(datetime.fromisoformat(data["bar_time"])),
                strategy=str(data["strategy"]), timeframe=str(data["timeframe"]),
                params_hash=str(data["params_hash"]), reason=str(data.get("reason", "")),
                confidence=float(data["confidence"]), agreement=int(data["agreement"]),
                voters=int(data["voters"]), clock=str(data.get("clock", "wall")))
        except MalformedApproval:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedApproval(f"the request cannot be read: {exc.__class__.__name__}: "
                                    f"{exc}") from None

    def intent(self, account: str, symbol: str, decision_id: int | None) -> OrderIntent:
        """Exactly the order the request shows."""
        return OrderIntent(
            client_order_id=self.client_order_id, account=account, symbol=symbol,
            side=self.side, volume=self.volume, order_type=OrderType.MARKET,
            bar_time=self.bar_time, stop_loss=self.stop_loss, take_profit=self.take_profit,
            params_hash=self.params_hash, decision_id=decision_id)

    def decision(self, symbol: str) -> Decision:
        """The decision the guardrails re-check: the request's own side and stops (the
        ensemble's signals are not re-run; the human's verdict replaces them)."""
        proposal = Proposal(self.strategy, symbol, self.timeframe, self.bar_time,
                            self.direction, self.entry, self.stop_loss, self.take_profit,
                            self.reason)
        return Decision(proposal, self.direction, self.confidence, self.agreement,
                        self.voters, (), (), self.params_hash)


def replay_clock_now(timeframe: str, last_bar_time: datetime | None,
                     created_at: datetime) -> datetime:
    """The replay clock's "now" for a request a replay made: the close of the newest bar
    the replay journaled for the request's stream (the replay stands there until it runs
    again), or the request's own time before any. Shared by the verdict
    (``executor/approvals.py``) and the status view's time left."""
    if last_bar_time is None:
        return created_at
    return last_bar_time + timedelta(seconds=timeframe_seconds(timeframe))
