"""Values as the journal stores and returns them: UTC timestamps, storable text."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """A timestamp read back through a driver that drops the zone (SQLite), tagged UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso_utc(t: datetime | None) -> str | None:
    if t is None:
        return None
    return (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)).isoformat()


def storable_text(value: str) -> str:
    """``value`` as text every driver can encode: a lone surrogate (half an emoji from a
    model's JSON-escaped answer) becomes its backslash escape instead of failing the
    commit."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


# Provider events an operator makes (the others are breaker transitions); light, so the
# driver-only status reads share it with the repository.
OPERATOR_ACTIONS = ("disable", "enable")
