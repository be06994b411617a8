"""The MetaTrader 5 bridge: a small rpyc server that runs in the terminal's (Wine-side)
Python and exposes a whitelist of ``MetaTrader5`` functions to the daemon on Linux.

    python -m executor.brokers.mt5_bridge --host 127.0.0.1 --port 18812 --secret-file F

Why our own bridge and not mt5linux: mt5linux runs rpyc's *classic* (slave) service, which
hands any connected client the whole Python interpreter of the Windows side. This bridge
uses a plain ``rpyc.Service`` with exactly two exposed methods (``call`` and ``ping``), no
public attribute access, no pickling and no custom exceptions, so a client can do nothing
but call the whitelisted functions below.

Security:
- binds 127.0.0.1 unless ``--allow-remote`` is given;
- every connection must first pass a mutual HMAC-SHA256 challenge-response on a shared
  secret (read from a file, never from the command line), compared with
  ``hmac.compare_digest``; the secret itself never crosses the socket;
- a call outside ``WHITELIST`` is refused with ``PermissionError`` and logged.

Wire format: arguments and answers cross as one JSON document each. rpyc passes ``str`` by
value, whereas a ``dict``/``list`` would cross as a netref costing a round-trip per item
(and exposing the object). MetaTrader5's named tuples become dicts (``_asdict()``), tuples
of them lists of dicts, and the structured numpy arrays of ``copy_rates_*`` a list of
dicts, one per bar, keyed by the dtype's field names (``time, open, high, low, close,
tick_volume, spread, real_volume``), in the array's order (oldest first).
Every answer is ``{"result": ..., "last_error": [code, message]}``: ``last_error()`` is read
right after the call, under the same lock, so it belongs to that call (the package keeps
it in one global that the next call overwrites).

This module imports only the standard library at import time (rpyc inside ``serve``), so
the Wine-side Python needs just ``rpyc`` (and ``MetaTrader5``, ``numpy``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("dta.mt5_bridge")

# The MetaTrader5 functions the daemon uses; nothing else is callable through the bridge.
WHITELIST: frozenset[str] = frozenset({
    "initialize", "shutdown", "login", "terminal_info", "account_info", "symbol_info",
    "symbol_info_tick", "symbol_select", "copy_rates_from_pos", "order_send", "order_check",
    "orders_get", "positions_get", "history_orders_get", "history_deals_get", "last_error",
})

PROTOCOL_MAGIC = b"DTA-MT5-BRIDGE/1"  # 16 bytes
_NONCE = 32
_MAC = 32
_OK = b"OK"
_NO = b"NO"


# --------------------------------------------------------------------------- plain data


def to_plain(value: Any) -> Any:
    """Convert a MetaTrader5 answer to JSON-able built-ins (see the module docstring)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    asdict = getattr(value, "_asdict", None)
    if callable(asdict):
        return {str(k): to_plain(v) for k, v in asdict().items()}
    dtype = getattr(value, "dtype", None)
    if dtype is not None:
        names = getattr(dtype, "names", None)
        if names:  # a structured array (rates, ticks) or one record of it
            if getattr(value, "ndim", 1) == 0:
                return {n: to_plain(value[n]) for n in names}
            return [{n: to_plain(row[n]) for n in names} for row in value]
        item = getattr(value, "item", None)
        if callable(item) and getattr(value, "ndim", 0) == 0:
            return to_plain(item())  # a numpy scalar
        tolist = getattr(value, "tolist", None)
        if callable(tolist):
            return to_plain(tolist())
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _last_error(module: Any) -> list[Any]:
    try:
        code, message = module.last_error()
        return [int(code), str(message)]
    except Exception as exc:  # a broken last_error must not hide the answer
        return [-1, f"last_error failed: {exc!r}"]


