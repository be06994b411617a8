"""Guardrails: every order passes every check. Depends on domain types and a journal view."""

from guardrails.base import AccountState
from guardrails.consensus import ConsensusCheck
from guardrails.guardrails import Guardrails
from guardrails.kill_switch import KillSwitchCheck
from guardrails.limits import MaxPositionCheck

__all__ = ["AccountState", "ConsensusCheck", "Guardrails", "KillSwitchCheck", "MaxPositionCheck"]
