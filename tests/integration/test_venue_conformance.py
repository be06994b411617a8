"""Venue conformance: one table of scenarios, run against every venue model the product
trades (issue 15). After every step, and after a restart between any two steps, the
daemon's position (net, and gross over every ticket a hedging account holds), working
orders and realised PnL (where the venue reports one) equal the venue's own, and the
journal's position equals the daemon's. Paper agrees
with the live venues on where each scenario ends.

Scenarios are written in lots of each venue's unit (``VenueModel.lot``). A step sends one
market order through the daemon's router (the path after the guardrails) and lets the
next bar close, so the daemon's cycle sees the fills.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.venues import (
    VenueModel,
    daemon_view,
    in_lots,
    journal_position,
    journal_realized,
    make,
)

from domain import MarketSnapshot, OrderSide, Proposal
from strategies.logic import StrategyContext
from strategies.registry import STRATEGIES

BUY, SELL = OrderSide.BUY, OrderSide.SELL


@dataclass(frozen=True, slots=True)
class Step:
    side: OrderSide
    lots: float
    partial: float | None = None  # the venue fills this fraction and cancels the rest
    die_before_poll: bool = False  # the daemon dies after the send, before it sees the fill
    exit_by: str | None = None  # opened with a stop and target; the venue closes it at one


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    steps: tuple[Step, ...]
    ends_at: float  # net lots at the end (a partial fill: what the venue filled)
    needs_shorts: bool = False
    needs_partial: bool = False
    needs_fills_while_down: bool = False
    needs_protective_exits: bool = False


SCENARIOS = (
    Scenario("open", (Step(BUY, 2),), 2),
    Scenario("add", (Step(BUY, 2), Step(BUY, 1)), 3),
    Scenario("partial close", (Step(BUY, 3), Step(SELL, 1)), 2),
    Scenario("close", (Step(BUY, 2), Step(SELL, 2)), 0),
    Scenario("reverse", (Step(BUY, 2), Step(SELL, 4)), -2, needs_shorts=True),
    Scenario("partial fill, rest cancelled", (Step(BUY, 4, partial=0.5),), 2,
             needs_partial=True),
    Scenario("SL hit", (Step(BUY, 2, exit_by="sl"),), 0, needs_protective_exits=True),
    Scenario("TP hit", (Step(SELL, 2, exit_by="tp"),), 0, needs_shorts=True,
             needs_protective_exits=True),
    Scenario("fill while the daemon is down",
             (Step(BUY, 2), Step(SELL, 1, die_before_poll=True), Step(BUY, 2)), 3,
             needs_fills_while_down=True),
)
VENUES = ("paper", "paper-mt5-hedging", "paper-spot", "paper-swap", "ccxt-spot", "ccxt-swap",
          "mt5-netting", "mt5-hedging")


class Quiet:
    """The strategy proposes nothing: every order in these scenarios is the script's."""

    name = "test_conformance_quiet"

    def __init__(self, **_params: object) -> None:
        pass

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        return ()


@pytest.fixture
def quiet() -> Iterator[str]:
    STRATEGIES[Quiet.name] = Quiet
    yield Quiet.name
    STRATEGIES.pop(Quiet.name, None)


def _check(venue: VenueModel, where: str) -> float:
    """The invariants after a step; returns the position in lots."""
    mine = daemon_view(venue)
    theirs_position, theirs_open = venue.venue_position(), venue.venue_open_orders()
    assert mine.position == pytest.approx(theirs_position, abs=1e-9), (
        f"{venue.name} {where}: daemon holds {mine.position}, venue {theirs_position}")
    assert mine.gross == pytest.approx(venue.venue_gross(), abs=1e-9), (
        f"{venue.name} {where}: daemon sees {mine.gross} lots gross, venue holds "
        f"{venue.venue_gross()}")
    assert mine.working == theirs_open, (
        f"{venue.name} {where}: daemon has {mine.working} working order(s), venue "
        f"{theirs_open} open")
    realized = venue.venue_realized()
    if realized is not None:
        assert journal_realized(venue) == pytest.approx(realized, abs=0.01), (
            f"{venue.name} {where}: journal's realised PnL {journal_realized(venue)}, "
            f"venue's {realized}")
    journaled = journal_position(venue)
    assert journaled == pytest.approx(mine.position, abs=1e-9), (
        f"{venue.name} {where}: journal says {journaled}, daemon {mine.position}")
    return in_lots(venue, mine.position)


def _run(venue: VenueModel, scenario: Scenario, restart_after: int | None) -> float:
    venue.start()
    _check(venue, "at start")
    lots = 0.0
    for i, step in enumerate(scenario.steps):
        if step.exit_by is not None:
            venue.protected(step.side, step.lots, step.exit_by)
        else:
            venue.send(step.side, step.lots, partial=step.partial,
                       die_before_poll=step.die_before_poll)
        lots = _check(venue, f"after step {i + 1} ({step.side.value} {step.lots})")
        if restart_after == i:
            venue.restart()
            assert _check(venue, f"after a restart after step {i + 1}") == lots
    return lots


def _cases() -> Iterator[object]:
    for venue in VENUES:
        for s in SCENARIOS:
            for restart in (None, *range(len(s.steps))):
                label = "" if restart is None else f"-restart-after-{restart + 1}"
                yield pytest.param(venue, s, restart, id=f"{venue}-{s.name}{label}")


@pytest.mark.parametrize(("venue_name", "scenario", "restart_after"), list(_cases()))
def test_scenario(venue_name: str, scenario: Scenario, restart_after: int | None,
                  tmp_path: Path, quiet: str) -> None:
    venue = make(venue_name, tmp_path, quiet)
    for needed, capability, why in (
            (scenario.needs_shorts, "shorts", "holds no shorts (spot)"),
            (scenario.needs_partial, "partial_fills", "fills every market order in full"),
            (scenario.needs_protective_exits, "protective_exits",
             "places no protective orders at the venue"),
            (scenario.needs_fills_while_down, "fills_while_down",
             "dies with the daemon: nothing fills while it is down")):
        if needed and not getattr(venue, capability):
            venue.close()
            pytest.skip(f"{venue.name} {why}")
    try:
        lots = _run(venue, scenario, restart_after)
    finally:
        venue.close()
    # Where the scenario ends, as paper ends it: up to the fees a venue takes out of the
    # quantity bought (spot pays commission in the base asset).
    traded = sum(step.lots for step in scenario.steps)
    assert lots == pytest.approx(scenario.ends_at,
                                 abs=1e-6 + venue.fee_rate * traded + venue.dust)
