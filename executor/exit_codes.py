"""The exit code and the one line an operator reads for an error that ends a command.

The code comes from the error's type (``DtaError.exit_code``); a database driver's own
error is a journal error. Used by every `dta` command (``runbooks.common.DtaGroup``) and by
the node, which reports a failed run before it stops (``executor.engine.node``). Imports
nothing heavy: `dta --help` loads it.
"""

from __future__ import annotations

from domain.errors import EXIT_JOURNAL, JournalError


def exit_code_for(exc: BaseException) -> int | None:
    """The documented exit code for an error, by its type (``DtaError.exit_code``); a
    database driver's own error is a journal error; None for a programming error (whose
    traceback is the useful report)."""
    import sqlite3
    import sys

    from domain.errors import DtaError

    if isinstance(exc, DtaError):
        return exc.exit_code
    if isinstance(exc, sqlite3.Error):
        return EXIT_JOURNAL
    sa_exc = sys.modules.get("sqlalchemy.exc")  # imported by whatever raised one
    if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError):
        return EXIT_JOURNAL
    return None


def one_line(exc: BaseException) -> str:
    """What the operator reads: a database error's first line (the driver's own message,
    not the SQL and parameters SQLAlchemy appends), any other error as written."""
    code = exit_code_for(exc)
    if code != EXIT_JOURNAL:
        return str(exc)
    exc = _masked_original(exc)
    if isinstance(exc, JournalError):  # ours: already says what and where
        return (str(exc).splitlines() or [""])[0]
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    return f"journal unavailable: {cause.__class__.__name__}: " + (
        str(cause).splitlines() or [""])[0]


def _masked_original(exc: BaseException) -> BaseException:
    """A failed transaction's follow-up (SQLAlchemy's PendingRollbackError, from the
    ``finally: journal.close()`` of a command) hides the error that failed it: that one
    is what the operator needs to read."""
    for _ in range(8):
        head = f"{exc.__class__.__name__} {(str(exc).splitlines() or [''])[0]}"
        ctx = exc.__context__
        if ctx is None or "PendingRollbackError" not in head:
            break
        exc = ctx
    return exc
