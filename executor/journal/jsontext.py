"""The journal's JSON text: orjson where it can, the standard library where it cannot.

Why: a decision writes six JSON columns (the snapshot summary, tags, provider mix, signals,
contributions, the verdict's checks), and orjson encodes them several times faster than the
standard encoder (figures in benchmarks/README.md). Both write valid JSON that reads back to the
same values, so journals written before and after mix freely.

What stays the same: anything orjson would write differently in meaning, or refuse, goes
to ``json.dumps`` exactly as before: datetimes and dataclasses (orjson would serialise
them silently; the journal has always refused them, so a bug cannot slip a datetime into
a JSON column), lone surrogates, integers beyond 64 bits, other unknown types. One
difference is kept on purpose: a NaN or infinity becomes ``null`` (orjson's choice, and
valid JSON, which PostgreSQL's ``json`` type requires) instead of the bare ``NaN`` token.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Subclasses of str, int, dict and list (the SMC tags are a StrEnum) are written as their
# base type, as the standard library writes them.
_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_DATACLASS)


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=_OPTIONS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value)
