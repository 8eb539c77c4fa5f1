"""The dashboard's event hub: breaker changes, low credit and the like, fanned out to live feeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

from actors.fanout import Fanout

Event = Mapping[str, object]
QUEUE_SIZE: Final = 256


@dataclasses.dataclass(frozen=True, slots=True)
class EventHubStatistics:
    """Subscribers now, events published and dropped since start."""

    subscribers: int
    published: int
    dropped: int


class EventHub(Fanout[Event]):
    """Publish gateway events to live subscribers; a slow one loses events (counted)."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        super().__init__(queue_size)

    def statistics(self) -> EventHubStatistics:
        """Counters for health and metrics."""
        return EventHubStatistics(self.subscribers, self.published, self.dropped)
