"""Issue 19's acceptance: a replay in paper mode with the swap model and a live run on the
swap fake over the same bars take the same trades.

The bars are real (config/samples/EURUSD_M15.csv, the bundled MT5 export), scaled to
BTCUSDT's price level (x 25,000: every relative move kept) and laid end to end in time
(no weekend gap) so the last one closes a little before now. The live run is the real
daemon, wired as `dta run --mode live` wires it, on the real ``ccxt.binanceusdm``
against the loopback USD-M fake (tests/fakes/binance_usdm) serving those bars; one cycle
per bar, at its close. Between two cycles the fake's price walks through the next bar as
the paper model assumes a bar moves: from its open (where a market order sent at the
previous close fills: paper fills at the next bar's open) towards the open position's
stop first (paper assumes the stop when the stop and the target are both inside one
bar), through each trigger on the way, to the low and the high, then to the close. The
exchange fires the conditional orders the price crosses; the daemon sees their trades at
the next bar.

The paper replay is `dta run --mode paper` over a bar file of the same candles, with
``[paper] venue = "swap"``. Same strategy (a proposal with a 0.15 % stop and a 0.3 %
target on every bar while flat, the momentum provider's way), same ensemble and
guardrails. The trades compared: each entry (its deterministic client id: account,
symbol, bar time; side; lots) and how it ended (stop or target, and in which bar; or
still open). Prices may differ by the venue's tick (ccxt rounds a trigger to BTCUSDT's
0.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes.binance_usdm import FakeBinanceUsdm
from support.daemon_helpers import cleared_journal, drive, live_settings, settings_for
from support.doubles import AlwaysLong

from domain import Direction, MarketSnapshot, OrderSide, Proposal
from executor.engine.startup import start_live
from executor.journal.store import Journal
from executor.wiring import build_daemon
from strategies.logic import StrategyContext
from strategies.registry import STRATEGIES

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "samples" / "EURUSD_M15.csv"
SYMBOL, SID, BAR_MS = "BTC/USDT:USDT", "BTCUSDT", 900_000
BARS, SCALE = 240, 25_000.0
LOTS = 0.01


class Trader(AlwaysLong):
    """A proposal on every bar while flat, the momentum provider's way, with a stop and a
    target close enough for EURUSD's moves to reach them within a few bars."""

    name = "test_parity_trader"

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        c = snapshot.bar.close
        return tuple(replace(p, stop=c * (1 - 0.0015 * s), target=c * (1 + 0.003 * s))
                     for p in super().on_bar(snapshot, ctx)
                     for s in (1 if p.direction is Direction.LONG else -1,))


@pytest.fixture
def trader() -> Iterator[object]:
    STRATEGIES[Trader.name] = Trader
    yield Trader
    STRATEGIES.pop(Trader.name, None)


def the_bars() -> list[list[float]]:
    """The first ``BARS`` real candles, scaled, one every 15 minutes up to a little
    before now."""
    rows = SAMPLE.read_text().splitlines()[1:BARS + 1]
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    first = now_ms - now_ms % BAR_MS - (BARS + 1) * BAR_MS
    out = []
    for i, row in enumerate(rows):
        o, h, lo, c = (round(float(x) * SCALE, 1) for x in row.split(",")[1:5])
        out.append([first + i * BAR_MS, o, h, lo, c, 1.0])
    return out


class BarFake(FakeBinanceUsdm):
    """The USD-M fake serving the given candles (and no others) from its klines endpoint."""

    def __init__(self, bars: list[list[float]]) -> None:
        super().__init__(wallet=1_000_000.0)
        self.bars = {int(b[0]): b for b in bars}
        self.symbols[SID]["price"] = float(bars[0][1])

    def klines(self, q: dict[str, str]) -> tuple[int, Any]:
        status, rows = super().klines(q)
        if status != 200:
            return status, rows
        out = []
        for row in rows:
            b = self.bars.get(int(row[0]))
            if b is not None:
                out.append([int(b[0]), *(f"{float(x):.2f}" for x in b[1:5]), f"{b[5]:.3f}",
                            int(b[0]) + BAR_MS - 1, *row[7:]])
        return 200, out

    def at(self, t_ms: int) -> None:
        self.time_offset_ms = t_ms - int(self.clock() * 1000)

    def walk(self, bar: list[float], up_first: bool) -> None:
        """Move the price through ``bar`` as the paper model assumes it moved: from the
        open to the extreme on the stop's side first, through every trigger on the way,
        then to the other extreme, then to the close."""
        o, h, lo, c = (float(x) for x in bar[1:5])
        trig = sorted(float(a["triggerPrice"]) for a in self.algo_orders
                      if a["algoStatus"] == "NEW")
        if up_first:
            path = ([t for t in trig if o <= t <= h] + [h]
                    + [t for t in reversed(trig) if lo <= t <= h] + [lo])
        else:
            path = ([t for t in reversed(trig) if lo <= t <= o] + [lo]
                    + [t for t in trig if lo <= t <= h] + [h])
        for p in [*path, c]:
            self.set_price(SID, p, mark=p)


