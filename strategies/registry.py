"""Strategies by name, so settings can pick one and its parameters stay in the parameter set.

A name is, in this order: a built-in (``STRATEGIES``), an installed entry point of the
``dta.strategies`` group, or an import path ``package.module:Class`` (strategies/plugins.py).
Built-ins come first so that no installed package can take over one of their names.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from strategies.logic import TradeLogic
from strategies.plugins import (
    ENTRY_POINT_GROUP,
    PluginOrigin,
    StrategyLoadError,
    check_instance,
    find_plugin,
    first_line,
    installed_entry_points,
)
from strategies.smc_strategy import SmcOrderBlockRetest
from strategies.swing_breakout import SwingBreakout

STRATEGIES: dict[str, Callable[..., TradeLogic]] = {
    SmcOrderBlockRetest.name: SmcOrderBlockRetest,
    SwingBreakout.name: SwingBreakout,
}

__all__ = ["STRATEGIES", "StrategyLoadError", "StrategySpec", "build_strategy",
           "checked_params", "resolve_strategy", "strategy_checks", "unchecked_strategy"]

# Whether loading settings resolves the configured strategy (imports a desk's module and
# checks its parameters). Off only for the commands that must work whatever the strategy
# is: making trading safer cannot wait for a broken or missing plugin to be fixed.
_CHECKS: ContextVar[bool] = ContextVar("dta_strategy_checks", default=True)


def strategy_checks() -> bool:
    return _CHECKS.get()


@contextmanager
def unchecked_strategy() -> Iterator[None]:
    """Settings loaded inside this block take the strategy's name and parameters as
    written, resolving nothing (`dta trading-state`)."""
    token = _CHECKS.set(False)
    try:
        yield
    finally:
        _CHECKS.reset(token)


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """A strategy name resolved to the class it builds; ``origin`` is None for a built-in."""

    name: str
    factory: Callable[..., TradeLogic]
    origin: PluginOrigin | None = None

    @property
    def identity(self) -> dict[str, Any]:
        """What the parameter set records beside name and parameters. Nothing for a
        built-in: its parameter sets, and their hashes in every journal, predate plugins."""
        return {} if self.origin is None else {"plugin": self.origin.identity()}


def resolve_strategy(name: str) -> StrategySpec:
    """The strategy ``name`` designates; ``StrategyLoadError`` when none can be loaded."""
    factory = STRATEGIES.get(name)
    if factory is not None:
        return StrategySpec(name, factory)
    found = find_plugin(name)
    if found is None:
        builtins = ", ".join(sorted(STRATEGIES))
        entry_points = ", ".join(sorted(installed_entry_points())) or "none installed"
        raise StrategyLoadError(
            f"unknown strategy {name!r}: not a built-in ({builtins}), not an installed "
            f"{ENTRY_POINT_GROUP!r} entry point ({entry_points}), and not an import path "
            "'package.module:Class'")
    return StrategySpec(name, *found)


def build_strategy(name: str, params: Mapping[str, Any]) -> TradeLogic:
    return checked_params(resolve_strategy(name), params)[1]


def checked_params(spec: StrategySpec, params: Mapping[str, Any]
                   ) -> tuple[dict[str, Any], TradeLogic]:
    """The parameters to record in the parameter set, and the strategy built with them.

    Validation is the built-ins' own: the class is called with the parameters as keyword
    arguments and refuses what it does not take (``TypeError``) or accept (``ValueError``).
    A plugin may declare a pydantic ``Params`` model, which checks and converts them first.
    A built-in records its parameters as given; a plugin records them with its defaults
    filled in, so that a default changed in the desk's code makes a new parameter version.
    """
    given = dict(params)
    if spec.origin is None:
        return given, _construct(spec, given, given)
    model = getattr(spec.factory, "Params", None)
    if model is not None and hasattr(model, "model_validate"):
        kwargs, recorded = _model_params(spec, model, given)
    else:
        kwargs, recorded = given, _with_defaults(spec, given)
    strategy = _construct(spec, kwargs, given)
    check_instance(strategy, spec.name)
    return recorded, strategy


def _construct(spec: StrategySpec, kwargs: dict[str, Any], shown: dict[str, Any]
               ) -> TradeLogic:
    try:
        return spec.factory(**kwargs)
    except (TypeError, ValueError) as exc:
        raise StrategyLoadError(f"strategy {spec.name!r}: bad parameters {shown}: "
                                f"{first_line(exc)}") from None


def _model_params(spec: StrategySpec, model: Any, given: dict[str, Any]
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments from the plugin's ``Params`` model, and their JSON form."""
    from pydantic import ValidationError

    fields: dict[str, Any] = dict(model.model_fields)
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise StrategyLoadError(f"strategy {spec.name!r}: unknown parameter(s) "
                                f"{', '.join(unknown)}; it takes {', '.join(fields) or 'none'}")
    try:
        validated = model.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise StrategyLoadError(f"strategy {spec.name!r}: bad parameters {given}: "
                                f"{problems}") from None
    recorded: dict[str, Any] = validated.model_dump(mode="json")
    return {name: getattr(validated, name) for name in fields}, recorded


def _with_defaults(spec: StrategySpec, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` plus the defaults of the keyword parameters it leaves out, where a default
    is a plain JSON value (any other default stays the class's own business)."""
    try:
        signature = inspect.signature(spec.factory)
    except (TypeError, ValueError):  # no signature to read: record what was given
        return dict(given)
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    defaults = {p.name: p.default for p in signature.parameters.values()
                if p.kind in keyword and p.name not in given and _plain(p.default)}
    return {**defaults, **given}


def _plain(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int | str)
