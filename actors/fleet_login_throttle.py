"""FleetLoginThrottle: :class:`~proxy.login_throttle.LoginThrottle`'s rules, counted in Redis.

With N processes behind one address, an in-memory throttle would give a password guesser N
times the attempts (and N attempts checked at once). Here every attempt, forgiveness and known
address is one Lua script on the fleet's Redis, so the limits, the windows, the lock-outs and
"one attempt at a time per username and per address" hold for the fleet as for one process.

Usernames (folded) and addresses appear in keys only as SHA-256 digests: Redis holds no list of
who tried to sign in from where, and an attacker's megabyte-long "username" costs 32 bytes.
Failure lists expire with their window and known addresses with their ``known_address_s``; an
attempt in progress holds a lease (:data:`IN_PROGRESS_LEASE_S`), so a process that dies while
checking a password does not lock its user out for longer than that.

Redis down: under ``on_redis_down = "local"`` this process counts in its own memory (an attacker
gets this process's limits, per process, until Redis is back; the attempt ends where it
started); under ``"refuse"`` a sign-in is answered 503 with ``retry-after``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable
from typing import Final

from actors.redis_answers import AnsweringLink
from actors.redis_link import KEY_PREFIX, RedisDown, RedisLink
from proxy.errors import UpstreamUnavailable
from proxy.login_throttle import (
    ADDRESS_LIMIT,
    IN_PROGRESS_RETRY_S,
    KNOWN_ADDRESS_S,
    MAX_KEYS,
    USERNAME_LIMIT,
    WINDOW_S,
    LoginRefused,
    LoginThrottle,
)
from proxy.usernames import fold_username

PREFIX: Final = KEY_PREFIX + "{login}:"
# Longer than any password check (argon2 and a wait for a sign-in slot take well under this).
IN_PROGRESS_LEASE_S: Final = 30.0
RETRY_AFTER_S: Final = 1

# Failure lists hold "<ms>|<digest of the other key>", oldest first.
_HELPERS: Final = """
local function time_of(entry)
  return tonumber(string.sub(entry, 1, string.find(entry, '|', 1, true) - 1))
end
local function other_of(entry)
  return string.sub(entry, string.find(entry, '|', 1, true) + 1)
end
local function rewrite(key, entries)
  local left = redis.call('PTTL', key)
  redis.call('DEL', key)
  if #entries > 0 then
    redis.call('RPUSH', key, unpack(entries))
    if left > 0 then redis.call('PEXPIRE', key, left) end
  end
end
"""

# ARGV: user failures, address failures, known, user lease, address lease, now (ms), window (ms),
# user limit, address limit, user digest, address digest, lease (ms).
# Returns {"ok", "1"/"0" known} | {"locked", wait ms} | {"in_progress", ""}.
ATTEMPT: Final = (
    _HELPERS
    + """
local now, window = tonumber(ARGV[6]), tonumber(ARGV[7])
local function wait(key, limit)
  while true do
    local head = redis.call('LINDEX', key, 0)
    if not head or time_of(head) > now - window then break end
    redis.call('LPOP', key)
  end
  local count = redis.call('LLEN', key)
  if count < limit then return 0 end
  return time_of(redis.call('LINDEX', key, count - limit)) + window - now
end
local until_ms = tonumber(redis.call('GET', ARGV[3]) or '0')
local known = until_ms > now
local waited = wait(ARGV[2], tonumber(ARGV[9]))
if not known then waited = math.max(waited, wait(ARGV[1], tonumber(ARGV[8]))) end
if waited > 0 then return {'locked', tostring(waited)} end
if redis.call('EXISTS', ARGV[5]) == 1 or (not known and redis.call('EXISTS', ARGV[4]) == 1) then
  return {'in_progress', ''}
end
local function add(key, other, limit)
  redis.call('RPUSH', key, ARGV[6] .. '|' .. other)
  redis.call('LTRIM', key, -4 * limit, -1)
  redis.call('PEXPIRE', key, window)
end
add(ARGV[1], ARGV[11], tonumber(ARGV[8]))
add(ARGV[2], ARGV[10], tonumber(ARGV[9]))
redis.call('SET', ARGV[4], '1', 'PX', ARGV[12])
redis.call('SET', ARGV[5], '1', 'PX', ARGV[12])
if known then return {'ok', '1'} end
return {'ok', '0'}
"""
)

# ARGV: user failures, address failures, known, user lease, address lease, user digest,
# address digest, known until (ms), known for (ms).
SUCCEED: Final = (
    _HELPERS
    + """
redis.call('DEL', ARGV[4], ARGV[5])
local function forgive(key, other)
  local kept = {}
  for _, entry in ipairs(redis.call('LRANGE', key, 0, -1)) do
    if other_of(entry) ~= other then table.insert(kept, entry) end
  end
  rewrite(key, kept)
end
forgive(ARGV[1], ARGV[7])
forgive(ARGV[2], ARGV[6])
redis.call('SET', ARGV[3], ARGV[8], 'PX', ARGV[9])
return 1
"""
)

# ARGV: user failures, address failures, user lease, address lease, user digest, address digest,
# checked "1"/"0".
FAIL: Final = (
    _HELPERS
    + """
