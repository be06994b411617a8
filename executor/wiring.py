"""Builds the daemon's object graph once, from ``Settings``: every arrow of the cycle is a
plain method call between objects made here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ensemble.base import Provider
from ensemble.ensemble import Ensemble
from ensemble.local import MomentumProvider, StructureProvider
from executor.brokers.paper import PaperBroker
from executor.components import ComponentFactory, Components
from executor.daemon import RealtimeExecutor
from executor.errors import ConfigError
from executor.feeds.files import LoadedBars, load_bars
from executor.feeds.replay import ReplayFeed
from executor.feeds.validator import BarValidator
from executor.governance import ClearanceCheck
from executor.journal.store import Journal
from executor.metrics import Metrics
from executor.settings import GuardrailSettings, ProviderSettings, Settings
from executor.shadow import CsvEaSource, EaSource, ShadowBroker
from executor.systemd import Notifier
from guardrails.base import Check
from guardrails.consensus import ConsensusCheck
from guardrails.guardrails import Guardrails
from guardrails.limits import (
    DailyLossCheck,
    MaxGrossExposureCheck,
    MaxOrderNotionalCheck,
    MaxPositionCheck,
    MaxSpreadCheck,
    MinStopDistanceCheck,
    OrderThrottleCheck,
    ProvidersAvailableCheck,
    StaleDataCheck,
    TradingHoursCheck,
)
from guardrails.state import TradingStateCheck
from strategies.domain import ParameterSet
from strategies.registry import build_strategy
from strategies.snapshot import SnapshotBuilder


@dataclass
class Daemon:
    executor: RealtimeExecutor
    journal: Journal
    feed: ReplayFeed
    loaded: LoadedBars


def build_provider(cfg: ProviderSettings) -> Provider:
    try:
        if cfg.kind == "structure":
            return StructureProvider(cfg.name, **cfg.params)
        return MomentumProvider(cfg.name, **cfg.params)
    except TypeError as exc:
        raise ConfigError(f"ensemble.providers[{cfg.name}].params: {exc}") from None


def build_ensemble(settings: Settings) -> Ensemble:
    """The ensemble as the settings file describes it (its own parameter set)."""
    content = settings.parameter_set().values
    return ensemble_from_params(content, settings.parameter_set().content_hash)


def ensemble_from_params(content: dict[str, Any], params_hash: str,
                         disabled: frozenset[str] = frozenset()) -> Ensemble:
    """Providers an operator disabled (`dta providers disable`) are left out of rotation."""
    providers: list[Provider] = []
    weights: dict[str, float] = {}
    for name, cfg in content.get("ensemble", {}).items():
        if name in disabled:
            continue
        providers.append(build_provider(ProviderSettings(
            name=name, kind=cfg["kind"], weight=cfg.get("weight", 1.0),
            params=cfg.get("params", {}))))
        weights[name] = float(cfg.get("weight", 1.0))
    return Ensemble(providers, weights, params_hash)


def build_guardrails(guard: GuardrailSettings | Settings, journal: Journal,
                     mode: str = "paper", *, account: str = "", strategy: str = "",
                     ) -> Guardrails:
    """Every check the settings ask for; a limit left unset is not built at all."""
    g = guard.guardrails if isinstance(guard, Settings) else guard
    cons = g.consensus_for(mode)
    checks: list[Check] = [
        TradingStateCheck(journal),
        ClearanceCheck(journal, account, strategy, mode),
        MaxPositionCheck(g.max_position_lots),
        ConsensusCheck(cons.min_confidence, cons.min_agreement, rule=cons.rule,
                       conflict_margin=cons.conflict_margin,
                       approval_floor=cons.approval_floor),
    ]
    if g.max_gross_exposure_lots is not None:
        checks.append(MaxGrossExposureCheck(g.max_gross_exposure_lots))
    if g.max_order_notional is not None:
        checks.append(MaxOrderNotionalCheck(g.max_order_notional))
    if g.max_orders_per_minute is not None:
        checks.append(OrderThrottleCheck(g.max_orders_per_minute))
    if g.max_daily_loss is not None:
        checks.append(DailyLossCheck(g.max_daily_loss))
    if g.min_stop_atr is not None or g.min_stop_points is not None:
        checks.append(MinStopDistanceCheck(g.min_stop_atr, g.min_stop_points))
    if g.max_spread is not None:
        checks.append(MaxSpreadCheck(g.max_spread))
    if g.trading_windows or g.news_blackouts:
        checks.append(TradingHoursCheck(g.trading_windows, g.news_blackouts))
    if g.stale_after_bars is not None:
        checks.append(StaleDataCheck(g.stale_after_bars))
    if g.required_provider_classes:
        checks.append(ProvidersAvailableCheck(g.required_provider_classes))
    return Guardrails(checks)


def component_factory(mode: str, journal: Journal, account: str = "") -> ComponentFactory:
    """Turns a parameter-set version's content into the objects the cycle runs with."""

    def build(version: int, content: dict[str, Any]) -> Components:
        params = ParameterSet(content)
        strategy_cfg = content.get("strategy", {})
        try:
            strategy = build_strategy(strategy_cfg["name"], strategy_cfg.get("params", {}))
            snapshot_params = dict(strategy_cfg.get("snapshot", {}))
            SnapshotBuilder(**snapshot_params)
            guard = GuardrailSettings.model_validate(content.get("guardrails", {}))
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"parameter set v{version}: {exc}") from None
        return Components(
            version=version, params=params, strategy=strategy,
            strategy_params=dict(strategy_cfg.get("params", {})),
            snapshot_params=snapshot_params,
            ensemble=ensemble_from_params(content, params.content_hash,
                                          frozenset(journal.disabled_providers())),
            guardrails=build_guardrails(guard, journal, mode, account=account,
                                        strategy=strategy_cfg["name"]), guard=guard,
            order_volume=float(content.get("paper", {}).get("order_volume_lots", 0.1)))

    return build


