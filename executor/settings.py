"""Settings: TOML file, ``DTA_`` environment, ``.env`` and systemd credentials.

Precedence, highest first: explicit overrides (CLI options) > environment > ``.env`` >
systemd credentials (``$CREDENTIALS_DIRECTORY``, one file per secret, named like the field)
> the TOML file > defaults. Unknown keys are errors: a typo in a limit must never silently
fall back to a default on a trading VPS.
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from domain import ParameterSet, normalize_timeframe, stable_hash
from domain.errors import ConfigError
from ensemble.config import EnsembleConfig
from executor.brokers.config import CcxtSettings, Mt5Settings, ResolverSettings, SwapSettings
from executor.console.settings import ConsoleSettings
from executor.notify.settings import NotificationSettings, NotificationUrlsCredential
from executor.settings_sections import ObservabilitySettings, PaperSettings

DEFAULT_CONFIG_PATHS = (Path("config/dta.toml"), Path("/etc/dta/dta.toml"))
# Log lines and Sentry events are scrubbed of every secret value by substring: a secret of
# a few characters would blank those characters out of every line (and is no secret).
MIN_SECRET_LENGTH = 8
OPERATOR_ROLE = "operator"  # may relax trading: see GovernanceSettings.people
_SECRET_FIELDS = ("sentry_dsn", "openai_api_key", "anthropic_api_key", "mt5_password",
                  "mt5_bridge_secret", "exchange_api_key", "exchange_api_secret",
                  "alert_webhook_url")

Mode = Literal["paper", "shadow", "live"]

_toml_path: ContextVar[Path | None] = ContextVar("dta_toml_path", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JournalSettings(_Section):
    url: str = "sqlite:///var/dta/journal.sqlite"
    # Per-bar rows of a replay are committed in batches; order rows always commit alone,
    # durably, before the broker is called.
    batch_bars: int = Field(default=1000, ge=1, le=100_000)


class DataSettings(_Section):
    """Where bars come from. Only the replay feed exists so far; MT5 and ccxt feeds come
    with the broker adapters."""

    feed: Literal["replay"] = "replay"
    path: Path | None = Path("config/samples/EURUSD_M15.csv")
    symbol: str | None = None
    timeframe: str | None = None
    server_utc_offset_hours: float = Field(default=0.0, ge=-14, le=14)
    point: float | None = Field(default=None, gt=0)

    @field_validator("timeframe")
    @classmethod
    def _tf(cls, v: str | None) -> str | None:
        return None if v is None else normalize_timeframe(v)


class SchedulerSettings(_Section):
    settle_delay_seconds: float = Field(default=2.0, ge=0, le=300)
    misfire_grace_seconds: int = Field(default=60, ge=1, le=3600)
    watchdog_interval_seconds: float = Field(default=10.0, gt=0, le=600)


class StrategySettings(_Section):
    """A built-in, an installed ``dta.strategies`` entry point or ``package.module:Class``
    (strategies/registry.py), checked at load: `dta doctor` and `dta run` refuse it early."""

    name: str = "smc_ob_retest"
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True)
    snapshot: dict[str, Any] = Field(default_factory=dict)
    _identity: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from strategies.registry import resolve_strategy, strategy_checks

        if strategy_checks():  # a StrategyLoadError is a ValueError: shown at strategy.name
            resolve_strategy(v)
        return v

    @field_validator("params")
    @classmethod
    def _accepted(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")  # a plugin's come back with its defaults filled in
        from strategies.registry import checked_params, resolve_strategy, strategy_checks

        if name is None or not strategy_checks():  # refused already, or not to be checked
            return v
        return checked_params(resolve_strategy(name), v)[0]

    @model_validator(mode="after")
    def _record_identity(self) -> StrategySettings:
        from strategies.registry import resolve_strategy, strategy_checks

        if strategy_checks():
            self._identity = resolve_strategy(self.name).identity
        return self

    def parameter_values(self) -> dict[str, Any]:
        """The strategy's part of the parameter set: for a plugin, also which class of
        which release (so a swapped class or a new release is a new parameter version)."""
        return {"name": self.name, "params": self.params, "snapshot": self.snapshot,
                **self._identity}


class ConsensusSettings(_Section):
    """At least ``min_agreement`` voters agreeing and/or combined confidence of at least
    ``min_confidence`` (``rule``). Conflicts and decisions with confidence at or above
    ``approval_floor`` (but below the bar) go to the approval queue; below it, vetoed."""

    rule: Literal["agreement", "confidence", "both", "either"] = "both"
    min_agreement: int = Field(default=1, ge=0)
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    conflict_margin: float = Field(default=0.34, gt=0, le=1)
    approval_floor: float | None = Field(default=None, ge=0, le=1)


class RegressionSettings(_Section):
    """Automatic rollback of the active parameter version (plus REDUCING) when, since its
    activation, equity draws down ``drawdown_pct`` %, the veto rate over the last
    ``veto_window`` decisions reaches ``veto_rate``, or ``error_count`` of the last
    ``error_window`` bars had an error. ``None`` turns a trigger off."""

    drawdown_pct: float | None = Field(default=None, gt=0, le=100)
    veto_rate: float | None = Field(default=None, gt=0, le=1)
    veto_window: int = Field(default=20, ge=1)
    error_count: int | None = Field(default=None, ge=1)
    error_window: int = Field(default=50, ge=1)


class WeightFeedbackSettings(_Section):
    """Approval outcomes move provider weights by at most ``eta`` per verdict, inside
    [min_factor, max_factor] x the first version's weight (guardrails/approvals.py)."""

    enabled: bool = True
    eta: float = Field(default=0.05, gt=0, lt=1)
    min_factor: float = Field(default=0.25, gt=0, le=1)
    max_factor: float = Field(default=4.0, ge=1)