class Bridge:
    """The transport-free core: whitelist, JSON in and out, one call at a time.

    ``MetaTrader5`` is not thread-safe (one global ``last_error``, one IPC channel), so
    calls from all connections are serialised by one lock.
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self._lock = threading.Lock()

    def call_json(self, name: str, payload: str) -> str:
        if type(name) is not str or type(payload) is not str:
            raise TypeError("bridge.call takes (name: str, payload: str)")
        if name not in WHITELIST:
            log.warning("bridge_refused_call", extra={"function": name[:64]})
            raise PermissionError(f"MetaTrader5.{name[:64]} is not on the bridge whitelist")
        try:
            decoded = json.loads(payload) if payload else {}
        except ValueError:
            raise ValueError("bridge payload is not JSON") from None
        if not isinstance(decoded, dict):
            raise ValueError("bridge payload must be a JSON object {args, kwargs}")
        args = decoded.get("args") or []
        kwargs = decoded.get("kwargs") or {}
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("bridge payload args must be a list and kwargs an object")
        fn = getattr(self.module, name)
        with self._lock:
            result = fn(*args, **kwargs)
            error = _last_error(self.module) if name != "last_error" else None
        plain = to_plain(result)
        return json.dumps({"result": plain,
                           "last_error": error if error is not None else plain})


# --------------------------------------------------------------------------- handshake


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed during the bridge handshake")
        buf.extend(chunk)
    return bytes(buf)


def _mac(secret: bytes, label: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, label + b"".join(parts), hashlib.sha256).digest()


def server_handshake(sock: socket.socket, secret: bytes, timeout: float = 5.0) -> None:
    """Challenge the client; raise ``PermissionError`` unless it proves the secret."""
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        server_nonce = secrets.token_bytes(_NONCE)
        sock.sendall(PROTOCOL_MAGIC + server_nonce)
        reply = _recv_exact(sock, _NONCE + _MAC)
        client_nonce, proof = reply[:_NONCE], reply[_NONCE:]
        expected = _mac(secret, b"client", server_nonce, client_nonce)
        if not hmac.compare_digest(proof, expected):
            with contextlib.suppress(OSError):
                sock.sendall(_NO + bytes(_MAC))
            raise PermissionError("bridge client failed the shared-secret check")
        sock.sendall(_OK + _mac(secret, b"server", client_nonce, server_nonce))
    finally:
        sock.settimeout(previous)


def client_handshake(sock: socket.socket, secret: bytes, timeout: float = 5.0) -> None:
    """Answer the bridge's challenge and check that the bridge knows the secret too."""
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        hello = _recv_exact(sock, len(PROTOCOL_MAGIC) + _NONCE)
        if hello[: len(PROTOCOL_MAGIC)] != PROTOCOL_MAGIC:
            raise ConnectionError("the peer is not a DTA MT5 bridge (bad protocol magic)")
        server_nonce = hello[len(PROTOCOL_MAGIC):]
        client_nonce = secrets.token_bytes(_NONCE)
        sock.sendall(client_nonce + _mac(secret, b"client", server_nonce, client_nonce))
        answer = _recv_exact(sock, len(_OK) + _MAC)
        if answer[: len(_NO)] == _NO:
            raise PermissionError("the MT5 bridge refused our shared secret "
                                  "(mt5_bridge_secret differs from the bridge's --secret-file)")
        expected = _mac(secret, b"server", client_nonce, server_nonce)
        if answer[: len(_OK)] != _OK or not hmac.compare_digest(answer[len(_OK):], expected):
            raise PermissionError("the peer failed the shared-secret check: not our MT5 bridge")
    finally:
        sock.settimeout(previous)


# --------------------------------------------------------------------------- rpyc server

# rpyc protocol settings for both ends: no attribute access beyond ``exposed_`` names, no
# pickling, no custom exception classes instantiated from the peer's data.
RPYC_CONFIG: dict[str, Any] = {
    "allow_public_attrs": False,
    "allow_all_attrs": False,
    "allow_setattr": False,
    "allow_delattr": False,
    "allow_pickle": False,
    "allow_getattr": True,  # needed to reach ``exposed_`` methods; nothing else is exposed
    "import_custom_exceptions": False,
    "instantiate_custom_exceptions": False,
    "instantiate_oldstyle_exceptions": False,
    "include_local_traceback": False,
    "propagate_SystemExit_locally": False,
    "propagate_KeyboardInterrupt_locally": False,
}


