"""Builds the daemon's object graph once, from ``Settings``: every arrow of the cycle is a
plain method call between objects made here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ensemble.base import Provider
from ensemble.ensemble import Ensemble
from ensemble.local import MomentumProvider, StructureProvider
from executor.brokers.paper import PaperBroker
from executor.daemon import RealtimeExecutor
from executor.errors import ConfigError
from executor.feeds.files import LoadedBars, load_bars
from executor.feeds.replay import ReplayFeed
from executor.feeds.validator import BarValidator
from executor.journal.store import Journal
from executor.settings import ProviderSettings, Settings
from executor.systemd import Notifier
from guardrails.consensus import ConsensusCheck
from guardrails.guardrails import Guardrails
from guardrails.kill_switch import KillSwitchCheck
from guardrails.limits import MaxPositionCheck
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
    providers = [build_provider(p) for p in settings.ensemble.providers]
    weights = {p.name: p.weight for p in settings.ensemble.providers}
    return Ensemble(providers, weights, settings.parameter_set().content_hash)


def build_guardrails(settings: Settings, journal: Journal) -> Guardrails:
    g = settings.guardrails
    return Guardrails([
        KillSwitchCheck(journal),
        MaxPositionCheck(g.max_position_lots),
        ConsensusCheck(g.min_confidence, g.min_agreement),
    ])


def load_replay_data(settings: Settings, path: Path | None = None) -> LoadedBars:
    data = settings.data
    source = path or data.path
    if source is None:
        raise ConfigError("data.path: no bar file given (use --data FILE or set data.path)")
    return load_bars(source, symbol=data.symbol, timeframe=data.timeframe,
                     server_utc_offset_hours=data.server_utc_offset_hours, point=data.point)


def build_daemon(settings: Settings, journal: Journal, *, data: Path | None = None,
                 notifier: Notifier | None = None) -> Daemon:
    if settings.mode == "live":
        raise ConfigError(
            "mode 'live': no live broker adapter is configured in this build "
            "(MetaTrader 5 and ccxt adapters are not installed); use --mode paper")
    if settings.mode == "shadow":
        raise ConfigError(
            "mode 'shadow': shadow mode needs a live MT5 or ccxt account to read the EA's "
            "trades from, which this build does not have yet; use --mode paper")
    loaded = load_replay_data(settings, data)
    feed = ReplayFeed(loaded)
    fresh = journal.last_bar_time(loaded.symbol, loaded.timeframe) is None
    for rej in loaded.rejected if fresh else ():  # journaled once, by the first run
        journal.record_rejection(None, loaded.symbol, loaded.timeframe, "unparseable_row",
                                 f"line {rej.line}: {rej.reason}")
    try:
        strategy = build_strategy(settings.strategy.name, settings.strategy.params)
        SnapshotBuilder(**settings.strategy.snapshot)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"strategy: {exc}") from None
    snapshot_params = dict(settings.strategy.snapshot)
    params = settings.parameter_set()
    broker = PaperBroker(contract_size=settings.paper.contract_size,
                         initial_balance=settings.paper.initial_balance)
    executor = RealtimeExecutor(
        mode=settings.mode, account=settings.account, journal=journal, feed=feed,
        streams=[(loaded.symbol, loaded.timeframe)], broker=broker, strategy=strategy,
        strategy_params=settings.strategy.params,
        builder_factory=lambda: SnapshotBuilder(**snapshot_params),
        validator=BarValidator(), ensemble=build_ensemble(settings),
        guardrails=build_guardrails(settings, journal), params=params,
        settings_hash=settings.content_hash, order_volume=settings.paper.order_volume_lots,
        batch_bars=settings.journal.batch_bars, notifier=notifier)
    return Daemon(executor, journal, feed, loaded)
