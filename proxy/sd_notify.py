"""The systemd notify protocol (sd_notify(3)) in a few lines, without libsystemd.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, an AF_UNIX datagram socket (a path, or an
abstract name written ``@name``), and waits for ``READY=1`` before it calls the unit started.
``STOPPING=1`` says shutdown has begun; ``STATUS=...`` is the line ``systemctl status`` shows.
With ``WatchdogSec=`` it also passes ``$WATCHDOG_USEC`` (and maybe ``$WATCHDOG_PID``, which must
be ours): the service must send ``WATCHDOG=1`` at least that often, or systemd kills and restarts
it. The pings are sent from a task in the trio loop, at half the period as systemd recommends, so
a loop that hangs (a blocking call on the trio thread) stops pinging and is restarted.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op. A datagram to a local socket is
tiny and never waits in practice; it goes through a non-blocking trio socket, with a deadline in
case the receiver stopped reading. A failed send is logged once and never stops the service.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Final, final

import trio

log = logging.getLogger("llm_proxy.systemd")

SEND_TIMEOUT_S: Final = 1.0

READY: Final = "READY=1"
STOPPING: Final = "STOPPING=1"
WATCHDOG: Final = "WATCHDOG=1"


def status(text: str) -> str:
    """A ``STATUS=`` field: one line, as ``systemctl status`` shows it."""
    return "STATUS=" + " ".join(text.split())


def encode(*fields: str) -> bytes:
    """One notification datagram: ``KEY=VALUE`` fields, one per line."""
    for item in fields:
        key, sep, _ = item.partition("=")
        if not sep or not key or "\n" in item:
            raise ValueError(f"not a KEY=VALUE line: {item!r}")
    return "\n".join(fields).encode()


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket address in ``$NOTIFY_SOCKET`` (``@name`` is the abstract ``\\0name``), or None.

    Anything but an absolute path or an abstract name (e.g. ``vsock:``, which only matters
    inside VMs) is not supported and disables notifications.
    """
    value = environ.get("NOTIFY_SOCKET", "")
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: half of ``$WATCHDOG_USEC``; None when not asked.

    As in ``sd_watchdog_enabled``, a ``$WATCHDOG_PID`` naming another process (the variables
    were inherited from a parent) means the watchdog is not ours.
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID")
    if watchdog_pid is not None:
        try:
            if int(watchdog_pid) != pid:
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


@final
class Notifier:
    """Tells the service manager how we are doing; every method is a no-op outside systemd."""

    def __init__(self, address: str | None, watchdog_interval_s: float | None = None) -> None:
        self.address = address
        # No socket, nobody to ping.
        self.watchdog_interval_s = watchdog_interval_s if address is not None else None
        self._failed = False

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None
    ) -> Notifier:
        """The notifier systemd asked for through the environment (``os.environ`` by default)."""
        env: Mapping[str, str] = os.environ if environ is None else environ
        own_pid = os.getpid() if pid is None else pid
        return cls(notify_address(env), watchdog_interval(env, own_pid))

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens."""
        return self.address is not None

    async def notify(self, *fields: str) -> bool:
        """Send one notification; True if it was sent (False outside systemd or on failure)."""
        if self.address is None:
            await trio.lowlevel.checkpoint()
            return False
        data = encode(*fields)
        try:
            with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                with trio.move_on_after(SEND_TIMEOUT_S) as deadline:
                    await sock.sendto(data, self.address)
            if deadline.cancelled_caught:
                raise TimeoutError("the service manager is not reading its notify socket")
        except OSError as exc:
            if not self._failed:  # once: a watchdog would repeat it every few seconds
                self._failed = True
                log.warning("cannot notify the service manager: %s", exc)
            return False
        return True

    async def serve(self, stopping: trio.Event, *, ready_status: str = "") -> None:
        """Report READY=1, ping the watchdog until ``stopping`` is set, then report STOPPING=1.

        Start it once the service accepts connections; it returns as soon as shutdown begins
        (systemd disarms the watchdog on STOPPING=1 and applies ``TimeoutStopSec=`` instead).
        """
        if self.address is None:
            await stopping.wait()
            return
        await self.notify(READY, *([status(ready_status)] if ready_status else []))
        interval = self.watchdog_interval_s
        while not stopping.is_set():
            if interval is None:
                await stopping.wait()
            else:
                await self.notify(WATCHDOG)
                with trio.move_on_after(interval):
                    await stopping.wait()
        await self.notify(STOPPING, status("shutting down"))
