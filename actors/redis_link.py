"""RedisLink: the one client of the fleet's Redis in this process, and whether Redis answers.

Every part that shares state through Redis (the fleet limiter, sessions, change notification,
the fleet's live feed, instance heartbeats) makes its round trips through :meth:`RedisLink.call`,
which puts a deadline on each and turns any failure into :class:`RedisDown`. The first failure
marks the link down (one log line, a counter, the health page); while it is down a probe pings
Redis every second, and the first answer marks it up again, so exact fleet-wide behaviour
resumes without a restart. What a part does while Redis is down is the ``on_redis_down`` policy
(:attr:`RedisLink.refuses`): serve on from this process's memory, or refuse with 503.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Final, Literal, TypeVar

import coredis
import coredis.exceptions
import trio

__all__ = [
    "KEY_PREFIX",
    "UNREACHABLE",
    "RedisDown",
    "RedisLink",
    "RedisLinkStatistics",
    "default_instance_name",
]

log = logging.getLogger("llm_proxy.redis")

T = TypeVar("T")

# Every key and channel the gateway uses starts with this, so it can share a Redis database.
KEY_PREFIX: Final = "llm-proxy:"
PROBE_EVERY_S: Final = 1.0
# A healthy Redis answers in well under a millisecond on a LAN: a second is an outage.
ROUND_TRIP_TIMEOUT_S: Final = 1.0

Client = coredis.Redis[str]
# What a round trip raises when Redis is not there (TimeoutError is an OSError; a Redis still
# loading its data raises a ConnectionError too).
UNREACHABLE: Final = (trio.TooSlowError, OSError, coredis.exceptions.ConnectionError)


class RedisDown(Exception):
    """Redis did not answer (refused, reset, timed out, or the link is known to be down)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RedisLinkStatistics:
    """For ``/metrics`` and the health page."""

    up: bool
    down_since: float | None  # wall clock (s) of the outage in progress
    outages: int  # times the link went down since start
    failed_calls: int  # round trips that failed or were not tried because the link was down
    calls: int


def default_instance_name() -> str:
    """``<hostname>:<pid>``: unique per process, readable in logs and the dashboard."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RedisLink:
    """The client, a deadline on every round trip, the up/down state and the probe."""

    def __init__(
        self,
        url: str,
        *,
        instance: str,
        on_down: Literal["local", "refuse"] = "local",
        timeout_s: float = ROUND_TRIP_TIMEOUT_S,
        probe_s: float = PROBE_EVERY_S,
    ) -> None:
        self.instance = instance
        self.refuses = on_down == "refuse"
        self._url = url
        self._timeout_s = timeout_s
        self._probe_s = probe_s
        # The pool's own retries would hide an outage behind seconds of reconnecting: one try,
        # and the link's probe decides when Redis is back.
        self._client: Client = coredis.Redis.from_url(
            url,
            decode_responses=True,
            connect_timeout=timeout_s,
            stream_timeout=timeout_s,
            retry_policy=coredis.retry.NoRetryPolicy(),
        )
        self._up = False
        self._down_since: float | None = time.time()
        self._outages = self._failed = self._calls = 0
        self._wake = trio.Event()
        self._closed = trio.Event()
        self._changed: list[Callable[[bool], None]] = []

    @property
    def up(self) -> bool:
        """Whether the last round trip (or probe) succeeded."""
        return self._up

    @property
    def client(self) -> Client:
        """The coredis client, for what :meth:`call` cannot express (a pub/sub subscription);
        its failures must be reported with :meth:`failed`."""
        return self._client

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(up)`` whenever the link goes down or comes back (on the trio thread)."""
        self._changed.append(listener)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect (an unreachable Redis does not stop the start: the policy applies), then probe
        while Redis is down, until :meth:`close`."""
        async with self._client:
            await self._probe()
            if not self._up:
                log.warning(
                    "redis: not reachable at start; %s until it answers",
                    self._policy_words(),
                )
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._probe_while_down)
                await self._closed.wait()
                nursery.cancel_scope.cancel()

    def close(self) -> None:
        """Stop probing; :meth:`run` closes the client and returns."""
        self._closed.set()

    async def call(self, operation: Callable[[Client], Awaitable[T]]) -> T:
        """``operation(client)`` within the deadline; :class:`RedisDown` when Redis does not
        answer (at once while the link is known to be down: a probe watches for its return)."""
        self._calls += 1
        if not self._up:
            self._failed += 1
            raise RedisDown("redis is unreachable")
        try:
            with trio.fail_after(self._timeout_s):
                return await operation(self._client)
        except UNREACHABLE as exc:
            self.failed(exc)
            raise RedisDown(f"redis did not answer: {_describe(exc)}") from exc

    def failed(self, exc: BaseException) -> None:
        """Note a failed round trip: the link is down until the probe gets an answer."""
        self._failed += 1
        if self._up:
            self._set(False)
            log.error(
                "redis: unreachable (%s); %s until it answers", _describe(exc), self._policy_words()
            )
        self._wake.set()

    def statistics(self) -> RedisLinkStatistics:
        """Up or down, since when, outages and calls so far."""
        return RedisLinkStatistics(
            up=self._up,
            down_since=self._down_since,
            outages=self._outages,
            failed_calls=self._failed,
            calls=self._calls,
        )

    def _policy_words(self) -> str:
        if self.refuses:
            return "calls are refused with 503"
        return "serving with this process's own limits and sessions"

    def _set(self, up: bool) -> None:
        self._up = up
        if up:
            self._down_since = None
        else:
            self._down_since = time.time()
            self._outages += 1
        for listener in self._changed:
            listener(up)

    async def _probe(self) -> None:
        try:
            with trio.fail_after(self._timeout_s):
                await self._client.ping()
        except UNREACHABLE as exc:
            log.debug("redis: probe failed: %s", _describe(exc))
            return
        except coredis.exceptions.RedisError as exc:
            # Answered, but refused us (a wrong password, a protected mode): not an outage that
            # fixes itself, so said each time the probe meets it.
            log.error("redis: %s", _describe(exc))
            return
        if not self._up:
            was_down = self._down_since is not None and self._outages > 0
            self._set(True)
            if was_down:
                log.warning("redis: reachable again; limits and sessions are fleet-wide again")
            else:
                log.info("redis: connected")

    async def _probe_while_down(self) -> None:
        while True:
            if self._up:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            await trio.sleep(self._probe_s)
            await self._probe()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    # coredis' messages name the host and port, never the URL's password.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
