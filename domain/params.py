"""The versioned parameter set and the canonical hash that names it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ParameterSet:
    """Strategy parameters, ensemble weights and guardrail limits as one hashed document."""

    values: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return stable_hash(self.values)


def stable_hash(value: Any) -> str:
    """SHA-256 of canonical JSON: key order and float formatting never change the hash."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
