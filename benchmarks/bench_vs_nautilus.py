"""The SMA 10/30 flip through NautilusTrader's ``BacktestEngine``, on the bars ours replays.

``bench_vs_backtesting`` runs this beside our pipeline and backtesting.py in one process
(``run_nautilus``), so the ratio ours/NautilusTrader comes from the same run as the one
against backtesting.py; run alone (``main``) it gives NautilusTrader's figure only.

Set-up, as NautilusTrader's own FX backtest examples do it: one simulated venue ``SIM``
with a netting (``OmsType.NETTING``) margin account in USD, 1,000,000 starting balance,
``TestInstrumentProvider.default_fx_ccy("EUR/USD")``, the sample's bars as
``EUR/USD.SIM-15-MINUTE-MID-EXTERNAL`` made by ``BarDataWrangler`` (timestamped at each bar's
close, Nautilus' convention), bar execution on (the default: each bar moves the simulated
market through open, high, low, close), logging at warning level as ``dta run`` logs.

The strategy (``SmaFlipNautilus``) keeps the averages with ``sma_flip.Averages`` and asks
``sma_flip.flip_side`` for its one market order of 10,000 units on each bar, the order
against a held position closing it by netting: the rule and the arithmetic our
``SmaFlip`` uses, so every crossing is decided on the same float comparison.

Two things differ from ours by how the engine works, neither changing a decision:

- A market order sent from ``on_bar`` fills within the same bar's processing, at the
  bar's close (the simulated market's price once the bar has passed), not at the next
  bar's open as ours and backtesting.py fill. On the next bar the position already
  reflects the order in all three engines, so each decides the same thing on the same bar.
- The CSV's volume is MT5's tick count, not a traded size. Bar execution books a quarter
  of a bar's volume at each of its four prices, and a market order larger than that fills
  the rest one tick worse: two fills per order where ours makes one. The bars get a volume
  of 1,000,000 units instead, so each order fills whole in one fill, as in ours.

Timed: ``engine.run()`` only (the kernel's start, the bar loop, the strategy, matching,
portfolio and the post-run report), as only ``Backtest.run()`` is timed for backtesting.py.
Not timed: loading the CSV, building the Nautilus bars, the engine, venue, instrument and
strategy, reading the counts back and ``dispose()``. Each repeat is a fresh engine (an
engine runs once); the median is reported.

    .venv/bin/python -m benchmarks.bench_vs_nautilus [--quick] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import nautilus_trader
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig, StrategyConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import Bar as NautilusBar
from nautilus_trader.model.data import BarType
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.events import PositionClosed
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.model.instruments import Instrument
from nautilus_trader.model.objects import Money, Quantity
from nautilus_trader.persistence.wranglers import BarDataWrangler
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_latency import as_dta_run  # noqa: E402
from benchmarks.sma_flip import (  # noqa: E402
    FAST,
    SLOW,
    UNITS,
    Averages,
    flip_side,
    ohlcv_frame,
    sample_file,
)
from domain import Bar, timeframe_seconds  # noqa: E402
from executor.feeds.files import load_bars  # noqa: E402

BALANCE = 1_000_000
BAR_VOLUME = 1_000_000  # units per bar: deep enough that an order fills whole (docstring)
VENUE = "SIM"


class SmaFlipConfig(StrategyConfig, frozen=True):
    bar_type: BarType
    units: int = UNITS
    fast: int = FAST
    slow: int = SLOW


class SmaFlipNautilus(Strategy):
    """The flip as a NautilusTrader strategy: one market order per bar at most, the side
    from ``flip_side``; counts the position closes it sees (trades)."""

    def __init__(self, config: SmaFlipConfig) -> None:
        super().__init__(config)
        self.averages = Averages(config.fast, config.slow)
        self.bar_type = config.bar_type
        self.instrument_id = config.bar_type.instrument_id
        self.quantity = Quantity.from_int(config.units)
        self.index = 0
        self.positions_closed = 0

    def on_start(self) -> None:
        self.subscribe_bars(self.bar_type)

    def on_stop(self) -> None:
        """Leave the last position open, as ours and backtesting.py end the run."""

    def on_bar(self, bar: NautilusBar) -> None:
        self.averages.push(bar.close.as_double(), self.index)
        self.index += 1
        want = self.averages.side()
        if want is None:
            return
        portfolio = self.portfolio
        held = (1 if portfolio.is_net_long(self.instrument_id)
                else -1 if portfolio.is_net_short(self.instrument_id) else 0)
        side = flip_side(want.sign, held)
        if side:
            self.submit_order(self.order_factory.market(
                self.instrument_id, OrderSide.BUY if side > 0 else OrderSide.SELL,
                self.quantity))

    def on_position_closed(self, event: PositionClosed) -> None:
        self.positions_closed += 1


def nautilus_bars(bars: Sequence[Bar], instrument: Instrument) -> tuple[BarType, list[Any]]:
    """Our bars as Nautilus ``Bar`` objects of one bar type, stamped at each bar's close."""
    step = timedelta(seconds=timeframe_seconds(bars[0].timeframe))
    bar_type = BarType.from_str(
        f"{instrument.id}-{int(step.total_seconds()) // 60}-MINUTE-MID-EXTERNAL")
    frame = ohlcv_frame(bars)
    frame.index = frame.index + step
    frame["volume"] = BAR_VOLUME
    return bar_type, BarDataWrangler(bar_type, instrument).process(frame)


