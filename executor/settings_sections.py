"""Settings sections moved out of ``executor.settings`` to keep it under the 500-line
limit (tests/unit/test_code_shape.py); ``executor.settings`` re-exports them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ObservabilitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics_enabled: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=1, le=65535)
    sentry_environment: str = "production"