redis.call('DEL', ARGV[3], ARGV[4])
if ARGV[7] == '1' then return 1 end
local function forget_newest(key, other)
  local entries = redis.call('LRANGE', key, 0, -1)
  for i = #entries, 1, -1 do
    if other_of(entries[i]) == other then
      table.remove(entries, i)
      rewrite(key, entries)
      return
    end
  end
end
forget_newest(ARGV[1], ARGV[6])
forget_newest(ARGV[2], ARGV[5])
return 1
"""
)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class FleetLoginThrottle:
    """The :class:`~proxy.login_throttle.SignInThrottle` of a fleet: counted in Redis, in this
    process's memory while Redis is down (under ``on_redis_down = "local"``)."""

    def __init__(
        self,
        link: RedisLink,
        *,
        username_limit: int = USERNAME_LIMIT,
        address_limit: int = ADDRESS_LIMIT,
        window_s: float = WINDOW_S,
        known_address_s: float = KNOWN_ADDRESS_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._link = link
        self._redis = AnsweringLink(link, "sign-in counts")
        self._username_limit = username_limit
        self._address_limit = address_limit
        self._window_ms = int(window_s * 1000)
        self._known_ms = int(known_address_s * 1000)
        # Wall clock: the failure times are compared by every process of the fleet.
        self._clock = clock or time.time
        self._local = LoginThrottle(
            username_limit=username_limit,
            address_limit=address_limit,
            window_s=window_s,
            known_address_s=known_address_s,
            clock=clock,
        )
        # Attempts admitted by the local throttle: they end there too.
        self._local_attempts: set[tuple[str, str]] = set()
        client = link.client
        self._attempt = client.register_script(ATTEMPT)
        self._succeed = client.register_script(SUCCEED)
        self._fail = client.register_script(FAIL)

    async def attempt(self, username: str, address: str) -> bool:
        """Admit one attempt fleet-wide (counted as failed until it succeeds) and say whether
        the address is known for the user; :class:`LoginRefused` when it may not be tried now."""
        keys = _Keys(username, address)
        args = [
            *keys.attempt(),
            str(self._now_ms()),
            str(self._window_ms),
            str(self._username_limit),
            str(self._address_limit),
            keys.user,
            keys.address,
            str(int(IN_PROGRESS_LEASE_S * 1000)),
        ]
        try:
            answer: list[str] = await self._redis.call(lambda _: self._attempt(args=args))
        except RedisDown:
            return await self._attempt_locally(keys.pair, username, address)
        verdict, detail = (str(part) for part in answer)
        if verdict == "locked":
            raise LoginRefused("locked", max(math.ceil(int(float(detail)) / 1000), 1))
        if verdict == "in_progress":
            raise LoginRefused("in_progress", IN_PROGRESS_RETRY_S)
        return detail == "1"

    async def succeed(self, username: str, address: str) -> None:
        """The attempt was right: its username's failures at this address are forgiven and the
        address becomes known for the username, on every process."""
        keys = _Keys(username, address)
        if keys.pair in self._local_attempts:
            self._local_attempts.discard(keys.pair)
            await self._local.succeed(username, address)
            return
        args = [
            *keys.attempt(),
            keys.user,
            keys.address,
            str(self._now_ms() + self._known_ms),
            str(self._known_ms),
        ]
        # Redis down: its failures stay counted and its lease runs out; nothing is given away.
        with contextlib.suppress(RedisDown):
            await self._redis.call(lambda _: self._succeed(args=args))

    async def fail(self, username: str, address: str, *, checked: bool = True) -> None:
        """The attempt was wrong (it stays counted) or, ``checked=False``, never checked (not
        held against anyone)."""
        keys = _Keys(username, address)
        if keys.pair in self._local_attempts:
            self._local_attempts.discard(keys.pair)
            await self._local.fail(username, address, checked=checked)
            return
        args = [*keys.failures(), *keys.leases(), keys.user, keys.address, str(int(checked))]
        # Redis down: counted as a failure already, and the lease runs out.
        with contextlib.suppress(RedisDown):
            await self._redis.call(lambda _: self._fail(args=args))

    async def _attempt_locally(self, pair: tuple[str, str], username: str, address: str) -> bool:
        if self._link.refuses:
            raise UpstreamUnavailable(
                "Sign-ins are counted in Redis, which is unreachable; try again in a moment.",
                code="redis_unavailable",
                headers={"retry-after": str(RETRY_AFTER_S)},
            )
        known = await self._local.attempt(username, address)
        self._local_attempts.add(pair)
        if len(self._local_attempts) > MAX_KEYS:  # attempts always end; a bound all the same
            self._local_attempts.pop()
        return known

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


class _Keys:
    """The Redis keys of one attempt's username and address."""

    def __init__(self, username: str, address: str) -> None:
        self.user = _digest(fold_username(username))
        self.address = _digest(address)
        self.pair = (self.user, self.address)

    def failures(self) -> list[str]:
        return [f"{PREFIX}f:u:{self.user}", f"{PREFIX}f:a:{self.address}"]

    def leases(self) -> list[str]:
        return [f"{PREFIX}c:u:{self.user}", f"{PREFIX}c:a:{self.address}"]

    def attempt(self) -> list[str]:
        return [*self.failures(), f"{PREFIX}k:{self.user}:{self.address}", *self.leases()]
