"""The MT5 bridge and client: our real rpyc bridge serving the fake MetaTrader5 module on
127.0.0.1, the real rpyc client on the other side. Security (secret, whitelist, no classic
mode), plain-data shapes, and reconnection after a dropped bridge or a lost terminal link."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import rpyc
from fakes import mt5_fake
from fakes.mt5_fake import SECRET, FakeMetaTrader5, client_settings, start_bridge

from domain.errors import VenueError
from executor.brokers import mt5_client as C
from executor.brokers.mt5_bridge import (
    PROTOCOL_MAGIC,
    WHITELIST,
    Bridge,
    serve,
    to_plain,
)
from executor.brokers.mt5_client import BridgeTransport, ModuleTransport, Mt5Client


@pytest.fixture
def fake() -> FakeMetaTrader5:
    return FakeMetaTrader5()


@pytest.fixture
def bridge(fake: FakeMetaTrader5) -> Iterator[Any]:
    server = start_bridge(fake)
    yield server
    server.close()


@pytest.fixture
def client(fake: FakeMetaTrader5, bridge: Any) -> Iterator[Mt5Client]:
    c = Mt5Client(client_settings(fake, bridge.port), password=fake.account_password,
                  bridge_secret=SECRET)
    c.connect()
    yield c
    c.close()


# --------------------------------------------------------------------------- security


def test_a_client_without_the_secret_is_refused(bridge: Any) -> None:
    # A plain rpyc client (no handshake) never gets a service.
    with pytest.raises((EOFError, ConnectionError, OSError)):
        conn = rpyc.connect("127.0.0.1", bridge.port, config={"sync_request_timeout": 2})
        conn.root.call("account_info", "{}")
    # A raw client that answers the challenge wrongly is told NO and cut off.
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=2) as sock:
        hello = sock.recv(len(PROTOCOL_MAGIC) + 32)
        assert hello.startswith(PROTOCOL_MAGIC)
        sock.sendall(b"\0" * 64)
        assert sock.recv(2) == b"NO"
    # Our own client with the wrong secret gets a clear, non-retryable error.
    with pytest.raises(VenueError, match="refused our shared secret") as info:
        BridgeTransport("127.0.0.1", bridge.port, b"wrong-secret-wrong-secret",
                        connect_timeout=2, call_timeout=2)
    assert info.value.retryable is False


def test_a_call_outside_the_whitelist_is_refused(fake: FakeMetaTrader5, bridge: Any) -> None:
    t = BridgeTransport("127.0.0.1", bridge.port, SECRET, connect_timeout=2, call_timeout=2)
    try:
        for name in ("order_calc_margin", "symbols_get", "__import__", "eval", "_lock"):
            with pytest.raises(VenueError, match="not on the bridge whitelist"):
                t.call(name, [], {})
        # rpyc's restricted service: no classic mode, no attribute walking off the service.
        root = t._conn.root
        with pytest.raises(AttributeError):
            root.getmodule("os")
        with pytest.raises(AttributeError):
            root.exposed_call.__globals__  # noqa: B018
        with pytest.raises(AttributeError):
            t._conn.modules.os  # noqa: B018
        assert "initialize" in WHITELIST and "order_calc_margin" not in WHITELIST
        # The whitelisted ones still work on the same connection.
        ok, err = t.call("initialize", [], {})
        assert ok is True and err == (C.RES_S_OK, "Success")
    finally:
        t.close()


def test_serve_binds_loopback_only_and_needs_a_real_secret(fake: FakeMetaTrader5) -> None:
    with pytest.raises(ValueError, match="loopback"):
        serve(fake, "0.0.0.0", 0, SECRET, block=False)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        serve(fake, "127.0.0.1", 0, b"short", block=False)


def test_the_daemon_side_refuses_to_run_without_a_secret() -> None:
    with pytest.raises(VenueError, match="shared secret"):
        Mt5Client(client_settings(FakeMetaTrader5(), 1), bridge_secret=None)


# --------------------------------------------------------------------------- shapes


def test_results_cross_as_plain_data(fake: FakeMetaTrader5, client: Mt5Client) -> None:
    info = client.terminal_info()
    assert isinstance(info, dict) and info["connected"] is True
    assert set(info) == set(mt5_fake.TerminalInfo._fields)
    fake.generate_rates("EURUSD", mt5_fake.TIMEFRAME_M15, 10)
    assert client.symbol_select("EURUSD")
    rates = client.copy_rates_from_pos("EURUSD", C.TIMEFRAMES["M15"], 0, 5)
    assert rates is not None and len(rates) == 5
    assert list(rates[0]) == ["time", "open", "high", "low", "close", "tick_volume", "spread",
                              "real_volume"]
    assert all(type(r["time"]) is int and type(r["close"]) is float for r in rates)
    assert [r["time"] for r in rates] == sorted(r["time"] for r in rates)  # oldest first
    sym = client.symbol_info("EURUSD")
    assert sym is not None and sym["filling_mode"] == 3 and sym["volume_step"] == 0.01
    assert client.symbol_info("NOPE") is None and client.last_error[0] == C.RES_E_NOT_FOUND
    assert client.positions_get() == [] and client.orders_get() == []


def test_to_plain_converts_named_tuples_structured_arrays_and_nested_requests() -> None:
    fake = FakeMetaTrader5()
    fake.initialize()
    fake.symbol_select("EURUSD")
    fake.generate_rates("EURUSD", mt5_fake.TIMEFRAME_M15, 3)
    rates = to_plain(fake.copy_rates_from_pos("EURUSD", mt5_fake.TIMEFRAME_M15, 0, 3))
    json.dumps(rates)
    assert len(rates) == 3 and set(rates[0]) == set(mt5_fake.RATES_DTYPE.names)
    result = to_plain(fake.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.1,
                                       "type": 0, "type_filling": 0}))
    assert result["retcode"] == mt5_fake.TRADE_RETCODE_DONE
    assert result["request"]["symbol"] == "EURUSD"  # nested TradeRequest -> dict
    assert to_plain(fake.positions_get())[0]["volume"] == 0.1


def test_client_constants_match_the_documented_module() -> None:
    fake = FakeMetaTrader5()
    for name in dir(C):
        if name.isupper() and name.split("_")[0] in ("TRADE", "ORDER", "SYMBOL", "RES",
                                                     "POSITION", "DEAL"):
            assert getattr(fake, name) == getattr(C, name), name
    for tf, value in C.TIMEFRAMES.items():
        assert getattr(fake, f"TIMEFRAME_{tf}") == value


def test_bridge_core_captures_last_error_with_each_call() -> None:
    fake = FakeMetaTrader5()
    bridge = Bridge(fake)
    answer = json.loads(bridge.call_json("symbol_info", json.dumps({"args": ["EURUSD"]})))
    assert answer == {"result": None, "last_error": [C.RES_E_INTERNAL_FAIL_CONNECT,
                                                     "No IPC connection"]}
    with pytest.raises(TypeError):
        bridge.call_json(object(), "{}")  # type: ignore[arg-type]


def test_module_transport_uses_the_same_seam() -> None:
    fake = FakeMetaTrader5()
    settings = client_settings(fake, 1, transport="module")
    client = Mt5Client(settings, password=fake.account_password,
                       transport_factory=lambda: ModuleTransport(fake))
    client.connect()
    assert client.account_info()["login"] == fake.account_login  # type: ignore[index]
    with pytest.raises(VenueError, match="Windows only"):
        ModuleTransport()


# --------------------------------------------------------------------------- reconnection


def test_a_dropped_bridge_is_reconnected(fake: FakeMetaTrader5, bridge: Any,
                                         client: Mt5Client) -> None:
    assert client.reconnects == 1
    assert bridge.drop_connections() == 1
    info = client.account_info()  # EOF on the old link -> reconnect, initialize, retry
    assert info is not None and info["login"] == fake.account_login
    assert client.reconnects == 2
    assert fake.calls.count("initialize") == 2


def test_a_restarted_bridge_is_reconnected(fake: FakeMetaTrader5, client: Mt5Client,
                                           bridge: Any) -> None:
    port = bridge.port
    bridge.close()
    again = serve(fake, "127.0.0.1", port, SECRET, block=False)
    try:
        assert client.terminal_info()["connected"] is True  # type: ignore[index]
        assert client.reconnects == 2
    finally:
        again.close()


def test_a_lost_terminal_link_is_reinitialized(fake: FakeMetaTrader5,
                                               client: Mt5Client) -> None:
    fake.drop_ipc()  # terminal restarted: calls answer None with -10004 until initialize
    fake.connect_after_polls = 3  # and it takes a moment to reach its trade server
    assert client.account_info() is not None
    assert fake.calls.count("initialize") == 2
    assert client.reconnects == 1  # same bridge connection, only re-initialized


def test_a_bridge_that_stays_down_is_a_retryable_broker_error(fake: FakeMetaTrader5) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Mt5Client(client_settings(fake, port, reconnect_attempts=2),
                       bridge_secret=SECRET)
    with pytest.raises(VenueError, match="failed after 2 attempts") as info:
        client.connect()
    assert info.value.retryable is True


def test_wrong_login_is_not_retried(fake: FakeMetaTrader5, bridge: Any) -> None:
    client = Mt5Client(client_settings(fake, bridge.port), password="wrong",
                       bridge_secret=SECRET)
    with pytest.raises(VenueError, match="login") as info:
        client.connect()
    assert info.value.retryable is False
    assert fake.calls.count("initialize") == 1


def test_a_read_timeout_is_retried_then_reported(fake: FakeMetaTrader5, bridge: Any) -> None:
    client = Mt5Client(client_settings(fake, bridge.port, call_timeout_seconds=0.3,
                                       reconnect_attempts=2),
                       password=fake.account_password, bridge_secret=SECRET)
    client.connect()
    original = fake.account_info

    def slow() -> Any:
        import time

        time.sleep(0.5)
        return original()

    fake.account_info = slow  # type: ignore[method-assign]
    with pytest.raises(VenueError, match="timed out"):
        client.account_info()
    fake.account_info = original  # type: ignore[method-assign]
    assert client.account_info() is not None  # the link survived the late answers
