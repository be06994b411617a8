"""Guardrails: every order passes every check. Depends on domain types and store protocols."""

from guardrails.base import AccountState
from guardrails.consensus import ConsensusCheck
from guardrails.guardrails import Guardrails
from guardrails.limits import MaxPositionCheck
from guardrails.state import TradingState, TradingStateCheck

__all__ = ["AccountState", "ConsensusCheck", "Guardrails", "MaxPositionCheck", "TradingState",
           "TradingStateCheck"]
