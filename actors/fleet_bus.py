"""ChangeBus: a change made by one process of the fleet reaches every other within a second.

Each process keeps what it serves from in memory (the key table, sessions' users, the dashboard's
provider and model overrides). A process that changes one of them in the database applies the
change itself and announces it here (:meth:`ChangeBus.publish`, which never blocks: the actor's
task sends it); every other process hears it on one Redis pub/sub channel and runs the follower
registered for that kind, which re-reads the database. A process skips its own announcements.

Pub/sub forgets what it sent while a subscriber was away, so there is a safety net: every
follower runs every ``full_reload_s`` (more often while Redis is down), whenever the
subscription is re-established, and, in the other processes, when an announcement this one could
not send is replaced by an "everything changed" one once Redis is back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, Literal, get_args

import coredis.exceptions
import coredis.retry
import trio

from actors.redis_link import KEY_PREFIX, UNREACHABLE, Client, RedisDown, RedisLink

__all__ = [
    "CHANNEL",
    "ChangeBus",
    "ChangeBusStatistics",
    "ChangeKind",
    "Follower",
    "encode_change",
]

log = logging.getLogger("llm_proxy.fleet_bus")

CHANNEL: Final = KEY_PREFIX + "changes"
ChangeKind = Literal["clients", "users", "providers", "models"]
KINDS: Final[frozenset[str]] = frozenset(get_args(ChangeKind))
EVERYTHING: Final = "*"  # the kind of an announcement that makes every follower run
FULL_RELOAD_S: Final = 30.0
# While Redis is down announcements cannot travel: the periodic reload carries changes instead.
DOWN_RELOAD_S: Final = 2.0
INBOX_SIZE: Final = 256

Follower = Callable[[str | None], Awaitable[None]]
"""Re-reads one kind of state: the thing named (None: all of that kind)."""


def encode_change(instance: str, kind: str, name: str | None) -> str:
    """The message announcing a change of ``kind`` (``name``; None: all) by ``instance``."""
    return json.dumps({"instance": instance, "kind": kind, "name": name})


@dataclasses.dataclass(frozen=True, slots=True)
class ChangeBusStatistics:
    """For health and metrics."""

    subscribed: bool
    published: int
    unsent: int  # announcements lost to an outage or a full inbox (covered by a full reload)
    received: int  # announcements from other processes acted on
    full_reloads: int
    follower_failures: int


class ChangeBus:
    """Announces this process's changes; runs a follower for every change of another process."""

    def __init__(
        self,
        link: RedisLink,
        followers: Mapping[str, Follower],
        *,
        full_reload_s: float = FULL_RELOAD_S,
        down_reload_s: float = DOWN_RELOAD_S,
    ) -> None:
        self._link = link
        self._followers = dict(followers)
        self._full_reload_s = full_reload_s
        self._down_reload_s = down_reload_s
        self._send, self._inbox = trio.open_memory_channel[tuple[str, str | None]](INBOX_SIZE)
        self._closed = trio.Event()
        self._wake_reloader = trio.Event()  # a reload is due, or the period changed
        self._reload_due = False
        self._link_up = trio.Event()
        self._subscription: trio.CancelScope | None = None
        self._subscribed = False
        self._lost = False  # an announcement was not sent: send "everything" once Redis is back
        self._published = self._unsent = self._received = 0
        self._full_reloads = self._failures = 0
        link.on_change(self._link_changed)

    def publish(self, kind: str, name: str | None = None) -> None:
        """Announce that this process changed ``kind`` (a :data:`ChangeKind`) named ``name``
        (None: several); never blocks."""
        try:
            self._send.send_nowait((kind, name))
        except (trio.WouldBlock, trio.ClosedResourceError):
            # A burst past the inbox (or a change during shutdown): one "everything" later
            # carries all of them.
            self._unsent += 1
            self._lost = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send announcements, follow other processes' and reload periodically, until closed."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_announcements)
            nursery.start_soon(self._follow_announcements)
            nursery.start_soon(self._reload_periodically)
            task_status.started()
            await self._closed.wait()
            nursery.cancel_scope.cancel()

    def close(self) -> None:
        """Stop; announcements still queued are not sent (the others' full reload covers them)."""
        self._closed.set()

    def statistics(self) -> ChangeBusStatistics:
        """Subscribed or not, and counts of announcements and reloads."""
        return ChangeBusStatistics(
            subscribed=self._subscribed,
            published=self._published,
            unsent=self._unsent,
            received=self._received,
            full_reloads=self._full_reloads,
            follower_failures=self._failures,
        )

    # -- sending ---------------------------------------------------------------------------------

    async def _send_announcements(self) -> None:
        instance = self._link.instance
        said_down = False
        async for kind, name in self._inbox:
            message = encode_change(instance, kind, name)
            try:
                await self._link.call(_publishing(message))
            except RedisDown:
                self._unsent += 1
                self._lost = True
                if not said_down:
                    said_down = True
                    # The link has said the outage (one line per outage): this is its detail.
                    log.info(
                        "fleet bus: redis is down, so changes made here reach the other "
                        "processes within their periodic reload (%g s) instead of at once",
                        self._down_reload_s,
                    )
                continue
            said_down = False
            self._published += 1

    async def _announce_everything(self) -> None:
        """After an outage: the others missed what this process changed meanwhile."""
        self._lost = False
        try:
            await self._link.call(_publishing(encode_change(self._link.instance, EVERYTHING, None)))
        except RedisDown:
            self._lost = True

    # -- following -------------------------------------------------------------------------------

    async def _follow_announcements(self) -> None:
        first = True
        said_down = False
        while True:
            if not self._link.up:
                self._link_up = trio.Event()
                await self._link_up.wait()
            failed: BaseException | None = None
            try:
                with trio.CancelScope() as self._subscription:
                    async with self._link.client.pubsub(
                        channels=[CHANNEL],
                        ignore_subscribe_messages=True,
                        # Reconnecting is ours to see: messages sent meanwhile are lost, so a
                        # new subscription is followed by a full reload.
                        retry_policy=coredis.retry.NoRetryPolicy(),
                    ) as subscription:
                        self._subscribed = True
                        if not first:
                            log.info("fleet bus: subscribed again; reloading everything")
                            self._reload_everything()
                        if self._lost:
                            await self._announce_everything()
                        first = said_down = False
                        async for message in subscription:
                            await self._received_message(message.get("data"))
            except* (*UNREACHABLE, coredis.exceptions.RedisError) as group:
                failed = _first_leaf(group)
            finally:
                self._subscribed = False
                self._subscription = None
            if failed is not None:
                self._link.failed(failed)
                if not said_down:
                    said_down = True
                    log.info(
                        "fleet bus: subscription lost (%s); changes made elsewhere arrive "
                        "within %g s until it is back",
                        type(failed).__name__,
                        self._down_reload_s,
                    )
            first = False
            await trio.sleep(self._down_reload_s / 4)

    async def _received_message(self, data: object) -> None:
        try:
            change = json.loads(str(data))
            instance, kind, name = change["instance"], change["kind"], change["name"]
        except (ValueError, TypeError, KeyError):
            log.warning("fleet bus: ignored a message that is not a change: %.200r", data)
            return
        if instance == self._link.instance:
            return  # this process applied its own change already
        if kind == EVERYTHING:
            self._reload_everything()
            return
        follower = self._followers.get(kind)
        if follower is None:
            # A kind a newer version announces, or one nothing here keeps in memory.
            log.debug("fleet bus: no follower for %r changes", kind)
            return
        self._received += 1
        await self._run_follower(kind, follower, name if isinstance(name, str) else None)

    # -- the safety net --------------------------------------------------------------------------

    async def _reload_periodically(self) -> None:
        while True:
            period = self._full_reload_s if self._link.up else self._down_reload_s
            with trio.move_on_after(period) as timer:
                await self._wake_reloader.wait()
            self._wake_reloader = trio.Event()
            if not (timer.cancelled_caught or self._reload_due):
                continue  # the link went down: wait again, with the shorter period
            self._reload_due = False
            self._full_reloads += 1
            for kind, follower in self._followers.items():
                await self._run_follower(kind, follower, None)

    async def _run_follower(self, kind: str, follower: Follower, name: str | None) -> None:
        try:
            await follower(name)
        except Exception:
            # A briefly unreadable database: the next announcement or full reload tries again.
            self._failures += 1
            log.exception("fleet bus: reloading %s failed", kind)

    def _reload_everything(self) -> None:
        self._reload_due = True
        self._wake_reloader.set()

    def _link_changed(self, up: bool) -> None:
        if up:
            self._link_up.set()
            # Whatever was announced while this process could not hear it is re-read now.
            self._reload_everything()
            return
        self._wake_reloader.set()  # reload on the outage's shorter period from now
        if self._subscription is not None:
            # The subscription's socket may look open to a dead peer: start over once up.
            self._subscription.cancel()


def _publishing(message: str) -> Callable[[Client], Awaitable[int]]:
    """The round trip that publishes ``message`` on :data:`CHANNEL`."""

    async def publish(client: Client) -> int:
        return await client.publish(CHANNEL, message)

    return publish


def _first_leaf(group: BaseException) -> BaseException:
    """The first exception of ``group`` that is not itself a group (coredis nests them)."""
    while isinstance(group, BaseExceptionGroup) and group.exceptions:
        group = group.exceptions[0]
    return group
