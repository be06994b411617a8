"""Column types that keep the journal's timestamps aware UTC on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; SQLite drops tzinfo, so results are re-tagged as UTC on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = _as_utc(value)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def fast_bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        """The bind processor the journal's prepared statements use (``prepared.py``): the
        same value as ``process_bind_param`` followed by the dialect's own DATETIME
        processor, in one step. On SQLite that is SQLAlchemy's storage text
        ``YYYY-MM-DD HH:MM:SS.ffffff``; a UTC timestamp (the usual case) skips the time
        zone conversion. A decision writes about ten timestamps, a replay one per bar."""
        if dialect.name != "sqlite":
            return partial(self.process_bind_param, dialect=dialect)
        return _sqlite_utc_text

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _as_utc(value: Any) -> datetime:
    """``value`` as an aware UTC datetime; a naive one (or not a datetime) is refused."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected datetime, got {type(value).__name__}")
    if value.tzinfo is UTC:  # the usual case: no conversion
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r} reached the journal")
    return value.astimezone(UTC)


def _sqlite_utc_text(value: Any) -> str | None:
    if value is None:
        return None
    return _as_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")
