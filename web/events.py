"""The live feed's fan-out: dashboard events to every subscriber, never slowing the publisher.

Each subscriber gets a bounded queue; when it is full the event is dropped for that subscriber
alone and counted, so a stalled browser tab costs the gateway nothing but the count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

import trio

Event = Mapping[str, object]
QUEUE_SIZE: Final = 256


@dataclasses.dataclass(frozen=True, slots=True)
class EventHubStatistics:
    """Subscribers now, events published and dropped since start."""

    subscribers: int
    published: int
    dropped: int


class EventHub:
    """Publish events of the gateway (breaker changes, low credit…) to live subscribers."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()
        self._published = 0
        self._dropped = 0

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber that has room; never waits."""
        self._published += 1
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(event)
            except trio.WouldBlock:
                self._dropped += 1
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._subscribers.discard(subscriber)

    @contextmanager
    def subscribe(self) -> Iterator[trio.MemoryReceiveChannel[Event]]:
        """A bounded feed of the events published while the block runs."""
        send, receive = trio.open_memory_channel[Event](self._queue_size)
        self._subscribers.add(send)
        try:
            yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    def statistics(self) -> EventHubStatistics:
        """Counters for health and metrics."""
        return EventHubStatistics(len(self._subscribers), self._published, self._dropped)
