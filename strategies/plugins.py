"""A desk's own strategies: an installed ``dta.strategies`` entry point or an import path.

A desk keeps its ``TradeLogic`` classes in its own package; before this, adding one meant
patching ``STRATEGIES`` from a wrapper script, so what ran depended on how the process was
started and the parameter set could not say which code it named. Here a name in
``[strategy] name`` is looked up the way the packaging world already publishes plugins
(an entry point, like pytest's ``pytest11``), or imported from ``package.module:Class``.

Every failure is one ``StrategyLoadError`` line naming the strategy and the cause. It is a
``ValueError`` too, so a pydantic validator reports it at the setting that named it.
Loading runs at start-up and on a parameter change, never per bar.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from domain.errors import ConfigError

ENTRY_POINT_GROUP = "dta.strategies"
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class StrategyLoadError(ConfigError, ValueError):
    """A strategy name that does not lead to a usable ``TradeLogic`` class, or parameters
    it refuses: nothing is started."""


@dataclass(frozen=True, slots=True)
class PluginOrigin:
    """Where a plugin strategy came from: what the parameter set records so that another
    class, or another release of the desk's package, makes another parameter version."""

    target: str  # "package.module:Class", as imported
    entry_point: str | None = None  # the entry point's name, when found through one
    distribution: str | None = None
    version: str | None = None

    def identity(self) -> dict[str, str | None]:
        return {"class": self.target, "entry_point": self.entry_point,
                "distribution": self.distribution, "version": self.version}


def installed_entry_points() -> dict[str, list[metadata.EntryPoint]]:
    """The ``dta.strategies`` entry points of every installed distribution, by name."""
    found: dict[str, list[metadata.EntryPoint]] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, []).append(ep)
    return found


def find_plugin(name: str) -> tuple[type[Any], PluginOrigin] | None:
    """The class ``name`` designates as an entry point, else as an import path; None when
    it is neither (the caller names the choices)."""
    entry_points = installed_entry_points().get(name, [])
    if entry_points:
        return _from_entry_point(name, entry_points)
    if ":" in name:
        module, _, attr = name.partition(":")
        cls = load_class(module, attr, label=name)
        dist = _distribution_of(module)
        return cls, PluginOrigin(target=name, distribution=dist.name if dist else None,
                                 version=dist.version if dist else None)
    return None


def _from_entry_point(name: str, eps: list[metadata.EntryPoint]
                      ) -> tuple[type[Any], PluginOrigin]:
    targets = sorted({ep.value for ep in eps})
    if len(targets) > 1:  # two packages claim the name: running either would be a guess
        owners = ", ".join(sorted(_dist_label(ep) for ep in eps))
        raise StrategyLoadError(f"strategy {name!r}: the entry point is defined more than "
                                f"once ({owners}: {', '.join(targets)}); uninstall one")
    ep = eps[0]
    dist = ep.dist
    cls = load_class(ep.module, ep.attr or "", label=f"{name} (entry point {ep.value})")
    return cls, PluginOrigin(target=ep.value, entry_point=name,
                             distribution=dist.name if dist is not None else None,
                             version=dist.version if dist is not None else None)


def load_class(module: str, attr: str, *, label: str) -> type[Any]:
    """``module.attr`` imported and checked to be a ``TradeLogic`` class."""
    if not _DOTTED.fullmatch(module) or not _DOTTED.fullmatch(attr):
        raise StrategyLoadError(f"strategy {label!r}: an import path reads "
                                "'package.module:Class'")
    try:
        obj: Any = importlib.import_module(module)
    except Exception as exc:  # whatever the desk's module raises while it imports
        raise StrategyLoadError(f"strategy {label!r}: cannot import module {module!r}: "
                                f"{type(exc).__name__}: {first_line(exc)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise StrategyLoadError(f"strategy {label!r}: module {module!r} has no "
                                    f"attribute {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise StrategyLoadError(f"strategy {label!r}: {module}:{attr} is a "
                                f"{type(obj).__name__}, not a TradeLogic class")
    if not callable(getattr(obj, "on_bar", None)):
        raise StrategyLoadError(f"strategy {label!r}: {module}:{attr} is not a TradeLogic: "
                                "it has no on_bar(snapshot, ctx) method")
    return obj


def check_instance(strategy: Any, label: str) -> None:
    """The part of ``TradeLogic`` only an instance shows: a ``name`` for its proposals."""
    name = getattr(strategy, "name", None)
    if not isinstance(name, str) or not name:
        raise StrategyLoadError(f"strategy {label!r} is not a TradeLogic: it has no name "
                                "(a non-empty str attribute its proposals carry)")


def _distribution_of(module: str) -> metadata.Distribution | None:
    """The installed distribution that provides ``module``'s top-level package, if one is
    found cheaply: one named like it, or one listing it in ``top_level.txt`` (setuptools).
    A module on ``PYTHONPATH`` has none. Not ``packages_distributions()``: it reads every
    distribution's file list, at every settings load."""
    top = module.partition(".")[0]
    try:
        return metadata.distribution(top)
    except metadata.PackageNotFoundError:
        pass
    for dist in metadata.distributions():
        if top in (dist.read_text("top_level.txt") or "").split():
            return dist
    return None


def _dist_label(ep: metadata.EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
