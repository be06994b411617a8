"""Builds the daemon's object graph once, from ``Settings``: every arrow of the cycle is a
plain method call between objects made here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from domain import ParameterSet, stable_hash
from domain.errors import ConfigError, EnsembleConfigError
from ensemble.ensemble import Ensemble, parse_decision_key
from ensemble.factory import build_ensemble as build_ensemble_from_config
from ensemble.late import LateCalls
from ensemble.telemetry import MultiSink
from executor.brokers.base import VolumeRules
from executor.brokers.paper import PaperBroker
from executor.brokers.paper_venue import PaperVenue
from executor.components import ComponentFactory, Components
from executor.daemon import RealtimeExecutor
from executor.feeds.files import LoadedBars, load_bars
from executor.feeds.replay import ReplayFeed
from executor.feeds.validator import BarValidator
from executor.journal.store import Journal
from executor.lease import AccountLease
from executor.metrics import Metrics
from executor.settings import GuardrailSettings, Settings
from executor.shadow import CsvEaSource, EaSource, ShadowBroker
from executor.systemd import Notifier
from guardrails.base import Check
from guardrails.clearance import ClearanceCheck
from guardrails.consensus import ConsensusCheck
from guardrails.guardrails import Guardrails
from guardrails.limits import (
    DailyLossCheck,
    ExitsVersusMarketCheck,
    MaxGrossExposureCheck,
    MaxOrderNotionalCheck,
    MaxPositionCheck,
    MaxSpreadCheck,
    MinStopDistanceCheck,
    NoShortsCheck,
    OrderThrottleCheck,
    OrderVolumeCheck,
    ProvidersAvailableCheck,
    StaleDataCheck,
    StopBeforeLiquidationCheck,
    TradingHoursCheck,
)
from guardrails.params import weights_of
from guardrails.state import TradingStateCheck
from strategies.registry import build_strategy
from strategies.snapshot import SnapshotBuilder


@dataclass
class Daemon:
    executor: RealtimeExecutor
    journal: Journal
    feed: ReplayFeed | None  # None when live: the broker's feed, on the wall clock
    loaded: LoadedBars | None
    live: Any = None  # LiveParts in live mode


def build_ensemble(settings: Settings, content: dict[str, Any] | None = None,
                   disabled: frozenset[str] = frozenset(), *,
                   only: str | None = None, late_calls: LateCalls | None = None) -> Ensemble:
    """The ensemble the settings describe, with the provider weights of the parameter-set
    ``content`` (when given) and without the providers an operator disabled.

    ``late_calls``: where answers that arrive after their decision's deadline go. They
    arrive on the ensemble's pool threads, and the journal belongs to the cycle thread, so
    they only queue there; the daemon journals them at its next cycle (``build_daemon``)."""
    cfg = settings.ensemble
    if content is not None:
        weights = {k: v for k, v in weights_of(content).items()
                   if k in {p.name for p in cfg.providers}}
        cfg = cfg.with_weights(weights)
    keep = tuple(p for p in cfg.providers
                 if p.name not in disabled and (only is None or p.name == only))
    if not keep:
        raise ConfigError("ensemble: every provider is disabled; enable one with "
                          "`dta providers enable NAME --reason ...`")
    try:
        cfg = type(cfg).model_validate({**cfg.model_dump(), "providers": [
            p.model_dump() for p in keep]})
        params_hash = stable_hash(content) if content is not None else \
            settings.parameter_set().content_hash
        ensemble = build_ensemble_from_config(cfg, secrets=settings.provider_secrets(),
                                              params_hash=params_hash)
    except (EnsembleConfigError, ValueError) as exc:
        raise ConfigError(f"ensemble: {exc}") from None
    if late_calls is not None:  # beside any sink the builder was given, not instead of it
        ensemble.telemetry = (late_calls if ensemble.telemetry is None
                              else MultiSink((late_calls, ensemble.telemetry)))
        ensemble.watch_breakers(late_calls.breaker_transition)  # journaled the same way
    return ensemble


def build_guardrails(guard: GuardrailSettings | Settings, journal: Journal,
                     mode: str = "paper", *, account: str = "", strategy: str = "",
                     ) -> Guardrails:
    """Every check the settings ask for; a limit left unset is not built at all."""
    g = guard.guardrails if isinstance(guard, Settings) else guard
    cons = g.consensus_for(mode)
    checks: list[Check] = [
        OrderVolumeCheck(),
        NoShortsCheck(),
        ExitsVersusMarketCheck(),
        StopBeforeLiquidationCheck(g.liquidation_buffer),  # judges swap accounts only
        TradingStateCheck(journal.trading_state),
        ClearanceCheck(journal.clearances, account, strategy, mode),
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


def component_factory(settings: Settings, journal: Journal, *,
                      late_calls: LateCalls | None = None) -> ComponentFactory:
    """Turns a parameter-set version's content into the objects the cycle runs with.
    ``late_calls``: see ``build_ensemble``."""
    mode, account = settings.mode, settings.account

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
            ensemble=build_ensemble(settings, content,
                                    frozenset(journal.provider_calls.disabled_providers()),
                                    late_calls=late_calls),
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


@dataclass
class LiveParts:
    broker: Any
    feed: Any
    streams: list[tuple[str, str]]
    lease: Any


def build_live_parts(settings: Settings, journal: Journal, *,
                     lease: AccountLease | None = None) -> LiveParts:
    """Lease the account (or take the caller's ``lease``, already held), then connect the
    configured broker and its feed. The lease comes first: a second daemon on the same
    account must never reach the broker."""
    from executor.lease import acquire_lease, venue_account

    b = settings.broker
    if b.kind == "paper":
        raise ConfigError("broker.kind: 'paper' cannot trade live; set broker.kind to 'mt5' "
                          "or 'ccxt' with its section")
    if not b.symbols:
        raise ConfigError("broker.symbols: list the symbols to trade, e.g. [\"EURUSD\"]")
    if lease is None:
        lease = acquire_lease(settings.account, settings.journal.url,
                              venue=venue_account(settings))
    try:
        if b.kind == "mt5":
            from executor.brokers.mt5 import Mt5Broker
            from executor.brokers.mt5_client import Mt5Client
            from executor.feeds.mt5 import Mt5Feed

            client = Mt5Client(b.mt5, password=settings.mt5_password,
                               bridge_secret=settings.mt5_bridge_secret)
            from executor.brokers.server_time import ServerClock

            client.connect()
            broker: Any = Mt5Broker(client, b.mt5)
            # Margin mode and server clock confirmed before anything trades: a mode we do
            # not handle, or a clock that disagrees with the terminal, refuses to start.
            broker.check_terminal(b.symbols)
            feed: Any = Mt5Feed(client, server_clock=ServerClock.from_settings(b.mt5),
                                max_bars=b.mt5.max_bars)
        else:
            broker, feed = _ccxt_live(settings)
    except BaseException:
        lease.release()
        raise
    return LiveParts(broker, feed, [(s, b.timeframe) for s in b.symbols], lease)


def _ccxt_live(settings: Settings) -> tuple[Any, Any]:
    """The ccxt broker and feed: perpetual swaps on a futures exchange class
    (``binanceusdm``), set up and verified before anything trades; spot otherwise."""
    from executor.brokers.ccxt_broker import CcxtBroker, make_exchange
    from executor.brokers.ccxt_swap import SWAP_EXCHANGES, CcxtSwapBroker, make_swap_exchange
    from executor.feeds.ccxt_feed import CcxtFeed

    b = settings.broker
    swap = b.ccxt.exchange in SWAP_EXCHANGES
    exchange = (make_swap_exchange if swap else make_exchange)(
        b.ccxt, api_key=settings.exchange_api_key, secret=settings.exchange_api_secret,
        api_urls=b.ccxt_api_urls or None)
    # The traded symbols, whether or not [broker.ccxt] lists them: lookups, start-up
    # reconciliation and equity search the exchange per symbol.
    traded = b.ccxt.model_copy(update={"symbols": tuple(dict.fromkeys(
        [*b.ccxt.symbols, *b.symbols]))})
    broker: Any
    if swap:
        broker = CcxtSwapBroker(exchange, traded, b.swap)
        broker.configure()  # one-way, margin mode, leverage: else nothing starts
    else:
        broker = CcxtBroker(exchange, traded)
    return broker, CcxtFeed(exchange, limit=b.ccxt.ohlcv_limit,
                            max_pages=b.ccxt.max_catchup_pages)


def build_daemon(settings: Settings, journal: Journal, *, data: Path | None = None,
                 notifier: Notifier | None = None, metrics: Metrics | None = None,
                 lease: AccountLease | None = None) -> Daemon:
    """Paper and shadow replays from a bar file; ``live`` with the configured broker
    (``lease``: the account's lease when the caller took it first, see ``dta run``)."""
    late = LateCalls()
    factory = component_factory(settings, journal, late_calls=late)
    _close_components(factory(0, settings.parameter_set().values))  # fail fast, before I/O
    if settings.mode == "shadow" and settings.broker.kind == "mt5":
        return _journal_late_calls(_shadow_on_mt5(settings, journal, factory, notifier,
                                                  metrics), late)
    if settings.mode == "live":
        parts = build_live_parts(settings, journal, lease=lease)
        executor = RealtimeExecutor(
            mode="live", account=settings.account, journal=journal, feed=parts.feed,
            streams=parts.streams, broker=parts.broker, components=factory,
            settings_params=settings.parameter_set().values, validator=BarValidator(
                stale_after=None), settings_hash=settings.content_hash,
            batch_bars=1, notifier=notifier, metrics=metrics,
            contract_size=settings.paper.contract_size, watch_feed=True)
        executor.lease = parts.lease  # checked every cycle and every housekeeping second
        return _journal_late_calls(Daemon(executor, journal, None, None, parts), late)
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
    fresh = journal.runs.last_bar_time(loaded.symbol, loaded.timeframe) is None
    for rej in loaded.rejected if fresh else ():  # journaled once, by the first run
        journal.runs.record_rejection(None, loaded.symbol, loaded.timeframe, "unparseable_row",
                                      f"line {rej.line}: {rej.reason}")
    broker_cls = ShadowBroker if settings.mode == "shadow" else PaperBroker
    p = settings.paper
    broker = broker_cls(contract_size=p.contract_size, initial_balance=p.initial_balance,
                        volume_rules=paper_volume_rules(settings), venue=PaperVenue.of(
                            p.venue, fee_rate=p.fee_rate, funding_rate=p.funding_rate))
    executor = RealtimeExecutor(
        mode=settings.mode, account=settings.account, journal=journal, feed=feed,
        streams=[(loaded.symbol, loaded.timeframe)], broker=broker, components=factory,
        settings_params=settings.parameter_set().values, validator=BarValidator(),
        settings_hash=settings.content_hash, batch_bars=settings.journal.batch_bars,
        notifier=notifier, points={loaded.symbol: loaded.point} if loaded.point else None,
        contract_size=settings.paper.contract_size, metrics=metrics, ea_source=ea_source)
    executor.stats.unparseable_rows = tuple((r.line, r.reason) for r in loaded.rejected)
    return _journal_late_calls(Daemon(executor, journal, feed, loaded), late)


def paper_volume_rules(settings: Settings) -> VolumeRules | None:
    """The simulated venue's order sizes, when ``[paper] volume_step`` is set."""
    p = settings.paper
    if p.volume_step is None:
        return None
    return VolumeRules(p.volume_step, p.volume_min or p.volume_step)


def _journal_late_calls(daemon: Daemon, late: LateCalls) -> Daemon:
    """Journal and count the late answers and breaker transitions ``late`` queued, at the
    start of every cycle, in housekeeping between bars and at ``stop``: on the cycle's
    thread, which owns the journal (it is not thread-safe)."""
    ex = daemon.executor
    decision_id = partial(_decision_id, ex.journal)
    ex.before_cycle.append(
        lambda _now: late.write(ex.journal.provider_calls, ex.metrics, decision_id))
    ex.queued_rows.append(lambda: late.write(ex.journal.provider_calls, ex.metrics, decision_id))
    return daemon


def _decision_id(journal: Journal, key: str) -> int | None:
    """The decision a late answer's ``decision_key`` names (see
    ``DecisionRepository.latest_decision_id``); None for a key that names none."""
    parsed = parse_decision_key(key)
    return None if parsed is None else journal.decisions.latest_decision_id(*parsed)


def _shadow_on_mt5(settings: Settings, journal: Journal, factory: ComponentFactory,
                   notifier: Notifier | None, metrics: Metrics | None) -> Daemon:
    """Shadow beside the EA on the real MT5 account: live bars from the terminal, virtual
    fills, the EA's deals read by its magic number; nothing is ever sent."""
    from executor.brokers.mt5_client import Mt5Client
    from executor.feeds.mt5 import Mt5Feed
    from executor.shadow import Mt5EaSource

    b = settings.broker
    if not b.symbols:
        raise ConfigError("broker.symbols: list the symbols to shadow, e.g. [\"EURUSD\"]")
    client = Mt5Client(b.mt5, password=settings.mt5_password,
                       bridge_secret=settings.mt5_bridge_secret)
    client.connect()
    from executor.brokers.mt5 import Mt5Broker
    from executor.brokers.server_time import ServerClock

    # Bars stamped an hour off would pair badly with the EA's deals: the same refusal as
    # live when the terminal's clock disagrees with the configured server time.
    from executor.lazy_log import get_logger

    get_logger("dta.wiring").info(
        "mt5_shadow_clock", check=Mt5Broker(client, b.mt5).check_server_time(b.symbols))
    feed = Mt5Feed(client, server_clock=ServerClock.from_settings(b.mt5),
                   max_bars=b.mt5.max_bars)
    source = Mt5EaSource(client, ea_magic=settings.shadow.ea_magic, own_magic=b.mt5.magic,
                         server_utc_offset_hours=b.mt5.server_utc_offset_hours,
                         lookback_days=b.mt5.history_days)
    executor = RealtimeExecutor(
        mode="shadow", account=settings.account, journal=journal, feed=feed,
        streams=[(s, b.timeframe) for s in b.symbols],
        broker=ShadowBroker(contract_size=settings.paper.contract_size,
                            initial_balance=settings.paper.initial_balance),
        components=factory, settings_params=settings.parameter_set().values,
        validator=BarValidator(), settings_hash=settings.content_hash, batch_bars=1,
        notifier=notifier, metrics=metrics, contract_size=settings.paper.contract_size,
        ea_source=source, watch_feed=True)
    return Daemon(executor, journal, None, None, LiveParts(client, feed, list(
        executor.streams), _NoLease()))


class _NoLease:
    """Shadow mode sends nothing, so it needs no trading lease on the account."""

    def release(self) -> None:
        return None


def _close_components(components: Components) -> None:
    close = getattr(components.ensemble, "close", None)
    if callable(close):
        close()
