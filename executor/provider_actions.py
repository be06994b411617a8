"""Taking a provider out of rotation and putting it back: the rules, once, for `dta
providers disable|enable` and the console's Providers page. A running daemon follows the
journaled event within a second (it polls ``latest_provider_event_id``).

- a reason is required (``ConfigError``, exit 2), and a person's name;
- the provider must be in the active parameter set (``NotFound``, exit 4);
- disabling a disabled provider, or enabling one in rotation, is refused
  (``OperatorRefusal``, exit 5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from domain.errors import ConfigError, NotFound, OperatorRefusal
from executor.provider_state import configured_providers

if TYPE_CHECKING:
    from executor.journal.store import Journal
    from executor.settings import Settings

__all__ = ["set_rotation"]


def set_rotation(journal: Journal, settings: Settings, name: str, *, enable: bool,
                 person: str, reason: str) -> str:
    """Enable or disable provider ``name`` as ``person`` for ``reason``; returns the
    journaled action (``enable`` or ``disable``)."""
    action = "enable" if enable else "disable"
    if not reason.strip():
        raise ConfigError("a reason is required")
    if not person.strip():
        raise ConfigError("a provider change needs the person who makes it")
    if name not in configured_providers(journal, settings):
        raise NotFound(f"no provider {name!r} in the active parameter set")
    disabled = name in journal.provider_calls.disabled_providers()
    if disabled != enable:
        raise OperatorRefusal(f"provider {name!r} is already "
                              f"{'disabled' if disabled else 'in rotation'}")
    journal.provider_calls.record_provider_event(name, action, person.strip(), reason.strip())
    return action
