"""Fan-out to live subscribers that never slows the publisher.

Each subscriber gets a bounded queue; when it is full the item is dropped for that subscriber
alone and counted, so a stalled reader (a browser tab, a terminal monitor) costs the publisher
nothing but the count. Used by the RequestLogger (logged calls) and the dashboard's event hub.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Fanout(Generic[T]):
    """Publish items to every current subscriber's bounded queue."""

    def __init__(self, queue_size: int) -> None:
        self._queue_size = queue_size
        self._subscribers: set[trio.MemorySendChannel[T]] = set()
        self.published = 0
        self.dropped = 0

    @property
    def subscribers(self) -> int:
        """How many subscribe blocks are open."""
        return len(self._subscribers)

    def publish(self, item: T) -> None:
        """Hand ``item`` to every subscriber that has room; never waits."""
        self.published += 1
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(item)
            except trio.WouldBlock:
                self.dropped += 1
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._subscribers.discard(subscriber)

    @contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[T]]:
        """A bounded feed of what is published while the block runs."""
        send, receive = trio.open_memory_channel[T](self._queue_size)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    def close(self) -> None:
        """No more items: every subscriber's feed ends once drained."""
        for subscriber in list(self._subscribers):
            subscriber.close()
