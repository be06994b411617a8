"""A/B test of the ensemble against rules only, on one account, inside the live cycle.

Design (docs/reports.md, "A/B"):
- the unit of randomisation is a *batch* of signals: every proposal of one UTC day
  (``batch="day"``) or every ``N`` consecutive proposals (``batch=N``);
- batches are assigned in pairs, in the order they first appear: for pair ``k`` a
  ``random.Random("dta-ab:<seed>:<k>")`` draw says which of its two batches is
  ``enhanced`` and which ``baseline`` (blocked randomisation: the arms never differ by more
  than one batch, and the same seed always gives the same assignment);
- ``baseline`` is rules only: the strategy's proposal goes to the guardrails as a
  unanimous, fully confident decision of one pseudo-provider ``rules`` (a pass-through
  ensemble), so every hard limit still applies; ``enhanced`` is the configured ensemble;
- each closed trade belongs to the arm of the batch of the proposal that opened it.

Per arm: win rate, mean R, total R, maximum drawdown in R (cumulative R in time order) and
in money. Differences (enhanced - baseline) get percentile bootstrap confidence intervals:
``resamples`` (2,000) draws, each resampling every arm's *batches* with replacement (the
unit that was randomised; ``unit="trade"`` resamples trades instead), from a
``random.Random`` seeded with the test's seed, so the same seed gives the same intervals.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol, cast

from domain import Decision, MarketSnapshot, Proposal, Signal

__all__ = [
    "ARMS",
    "BASELINE",
    "ENHANCED",
    "PASS_THROUGH_PROVIDER",
    "ABDesign",
    "ABEnsemble",
    "ABResult",
    "ArmStats",
    "Assigner",
    "Batch",
    "DiffCI",
    "Outcome",
    "ab_component_factory",
    "analyze",
    "batches_from_proposals",
    "pass_through_decision",
]

BASELINE = "baseline"
ENHANCED = "enhanced"
ARMS = (BASELINE, ENHANCED)
PASS_THROUGH_PROVIDER = "rules"

Unit = Literal["batch", "trade"]


@dataclass(frozen=True, slots=True)
class ABDesign:
    """``batch``: ``"day"`` or a positive number of consecutive proposals per batch."""

    seed: int
    batch: str | int = "day"
    resamples: int = 2000
    confidence: float = 0.95
    unit: Unit = "batch"

    def __post_init__(self) -> None:
        if isinstance(self.batch, str) and self.batch != "day":
            raise ValueError(f"A/B batch must be 'day' or a number of proposals, "
                             f"got {self.batch!r}")
        if isinstance(self.batch, int) and self.batch < 1:
            raise ValueError(f"A/B batch size must be at least 1, got {self.batch}")
        if self.resamples < 100:
            raise ValueError(f"bootstrap needs at least 100 resamples, got {self.resamples}")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {self.confidence}")

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "batch": self.batch, "resamples": self.resamples,
                "confidence": self.confidence, "unit": self.unit,
                "randomisation": "blocked pairs of batches"}


# --------------------------------------------------------------------------- assignment


class Assigner:
    """Seeded, blocked assignment of signal batches to arms.

    Stateful only in counting proposals and numbering batches in order of appearance, so
    the wrapper in the live cycle and an analysis reading the journal's proposals in
    order (``assign_all``) arrive at the same assignment.
    """

    def __init__(self, design: ABDesign) -> None:
        self.design = design
        self._proposals = 0
        self._ordinal: dict[str, int] = {}
        self.log: list[tuple[str, str]] = []  # (batch, arm) per assigned proposal, in order

    def batch_key(self, bar_time: datetime) -> str:
        """The batch of the next proposal (advances the proposal count)."""
        n = self._proposals
        self._proposals += 1
        if self.design.batch == "day":
            return bar_time.date().isoformat()
        return f"p{n // int(self.design.batch):06d}"

    def arm_of(self, key: str) -> str:
        ordinal = self._ordinal.setdefault(key, len(self._ordinal))
        pair, position = divmod(ordinal, 2)
        first_enhanced = random.Random(f"dta-ab:{self.design.seed}:{pair}").random() < 0.5
        return ENHANCED if (position == 0) == first_enhanced else BASELINE

    def assign(self, proposal: Proposal) -> tuple[str, str]:
        key = self.batch_key(proposal.bar_time)
        arm = self.arm_of(key)
        self.log.append((key, arm))
        return key, arm

    @classmethod
    def assign_all(cls, design: ABDesign, bar_times: Iterable[datetime]
                   ) -> list[tuple[str, str]]:
        """(batch, arm) of each proposal, given their bar times in decision order."""
        a = cls(design)
        out = []
        for t in bar_times:
            key = a.batch_key(t)
            out.append((key, a.arm_of(key)))
        return out


# --------------------------------------------------------------------------- the two arms


def pass_through_decision(proposal: Proposal, params_hash: str) -> Decision:
    """Rules only: the strategy's proposal as a unanimous decision of one pseudo-provider,
    so the guardrails (consensus included) see a decision they will pass on its merits."""
    signal = Signal(PASS_THROUGH_PROVIDER, proposal.direction, 1.0,
                    rationale="A/B baseline arm: the strategy's proposal, no ensemble vote")
    return Decision(proposal, proposal.direction, 1.0, 1, 1, (signal,),
                    ((PASS_THROUGH_PROVIDER, float(proposal.direction.sign)),), params_hash)


class DecisionMaker(Protocol):
    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Decision: ...


class ABEnsemble:
    """Stands where the ensemble stands: routes each proposal by its batch's arm."""

    def __init__(self, enhanced: DecisionMaker, assigner: Assigner) -> None:
        self.enhanced = enhanced
        self.assigner = assigner
        self.params_hash = str(getattr(enhanced, "params_hash", ""))

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Decision:
        _, arm = self.assigner.assign(proposal)
        if arm == BASELINE:
            return pass_through_decision(proposal, self.params_hash)
        return self.enhanced.evaluate(proposal, snapshot)

    def classes_down(self, required: Sequence[str] = ()) -> tuple[str, ...]:
        health = getattr(self.enhanced, "classes_down", None)
        return tuple(health(required)) if callable(health) else ()

    def close(self) -> None:
        close = getattr(self.enhanced, "close", None)
        if callable(close):
            close()


