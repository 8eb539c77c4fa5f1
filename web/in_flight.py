"""Counting the HTTP requests being answered, so shutdown can wait for exactly those.

At SIGTERM the service waits until no request is being answered (or the grace period ends, and
then says how many it cut), never for idle keep-alive connections: an SDK client that made one
call and kept its socket must not hold a shutdown for the whole grace period.
"""

from __future__ import annotations

import trio


class InFlight:
    """A counter of requests in progress with a way to wait until it is zero."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = trio.Event()
        self._idle.set()

    @property
    def count(self) -> int:
        """Requests being answered now."""
        return self._count

    def __enter__(self) -> None:
        self._count += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def __exit__(self, *exc_info: object) -> None:
        self._count -= 1
        if self._count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no request is in progress."""
        await self._idle.wait()
