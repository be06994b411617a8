"""One exception hierarchy with operator-readable messages. Adapters map library errors
(ccxt, MetaTrader5, SQLAlchemy) into it at their edge, so the daemon decides on our types."""

from __future__ import annotations


class DtaError(Exception):
    """Base of every error the daemon reports to an operator."""


class ConfigError(DtaError):
    """Settings are invalid: nothing is started."""


class DataFormatError(DtaError):
    """A bar file or payload cannot be read."""


class BrokerError(DtaError):
    """A broker or exchange call failed; ``retryable`` says whether a read may be retried."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class JournalError(DtaError):
    """The journal cannot be written or read: trading halts rather than trade unjournaled."""


class LeaseError(DtaError):
    """Another daemon holds the trading lease on this account: this one must not trade."""
