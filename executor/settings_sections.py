"""Settings sections moved out of ``executor.settings`` to keep it under the 500-line
limit (tests/unit/test_code_shape.py); ``executor.settings`` re-exports them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from executor.brokers.paper_venue import FUNDING_RATE, VenueKind


class ObservabilitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics_enabled: bool = False
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=1, le=65535)
    sentry_environment: str = "production"


class PaperSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_balance: float = Field(default=10_000.0, gt=0)
    contract_size: float = Field(default=100_000.0, gt=0)
    order_volume_lots: float = Field(default=0.1, gt=0)
    # The simulated venue's order sizes (as MT5's volume_step / volume_min): volumes are
    # rounded down to the step before the guardrails, and one below the minimum is vetoed.
    # Unset: sizes are not rounded (a volume of zero is still vetoed).
    volume_step: float | None = Field(default=None, gt=0)
    volume_min: float | None = Field(default=None, gt=0)
    # What the account trades like (executor/brokers/paper_venue.py); ``fee_rate`` unset is
    # the venue's taker rate; ``funding_rate`` per 8 h on a swap (> 0: longs pay shorts).
    # At their defaults they stay out of every dump: this section is part of the parameter
    # set, and a new hash for the same settings would activate a new parameter version in
    # every journal made before them (guardrails.params.ensure_registered).
    venue: VenueKind = Field(default="mt5-netting", exclude_if=lambda v: v == "mt5-netting")
    fee_rate: float | None = Field(default=None, ge=0, lt=1, exclude_if=lambda v: v is None)
    funding_rate: float = Field(default=FUNDING_RATE, gt=-1, lt=1,
                                exclude_if=lambda v: v == FUNDING_RATE)
