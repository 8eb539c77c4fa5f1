"""The deadline on each next chunk of a provider's streams, kept by one task instead of a cancel
scope per chunk.

A stream must produce each next chunk within ``timeout_s`` of being asked for. Bounding every
wait with its own cancel scope cost about 6.5 µs per chunk, a tenth of all the CPU a passed-through
event costs. Here a stream only notes when it started waiting (:meth:`Watched.waiting_since`), and
one task per provider looks at the waiting streams a few times per timeout: one waiting past its
deadline is told (:meth:`Watched.stalled`), and aborts its read.

The deadline is therefore kept to within a tick (a tenth of the timeout, at most a second) late,
never early; the first chunk's deadline, which counts from the call, keeps its own scope.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import trio

MIN_TICK_S = 0.01
MAX_TICK_S = 1.0


class Watched(Protocol):
    """A stream whose waits for its next chunk are bounded by the watch."""

    def waiting_since(self) -> float | None:
        """When the current wait for a chunk began (trio time); None when not waiting."""

    def stalled(self) -> None:
        """The current wait is past its deadline: end it with a timeout."""


class StallWatch:
    """One provider's streams, checked every tick; a task of the provider actor runs it."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._tick_s = min(MAX_TICK_S, max(MIN_TICK_S, timeout_s / 10))
        self._streams: set[Watched] = set()
        self._work = trio.Event()

    @contextmanager
    def watching(self, stream: Watched) -> Iterator[None]:
        """Bound ``stream``'s waits while the block runs."""
        self._streams.add(stream)
        self._work.set()
        try:
            yield
        finally:
            self._streams.discard(stream)

    async def run(self) -> None:
        """Check the waiting streams every tick while there are any; sleep otherwise."""
        while True:
            if not self._streams:
                self._work = trio.Event()
                await self._work.wait()
                continue
            await trio.sleep(self._tick_s)
            self.check(trio.current_time())

    def check(self, now: float) -> None:
        """Tell every stream that has waited ``timeout_s`` or longer that it stalled (again on
        later ticks while it still waits: an abort can only end a wait that is under way)."""
        for stream in list(self._streams):
            since = stream.waiting_since()
            if since is not None and now - since >= self._timeout_s:
                stream.stalled()
