"""systemd's notify protocol: datagrams of "KEY=value" lines sent to the
unix socket named by $NOTIFY_SOCKET (a leading "@" means the abstract
namespace). Without $NOTIFY_SOCKET every call is a no-op, so the agent runs
the same outside systemd. See sd_notify(3)."""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger()


class SystemdNotifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_env(cls) -> SystemdNotifier:
        """Read and remove $NOTIFY_SOCKET and $WATCHDOG_USEC, so programs the
        agent starts (exec notifiers, command checks) cannot speak for it."""
        address = os.environ.pop("NOTIFY_SOCKET", None)
        usec = os.environ.pop("WATCHDOG_USEC", None)
        pid = os.environ.pop("WATCHDOG_PID", None)
        watchdog = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        return cls(address, watchdog)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def send(self, *lines: str) -> bool:
        if self._sock is None or not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:  # systemd gone or its queue full: never fatal
            log.warning("sd_notify_failed", error=str(exc))
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
