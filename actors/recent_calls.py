"""Calls and errors over the last minute, in one-second buckets, counted as they are logged.

The live feed's ``requests_per_min`` comes from here. It used to be the database's count of the
minute before a socket opened plus the logger's totals since: a call the logger had counted but
the writer had not stored yet was in neither, so a feed opened just after a call could show
``requests_per_min == 0`` beside ``requests_total == 1``. Counting where the totals are counted,
at the same moment, leaves no such gap (and needs no query per socket).
"""

from __future__ import annotations

import collections
import math
from typing import Final

WINDOW_S: Final = 60


class RecentCalls:
    """Per-second counts of calls and errors over the last ``window_s`` seconds."""

    def __init__(self, window_s: int = WINDOW_S) -> None:
        self._window_s = window_s
        # [second, calls, errors], oldest first; at most one entry per second of the window.
        self._buckets: collections.deque[list[int]] = collections.deque()

    def add(self, now: float, *, error: bool) -> None:
        """Count one call logged at ``now`` (seconds, any monotonic clock)."""
        second = math.floor(now)
        self._forget(second)
        if self._buckets and self._buckets[-1][0] == second:
            bucket = self._buckets[-1]
        else:
            bucket = [second, 0, 0]
            self._buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += int(error)

    def totals(self, now: float) -> tuple[int, int]:
        """(calls, errors) logged in the window up to ``now`` (to within a second)."""
        self._forget(math.floor(now))
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    def _forget(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self._window_s:
            self._buckets.popleft()