def _engine(instrument: Instrument, data: list[Any], bar_type: BarType,
            ) -> tuple[BacktestEngine, SmaFlipNautilus]:
    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(log_level="WARNING")))
    engine.add_venue(Venue(VENUE), OmsType.NETTING, AccountType.MARGIN,
                     [Money(BALANCE, USD)], base_currency=USD)
    engine.add_instrument(instrument)
    engine.add_data(data)
    strategy = SmaFlipNautilus(SmaFlipConfig(bar_type=bar_type))
    engine.add_strategy(strategy)
    return engine, strategy


def run_nautilus(bars: Sequence[Bar], repeats: int = 3) -> dict[str, Any]:
    """``repeats`` fresh engines over the same bars; ``engine.run()`` timed, median kept."""
    instrument = TestInstrumentProvider.default_fx_ccy("EUR/USD", Venue(VENUE))
    bar_type, data = nautilus_bars(bars, instrument)
    times: list[float] = []
    counts: dict[str, Any] = {}
    for _ in range(repeats):
        engine, strategy = _engine(instrument, data, bar_type)
        with as_dta_run():  # the process state ours and backtesting.py run in
            started = time.perf_counter()
            engine.run()
            times.append(time.perf_counter() - started)
        orders = engine.cache.orders()
        still_open = len(engine.cache.positions_open())
        pnl = engine.portfolio.realized_pnl(instrument.id)
        counts = {"orders": len(orders), "bars_seen": strategy.index,
                  "fills": sum(len(o.trade_ids) for o in orders),
                  "trades": strategy.positions_closed + still_open,
                  "trades_closed": strategy.positions_closed,
                  "pnl": None if pnl is None else pnl.as_double()}
        engine.dispose()
    best = sorted(times)[len(times) // 2]
    return {"bars": len(data), "elapsed_s": best, "elapsed_all_s": times,
            "bars_per_s": len(data) / best, "version": nautilus_trader.__version__, **counts}


LAST_RESULTS: dict[str, Any] | None = None


def main(argv: list[str] | None = None) -> None:
    global LAST_RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first 8,000 bars only")
    parser.add_argument("--repeats", type=int, default=3, help="engine runs (median taken)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv or [])
    with tempfile.TemporaryDirectory(prefix="dta-bench-vsnt-") as tmp:
        bars = list(load_bars(sample_file(Path(tmp), 8000 if args.quick else None)).bars)
    LAST_RESULTS = r = run_nautilus(bars, args.repeats)
    print(f"NautilusTrader {r['version']} BacktestEngine, SMA {FAST}/{SLOW} flip on "
          f"{r['bars']:,} bars: {r['bars_per_s']:,.0f} bars/s ({r['elapsed_s']:.2f} s), "
          f"{r['orders']} orders, {r['fills']} fills, {r['trades']} trades")
    if args.json:
        print(json.dumps(r, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
