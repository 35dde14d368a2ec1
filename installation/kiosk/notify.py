"""systemd's notify protocol (sd_notify(3)): datagrams like `READY=1` to the socket in $NOTIFY_SOCKET.

Twenty lines of the socket module rather than a dependency: outside systemd (no $NOTIFY_SOCKET) every
call is a no-op. With `WatchdogSec=` in the unit, systemd sets $WATCHDOG_USEC and restarts the service
when no `WATCHDOG=1` arrives in time; `watchdog()` pings at half that period.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, env: dict | None = None):
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self.address = address or None
        self.watchdog_interval: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2
        self._last_ping = float("-inf")
        self._last_status = None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines as one datagram; False when not under systemd or the socket is gone."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                # never block: a listener that stopped reading must not freeze the supervisor
                sock.send("\n".join(fields).encode(), socket.MSG_DONTWAIT)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Ping the watchdog if one is configured and half its period has passed."""
        now = time.monotonic()
        if self.watchdog_interval is not None and now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")
