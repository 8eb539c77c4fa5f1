"""Login throttling: sign-in attempts per username and per client address.

Every attempt is counted as a failure *before* its password is checked and forgiven when it turns
out right, and only one attempt per username and one per address is checked at a time (an address
known for the user waits only for its own). Checking first and counting after let a burst of
concurrent guesses all pass the check before the first failure was counted (200 guesses, 200
argon2 verifies, the right one among them signed in).

After ``limit`` failures within ``window_s`` a key is locked until the oldest of those failures
leaves the window, so a password-guessing script gets a handful of tries per window, while a user
who mistyped twice is not bothered. Per-username stops a distributed guess at one account;
per-address stops one host trying many accounts. A successful sign-in forgives the failures of
its username at its address only (a user who mistyped twice; never the guesses made elsewhere) and
makes the address *known* for that user: the username lock does not apply there, so a flood of
guesses at the admin's name locks out the guessers, not the admin at a desk they have signed in
from before. From an address never used before the lock holds, as it must against a guess spread
over many addresses. Memory is bounded: the oldest keys go first.

The interface is three calls (:meth:`~LoginThrottle.attempt`, :meth:`~LoginThrottle.succeed`,
:meth:`~LoginThrottle.fail`), the :class:`SignInThrottle` protocol, so that the state can move to
a shared store for a fleet (``actors/fleet_login_throttle.py``, the same rules counted in Redis).
They are ``async`` for that store's sake; here none of them awaits anything, so an attempt is
still checked and counted with no other task running in between.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from typing import Final, Literal, Protocol

from proxy.usernames import fold_username

USERNAME_LIMIT: Final = 5
ADDRESS_LIMIT: Final = 20
WINDOW_S: Final = 900.0
KNOWN_ADDRESS_S: Final = 30 * 86_400.0
MAX_KEYS: Final = 50_000
IN_PROGRESS_RETRY_S: Final = 1


class LoginRefused(Exception):
    """A sign-in that may not be tried now, and when to try again."""

    def __init__(self, reason: Literal["locked", "in_progress"], retry_after: int) -> None:
        super().__init__(f"sign-in refused ({reason}); retry in {retry_after} s")
        self.reason = reason
        self.retry_after = retry_after


class SignInThrottle(Protocol):
    """What the sign-in route asks: may this attempt be checked now, and how did it end."""

    async def attempt(self, username: str, address: str) -> bool:
        """Admit one attempt (counted as failed until it succeeds) and say whether the address
        is known for the user; :class:`LoginRefused` when it may not be tried now."""
        ...

    async def succeed(self, username: str, address: str) -> None:
        """The admitted attempt was right."""
        ...

    async def fail(self, username: str, address: str, *, checked: bool = True) -> None:
        """The admitted attempt was wrong, or (``checked=False``) never checked."""
        ...


class _Failures:
    """Failure times per key, oldest first, each with the other key of its attempt."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self.times: collections.OrderedDict[str, collections.deque[tuple[float, str]]] = (
            collections.OrderedDict()
        )

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may now."""
        recent = self._recent(key, now)
        if recent is None or len(recent) < self.limit:
            return 0.0
        return recent[-self.limit][0] + self.window_s - now

    def add(self, key: str, other: str, now: float) -> None:
        recent = self._recent(key, now)
        if recent is None:
            # Past the limit only attempts from known addresses are admitted; a few of them
            # are kept so that forgiving one pair cannot hide the others' failures.
            recent = collections.deque(maxlen=4 * self.limit)
            self.times[key] = recent
            while len(self.times) > MAX_KEYS:
                self.times.popitem(last=False)
        recent.append((now, other))
        self.times.move_to_end(key)

    def forgive(self, key: str, other: str) -> None:
        """Drop the failures of ``key`` that came with ``other``."""
        recent = self.times.get(key)
        if recent is None:
            return
        kept = [failure for failure in recent if failure[1] != other]
        if kept:
            recent.clear()
            recent.extend(kept)
        else:
            del self.times[key]

    def forget_newest(self, key: str, other: str) -> None:
        """Drop the newest failure of ``key`` that came with ``other`` (one not held against)."""
        recent = self.times.get(key)
        if recent is None:
            return
        for index in range(len(recent) - 1, -1, -1):
            if recent[index][1] == other:
                del recent[index]
                break
        if not recent:
            del self.times[key]

    def _recent(self, key: str, now: float) -> collections.deque[tuple[float, str]] | None:
        recent = self.times.get(key)
        if recent is None:
            return None
        while recent and recent[0][0] <= now - self.window_s:
            recent.popleft()
        if not recent:
            del self.times[key]
            return None
        return recent


class LoginThrottle:
    """Admits sign-in attempts one at a time per username and per address, within the limits."""

    def __init__(
        self,
        *,
        username_limit: int = USERNAME_LIMIT,
        address_limit: int = ADDRESS_LIMIT,
        window_s: float = WINDOW_S,
        known_address_s: float = KNOWN_ADDRESS_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._usernames = _Failures(username_limit, window_s)
        self._addresses = _Failures(address_limit, window_s)
        self._known_address_s = known_address_s
        # (username, address) -> until when the username lock does not apply to that address
        self._known: collections.OrderedDict[tuple[str, str], float] = collections.OrderedDict()
        self._checking_usernames: set[str] = set()
        self._checking_addresses: set[str] = set()
        self._clock = clock or time.monotonic

    async def attempt(self, username: str, address: str) -> bool:
        """Admit one sign-in, counted as failed until :meth:`succeed`, and say whether the
        address is known for the user; LoginRefused when it may not be tried now. Every
        admitted attempt ends with :meth:`succeed` or :meth:`fail`."""
        user = fold_username(username)
        now = self._clock()
        known = self._is_known(user, address, now)
        wait = self._addresses.retry_after(address, now)
        if not known:
            wait = max(wait, self._usernames.retry_after(user, now))
        if wait > 0:
            raise LoginRefused("locked", max(math.ceil(wait), 1))
        # A known address waits only for its own attempt: a guesser's attempt at the same
        # username in progress elsewhere does not turn the user away.
        if address in self._checking_addresses or (not known and user in self._checking_usernames):
            raise LoginRefused("in_progress", IN_PROGRESS_RETRY_S)
        self._usernames.add(user, address, now)
        self._addresses.add(address, user, now)
        self._checking_usernames.add(user)
        self._checking_addresses.add(address)
        return known

    async def succeed(self, username: str, address: str) -> None:
        """The attempt was right: the failures of this username at this address are forgiven
        (those from elsewhere stay), and the address becomes known for the username."""
        user = fold_username(username)
        self._end(user, address)
        self._usernames.forgive(user, address)
        self._addresses.forgive(address, user)
        self._known[(user, address)] = self._clock() + self._known_address_s
        self._known.move_to_end((user, address))
        while len(self._known) > MAX_KEYS:
            self._known.popitem(last=False)

    async def fail(self, username: str, address: str, *, checked: bool = True) -> None:
        """The attempt was wrong (or broke off): it stays counted. ``checked=False``: the
        password was never checked (the gateway was too busy), so nothing was learnt and the
        attempt is not held against anyone."""
        user = fold_username(username)
        self._end(user, address)
        if not checked:
            self._usernames.forget_newest(user, address)
            self._addresses.forget_newest(address, user)

    def _end(self, user: str, address: str) -> None:
        self._checking_usernames.discard(user)
        self._checking_addresses.discard(address)

    def _is_known(self, user: str, address: str, now: float) -> bool:
        until = self._known.get((user, address))
        if until is None:
            return False
        if until <= now:
            del self._known[(user, address)]
            return False
        return True