@dataclass
class BridgeServer:
    """A running bridge (``serve(..., block=False)``)."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def drop_connections(self) -> int:
        """Cut every client connection (as a crashed or restarted bridge would)."""
        clients = list(self._server.clients)
        for sock in clients:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return len(clients)

    def close(self) -> None:
        self.drop_connections()
        self._server.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> BridgeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (the console's bind rule uses it too); a
    name other than localhost may resolve to anything, so it is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(module: Any, host: str = "127.0.0.1", port: int = 18812, secret: bytes | str = b"",
          *, block: bool = True, allow_remote: bool = False,
          handshake_timeout: float = 5.0) -> BridgeServer | None:
    """Serve ``module`` (the real ``MetaTrader5`` or a faithful fake) over rpyc.

    ``port=0`` picks a free port (see ``BridgeServer.port``). With ``block=False`` the
    server runs in a daemon thread and its handle is returned.
    """
    import rpyc
    from rpyc.utils.authenticators import AuthenticationError
    from rpyc.utils.server import ThreadedServer

    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < 16:
        raise ValueError("the bridge needs a shared secret of at least 16 bytes")
    if not allow_remote and not is_loopback(host):
        raise ValueError(f"refusing to bind {host}: the bridge binds loopback only "
                         "unless allow_remote is set")
    bridge = Bridge(module)

    class Mt5BridgeService(rpyc.Service):  # type: ignore[misc]
        """Exactly two remote entry points; everything else is refused by rpyc."""

        def exposed_call(self, name: str, payload: str) -> str:
            return bridge.call_json(name, payload)

        def exposed_ping(self) -> str:
            return "pong"

    def authenticator(sock: socket.socket) -> tuple[socket.socket, None]:
        with contextlib.suppress(OSError):  # small request/response frames: no Nagle delay
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            server_handshake(sock, key, handshake_timeout)
        except Exception as exc:
            log.warning("bridge_client_refused: %s", exc)
            raise AuthenticationError(str(exc)) from None
        return sock, None

    class _Server(ThreadedServer):  # type: ignore[misc]
        def _handle_connection(self, conn: Any) -> None:
            # The socket closed under us (shutdown, drop) is a goodbye, not an error.
            with contextlib.suppress(OSError):
                conn.serve_all()

    server = _Server(Mt5BridgeService, hostname=host, port=port, authenticator=authenticator,
                     protocol_config=dict(RPYC_CONFIG), auto_register=False, logger=log)
    log.info("mt5 bridge listening on %s:%s", server.host, server.port)
    if block:
        server.start()
        return None
    server._listen()  # listening before we return, so a client can connect at once
    thread = threading.Thread(target=server.start, name="mt5-bridge", daemon=True)
    thread.start()
    return BridgeServer(str(server.host), int(server.port), server, thread)


# --------------------------------------------------------------------------- CLI


def read_secret(path: Path) -> bytes:
    """The shared secret from a file (systemd credential or 0600 file), stripped."""
    data = path.read_bytes().strip()
    if len(data) < 16:
        raise SystemExit(f"{path}: the shared secret must be at least 16 bytes")
    return data


def _initialize(module: Any, terminal_path: str | None, attempts: int) -> None:
    """Start/attach the terminal once so the first daemon call finds it ready; failures
    are logged, not fatal: the daemon re-initializes on its own."""
    for i in range(attempts):
        ok = module.initialize(terminal_path) if terminal_path else module.initialize()
        if ok:
            log.info("terminal initialized")
            return
        log.warning("initialize failed (%s), attempt %d/%d", module.last_error(), i + 1,
                    attempts)
        time.sleep(min(30, 2 ** i))


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m executor.brokers.mt5_bridge",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18812)
    parser.add_argument("--secret-file", type=Path,
                        default=Path(os.environ["CREDENTIALS_DIRECTORY"]) / "mt5_bridge_secret"
                        if os.environ.get("CREDENTIALS_DIRECTORY") else None)
    parser.add_argument("--terminal-path", default=None,
                        help="terminal64.exe to start/attach at launch (optional)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow binding a non-loopback address (not recommended)")
    parser.add_argument("--log-level", default="INFO")
    ns = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=ns.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if ns.secret_file is None:
        parser.error("--secret-file is required (or run under systemd with "
                     "LoadCredential=mt5_bridge_secret)")
    secret = read_secret(ns.secret_file)
    import MetaTrader5  # Windows-side only

    _initialize(MetaTrader5, ns.terminal_path, attempts=3)
    serve(MetaTrader5, ns.host, ns.port, secret, allow_remote=ns.allow_remote)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
