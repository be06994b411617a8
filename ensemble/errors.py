"""The ensemble's exceptions. ``ensemble`` may not import ``executor``, so the lead maps
these into the daemon's ``DtaError`` hierarchy at the wiring edge (``EnsembleConfigError``
-> ``ConfigError``)."""

from __future__ import annotations


class EnsembleError(Exception):
    """Base of every error the ensemble raises (it raises only at build time)."""


class EnsembleConfigError(EnsembleError):
    """The ensemble configuration cannot be built: nothing is started."""


class PromptLibraryError(EnsembleConfigError):
    """A prompt template is malformed, or its content changed without a version bump."""


class ProviderCallError(EnsembleError):
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
