"""``structlog.get_logger`` without importing structlog until the first log call.

structlog imports ``rich`` (and with it ``pygments`` and ``attrs``) at import time whenever
rich is installed, and typer installs it: a large share of a short command's start-up
(benchmarks/README.md). A module that logs only on rare paths and is imported by the
read-only `dta` commands (the journal) takes its logger from here, so `dta status` never
pays for it. The semantics are structlog's: its ``get_logger`` already
returns a proxy that binds on first use, i.e. after ``configure_logging`` has run.
"""

from __future__ import annotations

from typing import Any


class _LazyLogger:
    __slots__ = ("_args", "_logger", "_values")

    def __init__(self, args: tuple[Any, ...], values: dict[str, Any]) -> None:
        self._args = args
        self._values = values
        self._logger: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(*self._args, **self._values)
        return getattr(self._logger, name)


def get_logger(*args: Any, **initial_values: Any) -> Any:
    return _LazyLogger(args, initial_values)
