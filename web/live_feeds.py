"""The open live-feed sockets (``/api/ws``), counted per session and in all, within caps.

Each socket costs a subscription to every logged call and event, its own outbox and the
encoding of every frame: 800 sockets from one session took 93 MB and made ``/v1`` calls three
times slower. A socket past either cap is refused before the upgrade; a socket's place is freed
when its handler ends, however it ends.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Literal


class LiveFeedsFull(Exception):
    """No place for another socket: this session's (``"session"``) or everyone's (``"all"``)."""

    def __init__(self, scope: Literal["session", "all"]) -> None:
        super().__init__(f"no place for another live feed ({scope})")
        self.scope = scope


@dataclasses.dataclass(frozen=True, slots=True)
class LiveFeedStatistics:
    """Sockets open now, sessions holding them, and sockets refused since start."""

    open: int
    sessions: int
    refused: int


class LiveFeeds:
    """Places for live-feed sockets, taken for the length of a ``with`` block."""

    def __init__(self) -> None:
        self._by_session: collections.Counter[str] = collections.Counter()
        self._open = 0
        self._refused = 0

    @contextlib.contextmanager
    def place(self, session_key: str, *, per_session: int, total: int) -> Iterator[None]:
        """Hold a place for one socket of ``session_key`` for the block; LiveFeedsFull (at
        once, nothing held) when the session has ``per_session`` or all have ``total``."""
        if self._by_session[session_key] >= per_session:
            self._refused += 1
            raise LiveFeedsFull("session")
        if self._open >= total:
            self._refused += 1
            raise LiveFeedsFull("all")
        self._by_session[session_key] += 1
        self._open += 1
        try:
            yield
        finally:
            self._open -= 1
            self._by_session[session_key] -= 1
            if self._by_session[session_key] <= 0:
                del self._by_session[session_key]

    def statistics(self) -> LiveFeedStatistics:
        """Counts for health and tests."""
        return LiveFeedStatistics(
            open=self._open, sessions=len(self._by_session), refused=self._refused
        )