def load_replay_data(settings: Settings, path: Path | None = None) -> LoadedBars:
    data = settings.data
    source = path or data.path
    if source is None:
        raise ConfigError("data.path: no bar file given (use --data FILE or set data.path)")
    return load_bars(source, symbol=data.symbol, timeframe=data.timeframe,
                     server_utc_offset_hours=data.server_utc_offset_hours, point=data.point)


def build_daemon(settings: Settings, journal: Journal, *, data: Path | None = None,
                 notifier: Notifier | None = None, metrics: Metrics | None = None) -> Daemon:
    if settings.mode == "live":
        raise ConfigError(
            "mode 'live': no live broker adapter is configured in this build "
            "(MetaTrader 5 and ccxt adapters are not installed); use --mode paper")
    ea_source: EaSource | None = None
    if settings.mode == "shadow":
        if settings.shadow.ea_deals_file is None:
            raise ConfigError(
                "mode 'shadow': shadow.ea_deals_file is not set: shadow mode needs the EA's "
                "deals (a CSV export, or the MT5 account once its adapter is configured)")
        ea_source = CsvEaSource(settings.shadow.ea_deals_file, magic=settings.shadow.ea_magic,
                                server_utc_offset_hours=settings.data.server_utc_offset_hours)
    loaded = load_replay_data(settings, data)
    feed = ReplayFeed(loaded)
    fresh = journal.last_bar_time(loaded.symbol, loaded.timeframe) is None
    for rej in loaded.rejected if fresh else ():  # journaled once, by the first run
        journal.record_rejection(None, loaded.symbol, loaded.timeframe, "unparseable_row",
                                 f"line {rej.line}: {rej.reason}")
    factory = component_factory(settings.mode, journal, settings.account)
    factory(0, settings.parameter_set().values)  # fail fast on bad settings, before any I/O
    broker_cls = ShadowBroker if settings.mode == "shadow" else PaperBroker
    broker = broker_cls(contract_size=settings.paper.contract_size,
                        initial_balance=settings.paper.initial_balance)
    executor = RealtimeExecutor(
        mode=settings.mode, account=settings.account, journal=journal, feed=feed,
        streams=[(loaded.symbol, loaded.timeframe)], broker=broker, components=factory,
        settings_params=settings.parameter_set().values, validator=BarValidator(),
        settings_hash=settings.content_hash, batch_bars=settings.journal.batch_bars,
        notifier=notifier, points={loaded.symbol: loaded.point} if loaded.point else None,
        contract_size=settings.paper.contract_size, metrics=metrics, ea_source=ea_source)
    return Daemon(executor, journal, feed, loaded)
