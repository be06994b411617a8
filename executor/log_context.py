"""Log context for a block: ``with log_context(decision_id=7): ...``.

The same effect as ``structlog.contextvars.bound_contextvars`` (the keys are bound for the
block and their previous values restored after it, other keys untouched), by resetting the
context variables' own tokens. structlog's version reads the whole context first and binds
twice; on the decision path, where every decision and order enters such a block, it cost
~20 us a block.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from structlog.contextvars import bind_contextvars, reset_contextvars


class log_context:  # used like a function, as structlog's is
    __slots__ = ("_tokens", "_values")

    def __init__(self, **values: Any) -> None:
        self._values = values
        self._tokens: dict[str, Token[Any]] = {}

    def __enter__(self) -> None:
        self._tokens = dict(bind_contextvars(**self._values))

    def __exit__(self, *_exc: object) -> None:
        reset_contextvars(**self._tokens)
