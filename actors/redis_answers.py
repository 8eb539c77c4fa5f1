"""A round trip to the fleet's Redis where an error answer counts, for its caller, as no answer.

:meth:`RedisLink.call <actors.redis_link.RedisLink.call>` turns silence (refused, reset, timed
out) into :class:`~actors.redis_link.RedisDown`. A Redis can also answer every write with an
error while it answers pings: a replica after a failover (READONLY), one out of memory (OOM), a
script it refuses. The sessions and the sign-in throttle then take their ``on_redis_down`` path
(this process's memory, or a 503) instead of failing the dashboard's request with a 500; the
error is logged (at most once a minute per caller), and the next round trip tries Redis again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import coredis.exceptions

from actors.redis_link import Client, RedisDown, RedisLink

log = logging.getLogger("llm_proxy.redis")

T = TypeVar("T")
LOG_EVERY_S: Final = 60.0


class AnsweringLink:
    """``call`` through a :class:`RedisLink`, error answers raised as :class:`RedisDown`."""

    def __init__(self, link: RedisLink, what: str) -> None:
        self._link = link
        self._what = what
        self._logged_at = -LOG_EVERY_S
        self.errors = 0

    async def call(self, operation: Callable[[Client], Awaitable[T]]) -> T:
        """``operation`` within the link's deadline; :class:`RedisDown` if Redis did not answer
        or answered with an error."""
        try:
            return await self._link.call(operation)
        except coredis.exceptions.RedisError as exc:
            self.errors += 1
            now = time.monotonic()
            if now - self._logged_at >= LOG_EVERY_S:
                self._logged_at = now
                log.error(
                    "redis: %s refused (%s: %s); this process's own %s meanwhile",
                    self._what,
                    type(exc).__name__,
                    exc,
                    self._what,
                )
            raise RedisDown(f"redis answered with an error: {type(exc).__name__}") from exc
