"""Login throttling: failed logins per username and per client address.

After ``limit`` failures within ``window_s`` a key is locked until the oldest of those failures
leaves the window, so a password-guessing script gets a handful of tries per window, while a user
who mistyped twice is not bothered. Per-username stops a distributed guess at one account;
per-address stops one host trying many accounts. A successful login clears its username's record
(not its address's: one host may hold many accounts). Memory is bounded: the oldest keys go first.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from typing import Final

from proxy.usernames import fold_username

USERNAME_LIMIT: Final = 5
ADDRESS_LIMIT: Final = 20
WINDOW_S: Final = 900.0
MAX_KEYS: Final = 50_000


class _Failures:
    """Failure times per key, oldest first."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.times: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        recent = self._recent(key, now)
        if recent is None or len(recent) < self.limit:
            return 0.0
        return recent[-self.limit] + self.window_s - now

    def add(self, key: str, now: float) -> None:
        recent = self._recent(key, now)
        if recent is None:
            recent = collections.deque(maxlen=self.limit)
            self.times[key] = recent
            while len(self.times) > MAX_KEYS:
                self.times.popitem(last=False)
        recent.append(now)
        self.times.move_to_end(key)

    def clear(self, key: str) -> None:
        self.times.pop(key, None)

    def _recent(self, key: str, now: float) -> collections.deque[float] | None:
        recent = self.times.get(key)
        if recent is None:
            return None
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if not recent:
            del self.times[key]
            return None
        return recent


class LoginThrottle:
    """Decides whether a login may be tried, and records failures."""

    def __init__(
        self,
        *,
        username_limit: int = USERNAME_LIMIT,
        address_limit: int = ADDRESS_LIMIT,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self._usernames = _Failures(username_limit, window_s)
        self._addresses = _Failures(address_limit, window_s)
        self._clock = clock or time.monotonic

    def retry_after(self, username: str, address: str) -> int:
        """Whole seconds to wait before trying; 0 when a try is allowed."""
        now = self._clock()
        wait = max(
            self._usernames.retry_after(fold_username(username), now),
            self._addresses.retry_after(address, now),
        )
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, username: str, address: str) -> None:
        """A wrong password (or an unknown user) from ``address``."""
        now = self._clock()
        self._usernames.add(fold_username(username), now)
        self._addresses.add(address, now)

    def succeeded(self, username: str) -> None:
        """A good login: the username's failures are forgiven."""
        self._usernames.clear(fold_username(username))
