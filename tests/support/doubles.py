"""Test doubles more than one test file uses: systemd's side of sd_notify, a strategy that
always proposes. (The notification receiver is ``fakes.apprise_receiver``.)"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from pathlib import Path

from domain import Direction, MarketSnapshot, Proposal
from strategies.logic import StrategyContext
from support.builders import a_proposal


class NotifySocket:
    """Plays systemd's side of sd_notify: a datagram socket that collects messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in m for m in self.messages):
                return True
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return any(needle in m for m in self.messages)

    def close(self) -> None:
        self.sock.close()


class AlwaysLong:
    """Test strategy: a proposal on every bar while flat, with the bar's momentum."""

    name = "test_always_long"

    def __init__(self, **_params: object) -> None:
        pass

    def on_bar(self, snapshot: MarketSnapshot, ctx: StrategyContext) -> Sequence[Proposal]:
        if not ctx.position.is_flat:
            return ()
        c = snapshot.bar.close
        closes = [b.close for b in snapshot.bars[-20:]]
        if c < sum(closes) / len(closes):  # with the momentum provider's view
            return (a_proposal(strategy=self.name, symbol=snapshot.symbol,
                               timeframe=snapshot.timeframe, bar_time=snapshot.bar.time,
                               direction=Direction.SHORT, entry=c, stop=c * 1.01, target=c * 0.98,
                               reason="test", tags=("bos_bearish",)),)
        return (a_proposal(strategy=self.name, symbol=snapshot.symbol, timeframe=snapshot.timeframe,
                           bar_time=snapshot.bar.time, direction=Direction.LONG, entry=c,
                           stop=c * 0.99, target=c * 1.02, reason="test", tags=("bos_bullish",)),)
