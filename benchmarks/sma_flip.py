"""SMA 10/30 flip: a benchmark-only strategy, the one CONVENTIONS' reference figures use.

Rule (``flip_side``), shared by our ``SmaFlip``, the ``backtesting.py`` strategy in
``bench_vs_backtesting`` and the NautilusTrader one in ``bench_vs_nautilus``: the wanted
side is long while SMA(fast) > SMA(slow) and short while it is below. From flat, propose
the wanted side; holding the other side, propose the wanted side, which with a fixed order
volume closes the position (net lots), and the next bar re-enters from flat. So each
crossing costs two orders, filled at the next two bars' opens, exactly as backtesting.py
does with ``position.close()`` on one bar and ``buy()``/``sell()`` on the next.

Not a strategy to trade: it is here so our pipeline and backtesting.py do the same work
on the same bars. It is registered into ``strategies.registry.STRATEGIES`` at run time by
``register()`` (the settings schema does not list it, so the benchmark puts it into the
parameter set the executor activates, not into the settings file).

``SmaFlipVoter`` is the matching deterministic provider: it recomputes the two averages
from the snapshot and votes that side, so the ensemble confirms every crossing and the
guardrails, not a disagreeing provider, decide what becomes an order.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from domain import Bar, Direction, MarketSnapshot, Proposal, Signal
from ensemble.ensemble import Ensemble
from executor.components import ComponentFactory, Components
from strategies.logic import StrategyContext

if TYPE_CHECKING:
    import pandas as pd

FAST, SLOW = 10, 30
# The other engines' fixed order size: 0.1 lot of EURUSD, the example settings' volume.
UNITS = 10_000
VOTER_KIND = "sma_flip_vote"


class Averages:
    """Running sums over the last ``slow`` closes of one stream, re-summed exactly every
    ``slow`` bars so float drift cannot flip a near-equal crossing over a long replay."""

    __slots__ = ("closes", "fast", "index", "since_exact", "slow", "sum_fast", "sum_slow")

    def __init__(self, fast: int, slow: int) -> None:
        self.fast, self.slow = fast, slow
        self.closes: deque[float] = deque(maxlen=slow)
        self.sum_fast = self.sum_slow = 0.0
        self.index = -2
        self.since_exact = 0

    def reset(self, closes: Sequence[float], index: int) -> None:
        self.closes.clear()
        self.closes.extend(closes[-self.slow:])
        self._exact()
        self.index = index

    def push(self, close: float, index: int) -> None:
        d = self.closes
        if len(d) == self.slow:
            self.sum_slow -= d[0]
        d.append(close)
        self.sum_slow += close
        self.sum_fast += close
        if len(d) > self.fast:
            self.sum_fast -= d[-self.fast - 1]
        self.index = index
        self.since_exact += 1
        if self.since_exact >= self.slow:
            self._exact()

    def _exact(self) -> None:
        closes = list(self.closes)
        self.sum_slow = math.fsum(closes)
        self.sum_fast = math.fsum(closes[-self.fast:])
        self.since_exact = 0

    def side(self) -> Direction | None:
        if len(self.closes) < self.slow:
            return None
        f = self.sum_fast / self.fast
        s = self.sum_slow / self.slow
        return Direction.LONG if f > s else Direction.SHORT if f < s else None


def flip_side(want: int, held: int) -> int:
    """The flip's one order on a bar: +1 buy, -1 sell, 0 none. ``want`` is the sign of
    SMA(fast) - SMA(slow) (0 while undecided), ``held`` the sign of the net position. An
    order against a held position is the same fixed volume, so it closes it (net lots);
    the next bar finds the position flat and enters."""
    return 0 if want == 0 or want == held else want


class SmaFlip:
    """``TradeLogic``: the SMA crossover flip described in the module docstring.

    The averages are incremental per stream; a snapshot that does not follow the last one
    (a restart, a parameter change) rebuilds them from ``snapshot.bars``, so the proposals
    depend on the snapshots alone, as the TradeLogic contract requires.
    """

    name = "sma_flip"

    def __init__(self, *, fast: int = FAST, slow: int = SLOW, stop_fraction: float = 0.5):
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={fast} slow={slow}")
        if not 0 < stop_fraction < 1:
            raise ValueError("stop_fraction must be in (0, 1)")
        self.fast, self.slow = fast, slow
        # Stop and target far from price: the flip has no protective exits, but a Proposal
        # carries both and the guardrails check the stop distance.
        self.stop_fraction = stop_fraction
        self._streams: dict[tuple[str, str], Averages] = {}

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        key = (snapshot.symbol, snapshot.timeframe)
        avg = self._streams.get(key)
        if avg is None:
            avg = self._streams[key] = Averages(self.fast, self.slow)
        if snapshot.index == avg.index + 1:
            avg.push(snapshot.bar.close, snapshot.index)
        else:
            avg.reset([b.close for b in snapshot.bars], snapshot.index)
        want = avg.side()
        if want is None:
            return ()
        pos = ctx.position
        held = 0 if pos.is_flat else 1 if pos.volume > 0 else -1
        sign = flip_side(want.sign, held)
        if not sign:
            return ()
        entry = snapshot.bar.close
        closing = held != 0
        return (Proposal(
            strategy=self.name, symbol=snapshot.symbol, timeframe=snapshot.timeframe,
            bar_time=snapshot.bar.time, direction=want, entry=entry,
            stop=entry * (1 - sign * self.stop_fraction),
            target=entry * (1 + sign * self.stop_fraction),
            reason=f"SMA{self.fast} {'above' if sign > 0 else 'below'} SMA{self.slow}"
                   + ("; close" if closing else "; enter"),
            tags=("sma_flip_close" if closing else "sma_flip_enter",)),)


class NoTrade:
    """``TradeLogic`` that never proposes: the same replay with it measures the pipeline's
    fixed per-bar cost (validator, fills, snapshot, journal rows), decisions excluded."""

    name = "no_trade"

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        return ()


class SmaFlipVoter:
    """Deterministic provider: votes the side SMA(fast) vs SMA(slow) of the snapshot's bars
    says, with full confidence; abstains with too few bars or equal averages."""

    kind = VOTER_KIND

    def __init__(self, name: str = "sma_vote", *, fast: int = FAST, slow: int = SLOW) -> None:
        self.name, self.fast, self.slow = name, fast, slow

    def evaluate(self, proposal: Proposal, snapshot: MarketSnapshot) -> Signal:
        closes = [b.close for b in snapshot.bars[-self.slow:]]
        if len(closes) < self.slow:
            return Signal(self.name, Direction.FLAT, 0.0,
                          abstain_reason=f"needs {self.slow} bars, has {len(closes)}")
        f = math.fsum(closes[-self.fast:]) / self.fast
        s = math.fsum(closes) / self.slow
        if f == s:
            return Signal(self.name, Direction.FLAT, 0.0, abstain_reason="averages equal")
        return Signal(self.name, Direction.LONG if f > s else Direction.SHORT, 1.0,
                      rationale=f"SMA{self.fast} {f:.5f} vs SMA{self.slow} {s:.5f}")


def register() -> None:
    """Make ``sma_flip`` buildable by name (``strategies.registry.build_strategy``)."""
    from strategies.registry import STRATEGIES

    STRATEGIES.setdefault(SmaFlip.name, SmaFlip)
    STRATEGIES.setdefault(NoTrade.name, NoTrade)


def sma_parameter_set(base: dict[str, Any], *, fast: int = FAST, slow: int = SLOW,
                      strategy: str = SmaFlip.name) -> dict[str, Any]:
    """The settings' parameter set with the strategy and the ensemble swapped for the flip
    (or ``no_trade``) and its voter; guardrails and paper settings are kept as they are."""
    content = copy.deepcopy(base)
    params = {"fast": fast, "slow": slow} if strategy == SmaFlip.name else {}
    content["strategy"] = {"name": strategy, "params": params, "snapshot": {}}
    content["ensemble"] = {"sma_vote": {"kind": VOTER_KIND, "weight": 1.0,
                                        "params": {"fast": fast, "slow": slow}}}
    return content


def with_sma_voter(base: ComponentFactory) -> ComponentFactory:
    """Wrap ``executor.wiring.component_factory``: ensemble entries of kind
    ``sma_flip_vote`` (which the wiring does not know) become ``SmaFlipVoter`` members of
    the same ``Ensemble`` class; everything else is built by the wiring itself."""

    def build(version: int, content: dict[str, Any]) -> Components:
        ensemble_cfg = content.get("ensemble", {})
        ours = {n: c for n, c in ensemble_cfg.items() if c.get("kind") == VOTER_KIND}
        rest = {n: c for n, c in ensemble_cfg.items() if n not in ours}
        components = base(version, {**content, "ensemble": rest})
        if not ours:
            return components
        providers = [*components.ensemble.providers,
                     *(SmaFlipVoter(n, **c.get("params", {})) for n, c in ours.items())]
        weights = {**components.ensemble.weights,
                   **{n: float(c.get("weight", 1.0)) for n, c in ours.items()}}
        return replace(components, ensemble=Ensemble(providers, weights,
                                                     components.params.content_hash))

    return build


def sample_file(tmp: Path, rows: int | None) -> Path:
    """The EURUSD M15 sample every comparison replays, or its first ``rows`` bars under the
    same name in ``tmp`` (our feed takes symbol and timeframe from the file name)."""
    from benchmarks.bench_latency import SAMPLE

    if rows is None:
        return SAMPLE
    out = tmp / SAMPLE.name
    with SAMPLE.open() as src, out.open("w") as dst:
        for i, line in enumerate(src):
            if i > rows:
                break
            dst.write(line)
    return out


def ohlcv_frame(bars: Sequence[Bar]) -> pd.DataFrame:
    """The bars our feed loaded, as the frame the other engines take (lower-case OHLCV
    columns, UTC bar open times): each engine gets exactly the prices ours replays."""
    import pandas as pd

    return pd.DataFrame(
        {"open": [b.open for b in bars], "high": [b.high for b in bars],
         "low": [b.low for b in bars], "close": [b.close for b in bars],
         "volume": [b.volume for b in bars]},
        index=pd.DatetimeIndex([b.time for b in bars]))
