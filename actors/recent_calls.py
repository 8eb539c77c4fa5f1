"""Calls and errors over the last minute, counted exactly as they are logged.

The live feed's ``requests_per_min`` comes from here. It used to be the database's count of the
minute before a socket opened plus the logger's totals since: a call the logger had counted but
the writer had not stored yet was in neither, so a feed opened just after a call could show
``requests_per_min == 0`` beside ``requests_total == 1``. Counting where the totals are counted,
at the same moment, leaves no such gap (and needs no query per socket).

Calls are kept per millisecond, not per second: with whole seconds a call 59.1 s old had already
left "the last minute" (the tile showed 18 for 21 calls). A millisecond is the resolution of every
timestamp the dashboard shows, and it bounds the memory at one entry per millisecond of the window
whatever the rate.
"""

from __future__ import annotations

import collections
import math
from typing import Final

WINDOW_S: Final = 60


class RecentCalls:
    """Calls and errors logged in the trailing ``window_s`` seconds, to the millisecond."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_ms = round(window_s * 1000)
        # The milliseconds with calls, oldest first, and their calls and errors: three deques of
        # ints rather than one of lists, half the memory at the bound (~3 MB at 60,000 entries).
        self._ms: collections.deque[int] = collections.deque()
        self._calls_at: collections.deque[int] = collections.deque()
        self._errors_at: collections.deque[int] = collections.deque()
        self._calls = self._errors = 0

    @property
    def entries(self) -> int:
        """Milliseconds with calls held (at most one per millisecond of the window)."""
        return len(self._ms)

    def add(self, now: float, *, error: bool) -> None:
        """Count one call logged at ``now`` (seconds, any monotonic clock)."""
        ms = math.floor(now * 1000)
        self._forget(ms)
        if self._ms and self._ms[-1] == ms:
            self._calls_at[-1] += 1
            self._errors_at[-1] += error
        else:
            self._ms.append(ms)
            self._calls_at.append(1)
            self._errors_at.append(int(error))
        self._calls += 1
        self._errors += int(error)

    def totals(self, now: float) -> tuple[int, int]:
        """(calls, errors) logged less than ``window_s`` before ``now``."""
        self._forget(math.floor(now * 1000))
        return self._calls, self._errors

    def next_drop(self, now: float) -> float | None:
        """When the oldest call counted at ``now`` leaves the window (None: nothing counted)."""
        self._forget(math.floor(now * 1000))
        if not self._ms:
            return None
        return (self._ms[0] + self._window_ms) / 1000

    def _forget(self, ms: int) -> None:
        oldest = ms - self._window_ms
        while self._ms and self._ms[0] <= oldest:
            self._ms.popleft()
            self._calls -= self._calls_at.popleft()
            self._errors -= self._errors_at.popleft()
