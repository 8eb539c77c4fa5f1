"""FleetFeed: every instance's logged calls on every instance's live feed, through Redis pub/sub.

Each process publishes the calls it logs to one channel and relays the calls of the *other*
instances into its own live fan-out, so the dashboard and ``llm-proxy monitor`` on any process
show the whole fleet's calls. It costs nothing while nobody watches:

- this process subscribes only while it has live subscribers of its own;
- it publishes only while ``PUBSUB NUMSUB`` (checked every ``audience_s``, and after every publish
  from the count of receivers) says another process listens;
- the calls logged within ``batch_s`` go out in one PUBLISH, so a busy process makes a few round
  trips a second, not one per call.

Bounded everywhere: the outgoing buffer holds ``buffer_size`` calls and a burst past it is dropped
(counted); a failed publish drops its batch (counted); relayed calls enter the local fan-out,
where a slow subscriber loses events, never the logger. Bodies never leave the process.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final, Protocol

import coredis.exceptions
import coredis.retry
import msgspec
import trio

from actors.redis_link import KEY_PREFIX, UNREACHABLE, RedisDown, RedisLink
from proxy.records import LiveCall, RequestRecord

__all__ = ["FEED_CHANNEL", "FeedBatch", "FleetFeed", "FleetFeedStatistics", "LocalFeed"]

log = logging.getLogger("llm_proxy.fleet_feed")

FEED_CHANNEL: Final = KEY_PREFIX + "feed"
BATCH_S: Final = 0.05
MAX_BATCH: Final = 200
BUFFER_SIZE: Final = 2000
AUDIENCE_S: Final = 1.0
# How often an idle relay looks for a local subscriber: opening a feed shows the fleet within this.
WATCH_S: Final = 0.25
RETRY_S: Final = 1.0


class LocalFeed(Protocol):
    """This process's live fan-out (the RequestLogger's): who watches, and where relays go."""

    @property
    def subscribers(self) -> int:
        """How many live feeds are open in this process."""

    def publish(self, item: LiveCall) -> None:
        """Hand a call to every local subscriber; never waits."""


class FeedBatch(msgspec.Struct, frozen=True):
    """One PUBLISH: the calls one instance logged within a batch interval (bodies left out)."""

    instance: str
    calls: list[RequestRecord]


@dataclasses.dataclass(frozen=True, slots=True)
class FleetFeedStatistics:
    """For ``/metrics`` and the health page."""

    audience: bool  # another instance listens: this one publishes
    subscribed: bool  # this instance receives the others' calls
    batches_published: int
    calls_published: int
    calls_relayed: int  # other instances' calls handed to the local feed
    calls_dropped: int  # buffer full, or Redis did not take the batch
    malformed: int  # messages on the channel that were not a batch


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(FeedBatch).decode


class FleetFeed:
    """Publishes this instance's calls and relays the other instances' into the local feed."""

    def __init__(
        self,
        link: RedisLink,
        local: LocalFeed,
        *,
        batch_s: float = BATCH_S,
        max_batch: int = MAX_BATCH,
        buffer_size: int = BUFFER_SIZE,
        audience_s: float = AUDIENCE_S,
        watch_s: float = WATCH_S,
    ) -> None:
        self._link = link
        self._local = local
        self._instance = link.instance
        self._batch_s = batch_s
        self._max_batch = max_batch
        self._buffer_size = buffer_size
        self._audience_s = audience_s
        self._watch_s = watch_s
        self._buffer: list[RequestRecord] = []
        self._queued = trio.Event()
        self._closed = trio.Event()
        self._audience = False
        self._subscribed = False
        self._refusal_said = False
        self._subscription_failure_said = False
        self._batches = self._published = self._relayed = self._dropped = self._malformed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish, watch the audience and relay until :meth:`close`."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._publish_batches)
            nursery.start_soon(self._watch_audience)
            nursery.start_soon(self._relay_while_watched)
            task_status.started()
            await self._closed.wait()
            nursery.cancel_scope.cancel()

    def close(self) -> None:
        """Stop; calls still buffered are not sent (a live view, not a log)."""
        self._closed.set()

    def offer(self, record: RequestRecord) -> None:
        """A call this instance logged (from the logger, never waits): queued for the fleet
        when someone elsewhere watches."""
        if not self._audience or not self._link.up:
            return
        if len(self._buffer) >= self._buffer_size:
            self._dropped += 1
            return
        if record.request_body is not None or record.response_body is not None:
            record = dataclasses.replace(record, request_body=None, response_body=None)
        self._buffer.append(record)
        self._queued.set()

    def statistics(self) -> FleetFeedStatistics:
        """Counters since start, and whether it publishes and receives now."""
        return FleetFeedStatistics(
            audience=self._audience,
            subscribed=self._subscribed,
            batches_published=self._batches,
            calls_published=self._published,
            calls_relayed=self._relayed,
            calls_dropped=self._dropped,
            malformed=self._malformed,
        )

    # -- publishing -------------------------------------------------------------------------------

    async def _publish_batches(self) -> None:
        while True:
            await self._queued.wait()
            # Whatever else is logged meanwhile goes in the same PUBLISH.
            if len(self._buffer) < self._max_batch:
                await trio.sleep(self._batch_s)
            self._queued = trio.Event()
            while self._buffer:
                batch = self._buffer[: self._max_batch]
                del self._buffer[: self._max_batch]
                await self._publish(batch)

    async def _publish(self, batch: list[RequestRecord]) -> None:
        payload = _encode(FeedBatch(self._instance, batch)).decode()
        try:
            receivers = await self._link.call(lambda r: r.publish(FEED_CHANNEL, payload))
        except RedisDown:
            self._dropped += len(batch)
            return
        except coredis.exceptions.RedisError as exc:
            # Answered with an error (an ACL without this channel): a live view is not worth
            # stopping the gateway for; said once.
            self._dropped += len(batch)
            self._refused(exc)
            return
        self._refusal_said = False
        self._batches += 1
        self._published += len(batch)
        # Only our own subscription heard it: nobody else watches any more.
        if receivers <= (1 if self._subscribed else 0):
            self._audience = False

    async def _watch_audience(self) -> None:
        while True:
            self._audience = await self._someone_else_listens()
            await trio.sleep(self._audience_s)

    async def _someone_else_listens(self) -> bool:
        if not self._link.up:
            return False
        try:
            counts = await self._link.call(lambda r: r.pubsub_numsub(FEED_CHANNEL))
        except RedisDown:
            return False
        except coredis.exceptions.RedisError as exc:
            self._refused(exc)
            return False
        own = 1 if self._subscribed else 0
        return counts.get(FEED_CHANNEL, 0) > own

    def _refused(self, exc: coredis.exceptions.RedisError) -> None:
        if not self._refusal_said:
            self._refusal_said = True
            log.error("fleet feed: refused by redis: %s", exc)

    # -- relaying ---------------------------------------------------------------------------------

    async def _relay_while_watched(self) -> None:
        while True:
            await self._until_watched()
            try:
                await self._relay()
            except Exception as exc:
                cause = _unreachable(exc)
                if cause is not None:
                    self._link.failed(cause)
                elif not self._subscription_failure_said:
                    # Said once until a subscription works again: retried every RETRY_S.
                    self._subscription_failure_said = True
                    log.exception("fleet feed: the subscription failed; retrying")
                await trio.sleep(RETRY_S)
            finally:
                self._subscribed = False

    async def _relay(self) -> None:
        """Subscribed while this process has live subscribers."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._until_unwatched, nursery.cancel_scope)
            async with self._link.client.pubsub(
                channels=[FEED_CHANNEL],
                ignore_subscribe_messages=True,
                # The link's probe decides when Redis is back, not coredis' endless retries.
                retry_policy=coredis.retry.NoRetryPolicy(),
            ) as messages:
                self._subscribed = True
                self._subscription_failure_said = False
                async for message in messages:
                    if message["type"] == "message":
                        self._take(message["data"])

    async def _until_watched(self) -> None:
        # Polled: the fan-out is the logger's and tells nobody when a subscriber comes or goes.
        while True:
            if self._local.subscribers and self._link.up:
                return
            await trio.sleep(self._watch_s)

    async def _until_unwatched(self, subscription: trio.CancelScope) -> None:
        while True:
            await trio.sleep(self._watch_s)
            if not self._local.subscribers:
                subscription.cancel()
                return

    def _take(self, data: object) -> None:
        try:
            batch = _decode(data if isinstance(data, str | bytes) else b"")
        except msgspec.DecodeError:
            self._malformed += 1
            return
        if batch.instance == self._instance:
            return
        for record in batch.calls:
            self._local.publish(LiveCall.of(record, batch.instance))
            self._relayed += 1


def _unreachable(exc: BaseException) -> BaseException | None:
    """The error saying Redis is not there, also from inside the subscription's task group."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (cause := _unreachable(inner)) is not None:
                return cause
        return None
    return exc if isinstance(exc, UNREACHABLE) else None
