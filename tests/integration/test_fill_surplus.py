"""A fill the daemon cannot match to exactly one of its own sends is never adopted
(issue 15, defect 19).

Binance checks ``newClientOrderId`` for uniqueness among *open* orders only ("A unique id
among open orders", POST /api/v3/order): once our market order has filled, another
sender (a second daemon on a restored copy of the journal, or a person) can send a new
order under the same client id, and ``myTrades`` then reports two fills for it. Booking
both as ours would double the position in our book with no incident."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fakes.binance_fake import FakeBinance
from support.daemon_helpers import FUNDED, a_rising_minute, live_daemon, registered
from support.doubles import AlwaysLong

from guardrails.state import TradingState, current_state


@pytest.fixture
def always_long() -> Iterator[type[AlwaysLong]]:
    yield from registered(AlwaysLong)


def test_a_second_fill_under_our_client_id_is_an_incident_not_ours(
        tmp_path: Path, always_long: type[AlwaysLong]) -> None:
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    with FakeBinance(balances=FUNDED) as fake, \
            live_daemon(url, fake, AlwaysLong.name) as daemon:
        ex, journal = daemon.executor, daemon.journal
        now = a_rising_minute(fake)  # momentum says long: spot can only buy
        ex.run_cycle(now)
        [order] = [o for o in journal.orders.all("bn-live")
                   if o.protective_kind is None]  # its stop and target: an OCO
        coid = order.client_order_id
        sent = fake.orders_by_client_id(coid)
        assert len(sent) == 1 and sent[0]["status"] == "FILLED"
        # Another sender reuses the id once ours is no longer open.
        status, _ = fake.new_order({"symbol": "BTCUSDT", "side": sent[0]["side"],
                                    "type": "MARKET", "quantity": sent[0]["origQty"],
                                    "newClientOrderId": coid}, None)
        assert status == 200
        fake.time_offset_ms += 61_000  # the next minute's bar has closed
        ex.run_cycle(now + timedelta(seconds=61))
        fills = journal.orders.fills(coid)
        incidents = [(i.kind, i.severity) for i in journal.incidents.all()]
        state = current_state(journal.trading_state)
        ex.stop("stopped")
    # Our order's trade and its commission (paid in BTC), nothing of the other sender's.
    assert sum(f.volume for f in fills if f.kind == "entry") <= order.intent.volume + 1e-12
    assert len([f for f in fills if f.kind == "fee"]) <= 1, fills
    assert ("fill_surplus", "critical") in incidents
    assert state is TradingState.HALTED