def ab_component_factory(factory: Callable[[int, dict[str, Any]], Any], assigner: Assigner,
                         ) -> Callable[[int, dict[str, Any]], Any]:
    """Wrap a component factory (``executor.wiring.component_factory``) so every parameter
    version it builds decides through ``ABEnsemble``; one assigner spans all of them."""

    def build(version: int, content: dict[str, Any]) -> Any:
        components = factory(version, content)
        # Components.ensemble is typed as the concrete Ensemble; the executor only calls
        # evaluate() and, through getattr, classes_down() on it.
        return replace(components, ensemble=cast(Any, ABEnsemble(components.ensemble,
                                                                 assigner)))

    return build


# --------------------------------------------------------------------------- analysis


class Outcome(Protocol):
    """A closed trade as the analysis sees it (``metrics.Trade`` fits)."""

    @property
    def pnl(self) -> float: ...
    @property
    def r_multiple(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class Batch:
    key: str
    arm: str
    trades: tuple[Outcome, ...]
    proposals: int = 0


@dataclass(frozen=True, slots=True)
class ArmStats:
    arm: str
    batches: int
    proposals: int
    trades: int
    wins: int
    win_rate: float | None
    mean_r: float | None
    total_r: float
    max_drawdown_r: float
    total_pnl: float
    mean_pnl: float | None
    max_drawdown_money: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DiffCI:
    """enhanced - baseline, with a percentile bootstrap interval."""

    metric: str
    estimate: float | None
    low: float | None
    high: float | None
    resamples_used: int
    share_positive: float | None  # share of resampled differences above zero

    def covers(self, value: float) -> bool:
        return self.low is not None and self.high is not None and \
            self.low <= value <= self.high

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ABResult:
    design: ABDesign
    arms: dict[str, ArmStats]
    diffs: tuple[DiffCI, ...]
    batches: tuple[Batch, ...]

    def diff(self, metric: str) -> DiffCI:
        return next(d for d in self.diffs if d.metric == metric)

    def as_dict(self) -> dict[str, Any]:
        return {"design": self.design.as_dict(),
                "arms": {k: v.as_dict() for k, v in self.arms.items()},
                "diffs": [d.as_dict() for d in self.diffs],
                "assignment": [{"batch": b.key, "arm": b.arm, "proposals": b.proposals,
                                "trades": len(b.trades)} for b in self.batches]}


# Per-trade tuples: (R or None, pnl).
_Row = tuple[float | None, float]
# What a resample needs of one unit (a batch, or one trade), so that a resample costs one
# step per unit, not per trade: trades, wins, trades with R, sum R, sum PnL, and the
# smallest and largest prefix sum of R and the largest drawdown of R inside the unit.
_Unit = tuple[int, int, int, float, float, float, float, float]
DIFF_METRICS = ("win_rate", "mean_r", "max_drawdown_r", "mean_pnl")


def _summarize(rows: Sequence[_Row]) -> _Unit:
    cum = peak = low = dd = 0.0
    n_r = 0
    for r, _ in rows:
        if r is None:
            continue
        n_r += 1
        cum += r
        peak = max(peak, cum)
        low = min(low, cum)
        dd = max(dd, peak - cum)
    return (len(rows), sum(1 for _, p in rows if p > 0), n_r, cum, sum(p for _, p in rows),
            low, peak, dd)


def _stats(units: Iterable[_Unit]) -> dict[str, float | None]:
    """The compared statistics of units taken in order. The drawdown composes: a unit
    starting at cumulative R ``cum`` under a running peak ``peak`` reaches a drawdown of
    max(peak - (cum + its lowest prefix), its own inner drawdown)."""
    n = wins = n_r = 0
    pnl = cum = peak = dd = 0.0
    for un, uw, unr, usum, upnl, ulow, uhigh, udd in units:
        n += un
        wins += uw
        n_r += unr
        pnl += upnl
        dd = max(dd, peak - (cum + ulow), udd)
        peak = max(peak, cum + uhigh)
        cum += usum
    return {"win_rate": wins / n if n else None,
            "mean_r": cum / n_r if n_r else None,
            "max_drawdown_r": dd if n_r else None,
            "mean_pnl": pnl / n if n else None}


def _money_drawdown(pnls: Iterable[float]) -> float:
    cum = peak = dd = 0.0
    for p in pnls:
        cum += p
        peak = max(peak, cum)
        dd = max(dd, peak - cum)
    return dd


def _arm_stats(arm: str, batches: Sequence[Batch]) -> ArmStats:
    rows = [(t.r_multiple, t.pnl) for b in batches for t in b.trades]
    s = _stats([_summarize(rows)])
    rs = [r for r, _ in rows if r is not None]
    return ArmStats(
        arm=arm, batches=len(batches), proposals=sum(b.proposals for b in batches),
        trades=len(rows), wins=sum(1 for _, p in rows if p > 0), win_rate=s["win_rate"],
        mean_r=s["mean_r"], total_r=sum(rs), max_drawdown_r=s["max_drawdown_r"] or 0.0,
        total_pnl=sum(p for _, p in rows), mean_pnl=s["mean_pnl"],
        max_drawdown_money=_money_drawdown(p for _, p in rows))


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def analyze(batches: Sequence[Batch], design: ABDesign) -> ABResult:
    """Per-arm results and bootstrap intervals for the differences (enhanced - baseline).

    Batches are taken in the order given (time order): drawdowns follow it, and a
    resample keeps the drawn batches in the order drawn.
    """
    by_arm = {arm: [b for b in batches if b.arm == arm] for arm in ARMS}
    arms = {arm: _arm_stats(arm, bs) for arm, bs in by_arm.items()}

    units: dict[str, list[_Unit]] = {}
    for arm, bs in by_arm.items():
        rows = [[(t.r_multiple, t.pnl) for t in b.trades] for b in bs]
        units[arm] = ([_summarize([r]) for batch in rows for r in batch]
                      if design.unit == "trade" else [_summarize(batch) for batch in rows])

    observed = {arm: _stats(units[arm]) for arm in ARMS}
    rng = random.Random(f"dta-ab-bootstrap:{design.seed}")
    samples: dict[str, list[float]] = {m: [] for m in DIFF_METRICS}
    base_units, enh_units = units[BASELINE], units[ENHANCED]
    if base_units and enh_units:
        nb, ne = len(base_units), len(enh_units)
        pick = rng.randrange
        for _ in range(design.resamples):
            sb = _stats([base_units[pick(nb)] for _ in range(nb)])
            se = _stats([enh_units[pick(ne)] for _ in range(ne)])
            for m in DIFF_METRICS:
                vb, ve = sb[m], se[m]
                if vb is not None and ve is not None:
                    samples[m].append(ve - vb)

    alpha = 1.0 - design.confidence
    diffs: list[DiffCI] = []
    for m in DIFF_METRICS:
        vb, ve = observed[BASELINE][m], observed[ENHANCED][m]
        estimate = ve - vb if vb is not None and ve is not None else None
        values = sorted(samples[m])
        if values:
            diffs.append(DiffCI(m, estimate, _percentile(values, alpha / 2),
                                _percentile(values, 1 - alpha / 2), len(values),
                                sum(1 for v in values if v > 0) / len(values)))
        else:
            diffs.append(DiffCI(m, estimate, None, None, 0, None))
    return ABResult(design, arms, tuple(diffs), tuple(batches))


def batches_from_proposals(design: ABDesign, proposals: Sequence[tuple[int, datetime]],
                           trades: Iterable[Any],
                           decision_of_proposal: Mapping[int, int]) -> list[Batch]:
    """Rebuild the batches of a replay from the journal.

    ``proposals``: (proposal id, bar time) of the run's proposals in decision order;
    ``decision_of_proposal``: proposal id -> decision id; ``trades``: closed trades with
    the ``decision_id`` of their opening order. The assignment is recomputed with the
    design's seed, which is what the live wrapper did proposal by proposal.
    """
    assigned = Assigner.assign_all(design, (t for _, t in proposals))
    arm_of_batch: dict[str, str] = {}
    proposals_in: dict[str, int] = {}
    batch_of_decision: dict[int, str] = {}
    for (pid, _), (key, arm) in zip(proposals, assigned, strict=True):
        arm_of_batch[key] = arm
        proposals_in[key] = proposals_in.get(key, 0) + 1
        if pid in decision_of_proposal:
            batch_of_decision[decision_of_proposal[pid]] = key
    trades_in: dict[str, list[Any]] = {k: [] for k in arm_of_batch}
    for t in trades:
        batch = batch_of_decision.get(getattr(t, "decision_id", None) or -1)
        if batch is not None:
            trades_in[batch].append(t)
    return [Batch(k, arm_of_batch[k], tuple(trades_in[k]), proposals_in[k])
            for k in arm_of_batch]