def trades(url: str, account: str) -> list[tuple[str, str, float, str]]:
    """(entry client id, side, lots, how it ended and in which bar) for every entry that
    filled. The client id is the account's, symbol's and bar's: the same id is the same
    entry bar."""
    journal = Journal.open(url)
    try:
        out = []
        for o in journal.orders.all(account):
            if o.protective_kind is not None or o.intent.reduce_only or o.filled_volume <= 0:
                continue
            exits = [f"{f.kind}@{_bar_of(f.time)}" for f in journal.orders.fills(o.client_order_id)
                     if f.kind in ("stop_loss", "take_profit")]
            out.append((o.client_order_id, o.intent.side.value,
                        round(o.filled_volume, 8), ",".join(exits) or "open"))
        return out
    finally:
        journal.close()


def follow_the_venue_clock(broker: Any, fake: BarFake) -> None:
    """The run lives in the fake's time (bars laid out up to now, a cycle per bar close):
    the broker's clock (trade-history windows) and ccxt's request timestamps (Binance's
    recvWindow) follow it, as on a real venue they follow the same wall clock."""
    broker._clock = lambda: datetime.fromtimestamp(fake.now_ms() / 1000, UTC)
    pass


def _bar_of(t: datetime) -> str:
    """The 15-minute bar a fill happened in (the fake fills 2 s after the bar opened; paper
    books it at the bar's time)."""
    return t.replace(minute=t.minute - t.minute % 15, second=0, microsecond=0).strftime(
        "%d %H:%M")


def live_run(url: str, bars: list[list[float]]) -> tuple[list[tuple[str, str, float, str]],
                                                           Any]:
    with BarFake(bars) as fake:
        settings = live_settings(url, fake, Trader.name, lots=LOTS, broker={
            "kind": "ccxt", "symbols": [SYMBOL], "timeframe": "15m",
            "ccxt_api_urls": fake.api_urls(),
            "ccxt": {"exchange": "binanceusdm", "timeout_ms": 2000, "rate_limit_ms": 1,
                     "catchup_poll_seconds": 0.0, "read_backoff_seconds": 0.0},
            "swap": {"margin_mode": "isolated", "leverage": 3}})
        journal = cleared_journal(url, Trader.name)
        daemon = build_daemon(settings, journal)
        follow_the_venue_clock(daemon.live.broker, fake)
        try:
            fake.at(int(bars[0][0]))
            daemon.executor.start()
            start_live(settings, daemon, journal)
            for i, bar in enumerate(bars):
                close = int(bar[0]) + BAR_MS
                nxt = bars[i + 1] if i + 1 < len(bars) else None
                fake.at(close + 2_000)
                if nxt is not None:
                    fake.set_price(SID, float(nxt[1]), mark=float(nxt[1]))
                daemon.executor.run_cycle(datetime.fromtimestamp((close + 2_000) / 1000, UTC))
                if nxt is not None:
                    fake.walk(nxt, up_first=fake.positions[SID]["amt"] < 0)
        finally:
            daemon.executor.stop()
            daemon.live.lease.release()
            journal.close()
    return trades(url, "bn-live"), settings


def paper_run(url: str, bars: list[list[float]], data: Path,
              settings: Any) -> list[tuple[str, str, float, str]]:
    """The same strategy, ensemble and guardrails as the live run, replayed in paper."""
    data.write_text(json.dumps(bars))
    paper = settings_for(
        url, mode="paper", account="bn-live", strategy=settings.strategy.model_dump(),
        ensemble=settings.ensemble.model_dump(), guardrails=settings.guardrails.model_dump(),
        data={"path": str(data), "symbol": SYMBOL, "timeframe": "15m"},
        paper={"venue": "swap", "contract_size": 1.0, "order_volume_lots": LOTS,
               "initial_balance": 1_000_000.0})
    journal = Journal.open(url)
    try:
        drive(build_daemon(paper, journal, data=data))
    finally:
        journal.close()
    return trades(url, "bn-live")


def test_paper_swap_and_live_on_the_swap_fake_take_the_same_trades(
        tmp_path: Path, trader: object) -> None:
    bars = the_bars()
    live, settings = live_run(f"sqlite:///{tmp_path / 'live.sqlite'}", bars)
    paper = paper_run(f"sqlite:///{tmp_path / 'paper.sqlite'}", bars, tmp_path / "bars.json",
                      settings)
    assert len(live) >= 5, f"too few trades to compare: {live}"
    assert {side for _, side, _, _ in live} == {OrderSide.BUY.value, OrderSide.SELL.value}
    assert paper == live
