"""One exception tree for the whole program, with operator-readable messages.

Adapters map library errors (ccxt, MetaTrader5, SQLAlchemy, the LLM SDKs) into it at their
edge, so the daemon decides on our types, and the CLI picks its exit code from the type
(``exit_code``), never from a message or a class name.

    DtaError                        1  something failed; the message says what
      ConfigError                   2  settings or input are invalid: nothing was done
        EnsembleConfigError            the ensemble cannot be built
          PromptLibraryError           a prompt template is malformed or unpinned
      DataFormatError               2  an input file (bar file, EA deals) cannot be read
      JournalError                  3  the journal cannot be read or written
      NotFound                      4  no such order, request or version
      OperatorRefusal               5  understood, but not allowed now (roles, state, lease)
        LeaseError                     another daemon trades this account
      VenueError                    1  a broker or exchange call failed
        TemporaryVenueError            may work if retried (network, rate limit, busy)
        PermanentVenueError            will not work as sent (refused, unknown symbol)
          InsufficientFunds              balance or margin does not cover the order
          OrderTooSmall                  below the venue's minimum notional or quantity
          OrderWouldTrigger              a stop already past its trigger price
          ReduceOnlyRejected             reduce-only, but nothing (that side) to reduce
      InvalidTransition             1  an order state change the state table forbids
      MalformedApproval             1  a queued approval request cannot be read back
      ProviderCallError                one provider's call failed: an abstention, never
                                       raised past the ensemble member that made the call

Exit codes, one per meaning (``EXIT_CODES``; runbooks/README.md has the same table and
tests/unit/domain/test_exit_codes.py holds them together): a command's code tells a
script or a timer what happened without parsing the message.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_JOURNAL, EXIT_NOT_FOUND, EXIT_REFUSED = 0, 1, 2, 3, 4, 5
EXIT_DEGRADED, EXIT_UNHEALTHY = 8, 9  # `dta doctor` only: the health signal for monitoring
EXIT_INTERRUPTED = 130  # Ctrl-C outside a run (128 + SIGINT, the shell's convention)

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_FAILURE: "runtime failure (a venue, a provider probe, a stopped replay)",
    EXIT_CONFIG: "invalid settings, usage or input file: nothing was done",
    EXIT_JOURNAL: "journal unavailable, not migrated, or not writable",
    EXIT_NOT_FOUND: "not found (order, request, version, provider, incident)",
    EXIT_REFUSED: "refused: understood but not allowed now",
    EXIT_DEGRADED: "doctor: degraded",
    EXIT_UNHEALTHY: "doctor: unhealthy",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class DtaError(Exception):
    """Base of every error the program reports to an operator."""

    exit_code: ClassVar[int] = EXIT_FAILURE


class ConfigError(DtaError):
    """Settings or a command's input are invalid: nothing is started or changed."""

    exit_code = EXIT_CONFIG


class EnsembleConfigError(ConfigError):
    """The ensemble configuration cannot be built: nothing is started."""


class PromptLibraryError(EnsembleConfigError):
    """A prompt template is malformed, or its content changed without a version bump."""


class DataFormatError(DtaError):
    """An input file the operator named (a bar file, the EA's deals) cannot be read: bad
    input, like a bad setting, so the same exit code whichever command reads it."""

    exit_code = EXIT_CONFIG


class JournalError(DtaError):
    """The journal cannot be written or read: trading halts rather than trade unjournaled."""

    exit_code = EXIT_JOURNAL


class NotFound(DtaError):
    """What the command names does not exist (an order, a request, a version)."""

    exit_code = EXIT_NOT_FOUND


class OperatorRefusal(DtaError):
    """The request is understood but not allowed now: a role, the trading state, a
    request already decided, a version marked bad."""

    exit_code = EXIT_REFUSED


class LeaseError(OperatorRefusal):
    """Another daemon holds the trading lease on this account: this one must not trade."""


class VenueError(DtaError):
    """A broker or exchange call failed; ``retryable`` says whether a read may be retried.

    Raise ``TemporaryVenueError`` or ``PermanentVenueError`` where the kind is known when
    writing the code; ``VenueError(..., retryable=...)`` where it is decided at run time
    (a ccxt ``NetworkError`` is temporary, its other errors are not)."""

    retryable: bool

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class TemporaryVenueError(VenueError):
    """The venue may answer if asked again: network, rate limit, busy, maintenance."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class PermanentVenueError(VenueError):
    """The venue will not accept this as sent: refused, unknown symbol, bad credentials."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class InsufficientFunds(PermanentVenueError):
    """The account's balance (spot) or available margin (derivatives) does not cover it."""


class OrderTooSmall(PermanentVenueError):
    """Below the venue's minimum notional or quantity for this symbol."""


class OrderWouldTrigger(PermanentVenueError):
    """A conditional order whose trigger the price has already passed: the venue refuses it
    rather than fire it at once. For a protective stop it means: exit now."""


class ReduceOnlyRejected(PermanentVenueError):
    """A reduce-only order with nothing on the other side to reduce: the position is flat
    (closed by a stop, a liquidation or by hand) or on the order's own side."""


class InvalidTransition(DtaError, ValueError):
    """An order state change that ``ORDER_TRANSITIONS`` does not allow."""


class MalformedApproval(DtaError, ValueError):
    """A queued request cannot be read back as the trade it asks a person to approve: it
    is expired with its reason, never guessed at."""


class ProviderCallError(DtaError):
    """An adapter's call failed; ``error_class`` names the SDK exception class.

    Raised inside a worker thread and turned into an abstention by the member that made the
    call: it never reaches the daemon.
    """

    def __init__(self, message: str, *, error_class: str, timeout: bool = False,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.timeout = timeout
        self.status = status
