"""sd_notify over the raw socket protocol (no dependency): READY, WATCHDOG, STOPPING.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace) and
``WATCHDOG_USEC``; outside systemd both are absent and every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        usec = watchdog_usec if watchdog_usec is not None else _int_env("WATCHDOG_USEC")
        # Ping at half the watchdog period, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval = usec / 2e6 if usec else None
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> bool:
        if not self.address:
            return False
        addr = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never block the trading cycle on a slow or full notification socket: a
                # lost ping is harmless, a stalled cycle is not.
                sock.setblocking(False)
                sock.connect(addr)
                sock.send(message.encode())
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self, *, force: bool = False) -> None:
        """Ping if the watchdog is on and half its period has passed since the last ping."""
        if not self.address:
            return
        now = time.monotonic()
        interval = self.watchdog_interval or 0.0
        if force or now - self._last_ping >= interval:
            self._last_ping = now
            self.notify("WATCHDOG=1")


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    try:
        return int(value) if value else None
    except ValueError:
        return None
