"""Versioned parameter sets: one content-hashed document (strategy parameters, ensemble
weights, guardrail limits) per version, with parent, author, reason and time.

History is append-only. Activation, operator rollback and automatic rollback are events;
the newest event names the active version. A rollback never rewrites a version, it
activates an earlier one again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from domain import stable_hash
from domain.errors import ConfigError, DtaError, NotFound, OperatorRefusal

ACTIVATING = ("activate", "rollback", "auto_rollback")


@dataclass(frozen=True, slots=True)
class ParamVersion:
    version: int
    hash: str
    content: dict[str, Any]
    parent: int | None
    author: str
    reason: str
    created_at: datetime
    bad: bool = False


@dataclass(frozen=True, slots=True)
class ParamEvent:
    id: int
    at: datetime
    version: int
    action: str
    operator: str
    reason: str
    trigger: str | None = None


class ParamStore(Protocol):
    def param_versions(self) -> list[ParamVersion]: ...

    def param_events(self) -> list[ParamEvent]: ...

    def add_param_version(self, content: dict[str, Any], parent: int | None, author: str,
                          reason: str) -> ParamVersion: ...

    def add_param_event(self, version: int, action: str, operator: str, reason: str,
                        trigger: str | None = None) -> None: ...

    def mark_param_bad(self, version: int) -> None: ...


class ParamError(DtaError):
    """A parameter-set command that cannot be carried out; its subclass says why."""


class UnknownParamVersion(ParamError, NotFound):
    """No parameter set has that version."""


class ParamRefused(ParamError, OperatorRefusal):
    """The version exists but the change is not allowed (marked bad, already active)."""


class ParamInputError(ParamError, ConfigError):
    """The command lacks what every parameter change records (operator, reason)."""


def active_version(store: ParamStore) -> ParamVersion | None:
    events = [e for e in store.param_events() if e.action in ACTIVATING]
    if not events:
        return None
    return get_version(store, events[-1].version)


def get_version(store: ParamStore, version: int) -> ParamVersion:
    for v in store.param_versions():
        if v.version == version:
            return v
    raise UnknownParamVersion(f"no parameter set version {version}")


def ensure_registered(store: ParamStore, content: dict[str, Any], *, author: str,
                      reason: str) -> ParamVersion:
    """Make the settings' parameter set known. New content becomes a new active version;
    content seen before does not override what an operator or a rollback activated."""
    digest = stable_hash(content)
    active = active_version(store)
    if active is not None and active.hash == digest:
        return active
    known = [v for v in store.param_versions() if v.hash == digest]
    if known:
        if active is None:
            store.add_param_event(known[-1].version, "activate", author, reason)
            return known[-1]
        return active
    created = store.add_param_version(content, active.version if active else None, author,
                                      reason)
    store.add_param_event(created.version, "activate", author, reason)
    return created


def propose(store: ParamStore, content: dict[str, Any], *, author: str,
            reason: str) -> ParamVersion:
    active = active_version(store)
    return store.add_param_version(content, active.version if active else None, author, reason)


@dataclass(frozen=True, slots=True)
class Proposed:
    """What a proposal yielded: a new version, or the one that already holds that content."""

    version: ParamVersion
    created: bool


def propose_once(store: ParamStore, content: dict[str, Any], *, author: str,
                 reason: str) -> Proposed:
    """Propose ``content`` unless a version already holds exactly it (same content hash):
    then that version comes back, ``created=False``. Two versions with one content would
    make the history say a change happened that did not, and a rollback could land on a
    twin of the version it leaves."""
    digest = stable_hash(content)
    known = [v for v in store.param_versions() if v.hash == digest]
    if known:
        return Proposed(known[-1], False)
    return Proposed(propose(store, content, author=author, reason=reason), True)


def activate(store: ParamStore, version: int, *, operator: str, reason: str) -> ParamVersion:
    _need(operator, reason)
    target = get_version(store, version)
    store.add_param_event(target.version, "activate", operator, reason)
    return target


def last_known_good(store: ParamStore) -> ParamVersion | None:
    """The newest version activated before the current one that was not marked bad."""
    active = active_version(store)
    seen: set[int] = set()
    for e in reversed([e for e in store.param_events() if e.action in ACTIVATING]):
        if (active is not None and e.version == active.version) or e.version in seen:
            continue
        seen.add(e.version)
        v = get_version(store, e.version)
        if not v.bad:
            return v
    return None


def rollback(store: ParamStore, *, operator: str, reason: str, to: int | None = None,
             automatic: bool = False, trigger: str | None = None) -> ParamVersion:
    """Leave the active version for the last known-good one (or ``to``), marking the one
    left bad, automatic or not: a rollback is a judgement on that version, and without
    the mark a second rollback would walk forward to it again."""
    _need(operator, reason)
    target = get_version(store, to) if to is not None else last_known_good(store)
    if target is None:
        raise ParamRefused("no earlier known-good parameter version to roll back to")
    if target.bad:
        raise ParamRefused(f"version {target.version} is marked bad; a rollback only returns "
                           "to a known-good version (`dta params activate` re-activates it "
                           "deliberately)")
    active = active_version(store)
    if active is not None and target.version == active.version:
        raise ParamRefused(f"version {target.version} is already active")
    if active is not None:
        store.mark_param_bad(active.version)  # first: a crash here leaves it bad, not active
    store.add_param_event(target.version, "auto_rollback" if automatic else "rollback",
                          operator, reason, trigger)
    return target


def diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Leaf-level differences as (dotted.path, old, new)."""
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(diff(va, vb, path + "."))
        elif va != vb:
            out.append((path, va, vb))
    return out


def _need(operator: str, reason: str) -> None:
    if not operator.strip() or not reason.strip():
        raise ParamInputError("an operator and a reason are required")


def with_weights(content: dict[str, Any], weights: dict[str, float]) -> dict[str, Any]:
    """A copy of ``content`` with new provider weights (for the approval feedback)."""
    ensemble = dict(content.get("ensemble", {}))
    ensemble["providers"] = {
        name: {**cfg, "weight": round(weights.get(name, cfg.get("weight", 1.0)), 6)}
        for name, cfg in ensemble.get("providers", {}).items()}
    return {**content, "ensemble": ensemble}


def weights_of(content: dict[str, Any]) -> dict[str, float]:
    providers = content.get("ensemble", {}).get("providers", {})
    return {name: float(cfg.get("weight", 1.0)) for name, cfg in providers.items()}


def first_weights(store: ParamStore) -> dict[str, float]:
    """The weights of the oldest version: the base that feedback is bounded around."""
    versions: Sequence[ParamVersion] = store.param_versions()
    return weights_of(versions[0].content) if versions else {}
