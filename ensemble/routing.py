"""Routing: which members serve a request kind (persona stage), honouring breakers.

Candidates for a stage come from its ``RouteRule``: named providers in the given order,
or every member of the listed classes (class order, then configuration order) that can
serve the stage. ``route`` walks the candidates and asks each breaker: an open one is
passed over (reported as ``breaker_open``) and the next candidate takes its place, up to
``fanout`` (0: all). That walk is the fallback chain.

``health`` reports each provider's breaker state and which classes and stages are down
(every member open). A stage that is down yields no answers: research then has no voters
(no trade), risk and execution veto. Guardrails can act on ``Ensemble.health()`` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ensemble.breaker import BreakerState
from ensemble.config import RouteRule
from ensemble.members import Member


@dataclass(frozen=True, slots=True)
class Route:
    stage: str
    candidates: tuple[Member, ...]
    selected: tuple[Member, ...]
    skipped: tuple[Member, ...]  # breaker open

    @property
    def configured(self) -> bool:
        return bool(self.candidates)

    def ordered(self) -> tuple[Member, ...]:
        """Selected and skipped members in candidate (fallback) order."""
        chosen = {id(m) for m in self.selected + self.skipped}
        return tuple(m for m in self.candidates if id(m) in chosen)


@dataclass(frozen=True, slots=True)
class EnsembleHealth:
    providers: tuple[tuple[str, str, str], ...]  # (name, class, breaker state)
    classes_down: tuple[str, ...]
    stages_down: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.classes_down and not self.stages_down

    def to_dict(self) -> dict[str, object]:
        return {"providers": [{"name": n, "class": c, "state": s} for n, c, s in self.providers],
                "classes_down": list(self.classes_down),
                "stages_down": list(self.stages_down)}


class Router:
    def __init__(self, rules: Sequence[RouteRule], members: Sequence[Member]) -> None:
        self.members = tuple(members)
        by_name = {m.name: m for m in members}
        self.rules = {r.request: r for r in rules}
        self._candidates: dict[str, tuple[Member, ...]] = {}
        for stage, rule in self.rules.items():
            if rule.providers:
                cands = [by_name[n] for n in rule.providers
                         if n in by_name and stage in by_name[n].stages]
            else:
                order: dict[str, int] = {c: i for i, c in enumerate(rule.classes)}
                cands = sorted((m for m in members
                                if m.provider_class in order and stage in m.stages),
                               key=lambda m: order[m.provider_class])
            self._candidates[stage] = tuple(cands)

    def candidates(self, stage: str) -> tuple[Member, ...]:
        return self._candidates.get(stage, ())

    def route(self, stage: str, *, use_breakers: bool = True) -> Route:
        cands = self._candidates.get(stage, ())
        fanout = self.rules[stage].fanout if stage in self.rules else 0
        selected: list[Member] = []
        skipped: list[Member] = []
        for m in cands:
            if fanout and len(selected) >= fanout:
                break
            if not use_breakers or m.breaker.allow():
                selected.append(m)
            else:
                skipped.append(m)
        return Route(stage, cands, tuple(selected), tuple(skipped))

    def classes_down(self, required: Sequence[str] = ()) -> tuple[str, ...]:
        """``health().classes_down`` without the rest of the report: asked once per
        decision by the guardrails, so it reads each breaker once and builds nothing else.
        A ``required`` class no member belongs to (its only providers disabled or never
        configured) is down too: nothing can answer for it."""
        up: set[str] = set()
        classes: set[str] = set()
        for m in self.members:
            classes.add(m.provider_class)
            if m.breaker.state is not BreakerState.OPEN:
                up.add(m.provider_class)
        missing = [c for c in required if c not in classes]
        if len(up) == len(classes) and not missing:
            return ()
        return tuple(sorted((classes - up) | set(missing)))

    def health(self) -> EnsembleHealth:
        states = {m.name: m.breaker.state for m in self.members}
        providers = tuple((m.name, m.provider_class, states[m.name].value)
                          for m in self.members)
        classes: dict[str, list[BreakerState]] = {}
        for m in self.members:
            classes.setdefault(m.provider_class, []).append(states[m.name])
        classes_down = tuple(sorted(c for c, ss in classes.items()
                                    if ss and all(s is BreakerState.OPEN for s in ss)))
        stages_down = tuple(stage for stage, cands in self._candidates.items()
                            if cands and all(states[m.name] is BreakerState.OPEN
                                             for m in cands))
        return EnsembleHealth(providers, classes_down, stages_down)