class GuardrailSettings(_Section):
    consensus: ConsensusSettings = Field(default_factory=ConsensusSettings)
    consensus_by_mode: dict[Mode, ConsensusSettings] = Field(default_factory=dict)
    max_position_lots: float = Field(default=1.0, gt=0)
    max_gross_exposure_lots: float | None = Field(default=None, gt=0)
    max_order_notional: float | None = Field(default=None, gt=0)
    max_orders_per_minute: int | None = Field(default=10, ge=1)
    max_daily_loss: float | None = Field(default=None, gt=0)
    min_stop_atr: float | None = Field(default=None, gt=0)
    min_stop_points: float | None = Field(default=None, gt=0)
    max_spread: float | None = Field(default=None, gt=0)
    liquidation_buffer: float = Field(default=0.1, ge=0, lt=1)  # swap: StopBeforeLiquidation
    trading_windows: list[str] = Field(default_factory=list)  # "07:00-16:00" UTC
    news_blackouts: list[tuple[AwareDatetime, AwareDatetime]] = Field(default_factory=list)
    stale_after_bars: float | None = Field(default=None, gt=0)
    required_provider_classes: list[str] = Field(default_factory=list)
    approval_ttl_seconds: float = Field(default=900.0, gt=0)
    daily_drawdown_halt_pct: float | None = Field(default=None, gt=0, le=100)
    broker_error_halt_count: int = Field(default=5, ge=1)
    broker_error_window_seconds: float = Field(default=300.0, gt=0)
    regression: RegressionSettings = Field(default_factory=RegressionSettings)
    weight_feedback: WeightFeedbackSettings = Field(default_factory=WeightFeedbackSettings)

    @field_validator("trading_windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        from datetime import time

        for w in v:
            start, sep, end = w.partition("-")
            try:
                time.fromisoformat(start.strip())
                time.fromisoformat(end.strip())
            except ValueError:
                sep = ""
            if not sep:
                raise ValueError(f"trading window {w!r} must look like '07:00-16:00' (UTC)")
        return v

    def consensus_for(self, mode: str) -> ConsensusSettings:
        for key, rule in self.consensus_by_mode.items():
            if key == mode:
                return rule
        return self.consensus


class BrokerSettings(_Section):
    """The live account. ``paper`` simulates fills; ``mt5`` and ``ccxt`` route real
    orders in ``live`` mode (and read the account in ``shadow`` mode)."""

    kind: Literal["paper", "mt5", "ccxt"] = "paper"
    symbols: list[str] = Field(default_factory=list)  # live streams, e.g. ["EURUSD"]
    timeframe: str = "M15"
    mt5: Mt5Settings = Field(default_factory=Mt5Settings)
    ccxt: CcxtSettings = Field(default_factory=CcxtSettings)
    swap: SwapSettings = Field(default_factory=SwapSettings)  # ccxt perpetual swaps (#19)
    resolver: ResolverSettings = Field(default_factory=ResolverSettings)
    # Loopback or proxy overrides of ccxt's urls['api'] entries (name -> URL).
    ccxt_api_urls: dict[str, str] = Field(default_factory=dict)

    @field_validator("timeframe")
    @classmethod
    def _tf(cls, v: str) -> str:
        return normalize_timeframe(v)


class ShadowSettings(_Section):
    """Where the desk's EA trades come from in shadow mode, and how they are paired."""

    ea_deals_file: Path | None = None  # CSV export of the EA's deals (offline shadow)
    ea_magic: int | None = None  # only deals with this magic number are the EA's
    pairing_window_minutes: float = Field(default=60.0, gt=0)


class PromotionThresholds(_Section):
    """Evidence a promotion needs; ``None`` leaves a threshold out."""

    min_days: int | None = Field(default=None, ge=0)
    min_decisions: int | None = Field(default=None, ge=0)
    min_trades: int | None = Field(default=None, ge=0)
    min_direction_agreement: float | None = Field(default=None, ge=0, le=1)
    max_drawdown_pct: float | None = Field(default=None, ge=0, le=100)
    min_expectancy_r: float | None = None
    max_provider_error_rate: float | None = Field(default=None, ge=0, le=1)


def _to_shadow() -> PromotionThresholds:
    return PromotionThresholds(min_days=5, min_decisions=20, max_drawdown_pct=20.0,
                               max_provider_error_rate=0.2)


def _to_live() -> PromotionThresholds:
    return PromotionThresholds(min_days=20, min_decisions=100, min_trades=20,
                               min_direction_agreement=0.6, max_drawdown_pct=10.0,
                               min_expectancy_r=0.0, max_provider_error_rate=0.05)


class ProviderRegisterEntry(_Section):
    """What the desk declared about one provider's data handling (the data register)."""

    data_fields: list[str] = Field(default_factory=list)  # fields its prompts may send
    region: str | None = None
    retention_days: int | None = Field(default=None, ge=0)
    training_use: bool | None = None  # may the vendor train on our prompts?
    last_review: date | None = None


class GovernanceSettings(_Section):
    """Who signs a promotion, the evidence each step needs, and the provider data
    register with its review period."""

    roles: list[str] = Field(default_factory=lambda: ["trading", "compliance", "platform"])
    # Named people and the roles each may exercise: the gate's roles above, and "operator"
    # (make trading ACTIVE again, activate or roll back parameters, decide approvals,
    # promote). Empty: no binding, but each role still needs a different named person.
    people: dict[str, list[str]] = Field(default_factory=dict)
    review_period_days: int = Field(default=180, ge=1)
    providers: dict[str, ProviderRegisterEntry] = Field(default_factory=dict)
    to_shadow: PromotionThresholds = Field(default_factory=_to_shadow)
    to_live: PromotionThresholds = Field(default_factory=_to_live)

    @model_validator(mode="after")
    def _people_hold_known_roles(self) -> GovernanceSettings:
        known = {*self.roles, OPERATOR_ROLE}
        for person, held in self.people.items():
            if not person.strip():
                raise ValueError("governance.people: a person needs a name")
            unknown = sorted(set(held) - known)
            if unknown:
                raise ValueError(f"governance.people.{person}: unknown role(s) "
                                 f"{', '.join(map(repr, unknown))} (roles: "
                                 f"{', '.join(sorted(known))})")
        if self.people:
            nobody = [r for r in [*self.roles, OPERATOR_ROLE]
                      if not any(r in held for held in self.people.values())]
            if nobody:
                raise ValueError(f"governance.people: nobody holds {', '.join(nobody)}")
        return self

    @field_validator("to_shadow", "to_live", mode="before")
    @classmethod
    def _over_defaults(cls, v: Any, info: ValidationInfo) -> Any:
        """A partial table changes the keys it names; the others keep their defaults
        (without this, a one-key ``[governance.to_live]`` dropped every other threshold)."""
        if isinstance(v, dict):
            default = _to_shadow() if info.field_name == "to_shadow" else _to_live()
            return {**default.model_dump(), **v}
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DTA_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    mode: Mode = "paper"
    account: str = Field(default="paper-1", min_length=1, max_length=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    journal: JournalSettings = Field(default_factory=JournalSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    guardrails: GuardrailSettings = Field(default_factory=GuardrailSettings)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    governance: GovernanceSettings = Field(default_factory=GovernanceSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)

    # Secrets: never logged, never journaled, masked by `dta config show`.
    sentry_dsn: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None
    mt5_password: SecretStr | None = None
    mt5_bridge_secret: SecretStr | None = None
    exchange_api_key: SecretStr | None = None
    exchange_api_secret: SecretStr | None = None
    alert_webhook_url: SecretStr | None = None  # one more notification URL (deprecated)

    @field_validator(*_SECRET_FIELDS)
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and 0 < len(v.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(_too_short(len(v.get_secret_value())))
        return v

    @model_validator(mode="after")
    def _provider_keys_long_enough(self) -> Settings:
        for provider in self.ensemble.providers:
            key = provider.api_key.get_secret_value() if provider.api_key else ""
            if 0 < len(key) < MIN_SECRET_LENGTH:
                raise ValueError(f"ensemble provider {provider.name!r} api_key: "
                                 + _too_short(len(key)))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        credentials = os.environ.get("CREDENTIALS_DIRECTORY")
        if credentials and Path(credentials).is_dir():
            # systemd names each credential file after the setting (LoadCredential=
            # openai_api_key:...), without the DTA_ prefix environment variables carry.
            sources += [SecretsSettingsSource(settings_cls, secrets_dir=credentials,
                                              env_prefix=""),
                        NotificationUrlsCredential(settings_cls)]
        path = _toml_path.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # ------------------------------------------------------------------ views

    def public_dict(self) -> dict[str, Any]:
        """Effective settings with every secret masked (set secrets show as ``**********``)."""
        return self.model_dump(mode="json")  # SecretStr dumps as '**********'

    @property
    def content_hash(self) -> str:
        """Stable across runs and key order; secret values do not enter it, only presence."""
        return stable_hash(self.public_dict())

    def secret_values(self) -> list[str]:
        """Plain secret values, for scrubbers that must keep them out of every output."""
        out = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
        for provider in self.ensemble.providers:
            if provider.api_key is not None and provider.api_key.get_secret_value():
                out.append(provider.api_key.get_secret_value())
        return out + self.notifications.secret_values()

    def provider_secrets(self) -> dict[str, SecretStr | None]:
        """The keys LLM providers may name with ``api_key_name``."""
        return {"openai_api_key": self.openai_api_key,
                "anthropic_api_key": self.anthropic_api_key}

    def parameter_set(self) -> ParameterSet:
        """Strategy parameters, ensemble weights and guardrail limits: what a decision ran
        under. Its hash is journaled with every decision and order."""
        return ParameterSet(
            values={
                "strategy": self.strategy.parameter_values(),
                "ensemble": self.ensemble.parameter_values(),
                "guardrails": self.guardrails.model_dump(mode="json"),
                "paper": self.paper.model_dump(mode="json"),
            }
        )


def _too_short(length: int) -> str:
    return (f"too short to be a real secret ({length} character(s); at least "
            f"{MIN_SECRET_LENGTH}): log lines are scrubbed of every secret value")


def resolve_config_path(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    env = os.environ.get("DTA_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; any problem becomes one ``ConfigError`` naming the field."""
    path = resolve_config_path(config)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    token = _toml_path.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from None
    finally:
        _toml_path.reset(token)


def format_validation_error(exc: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid settings{where}:"]
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling; see config/dta.example.toml)"
        got = err.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        if any(w in field for w in ("secret", "key", "password", "dsn", "webhook")):
            shown = ""
        lines.append(f"  {field}: {msg}{shown}")
    return "\n".join(lines)
