"""The fleet's live feed: two gateways on one Redis and one database; each one's dashboard feed
shows the other's calls with its instance name, in few PUBLISHes, and nothing while nobody
watches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import coredis
import msgspec
import pytest
import trio

from actors.fleet_feed import FEED_CHANNEL, FeedBatch, FleetFeed
from actors.redis_link import RedisLink
from proxy.records import LiveCall, RequestRecord
from proxy.service import RunningService
from tests.conftest import StartGateway, sdk, signed_in
from tests.redis_server import RedisServer
from tests.test_api_live import bearer, feed, live, next_event


def fleet_config(redis: RedisServer, name: str) -> dict[str, Any]:
    return {
        "cluster": {"redis_url": redis.url, "instance_name": name},
        "limits": {"default_client_requests_per_minute": 0},
        "providers": {"ollama": {"enabled": False}},
    }


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def fleet_feed_of(gateway: RunningService) -> FleetFeed:
    fleet = gateway.gateway.fleet_feed
    assert fleet is not None
    return fleet


@pytest.fixture
async def fleet(start_gateway: StartGateway, redis: RedisServer) -> list[RunningService]:
    a = await start_gateway(fleet_config(redis, "a"))
    b = await start_gateway(fleet_config(redis, "b"))
    return [a, b]


async def ask(gateway: RunningService, text: str = "hello fleet") -> None:
    async with sdk(gateway) as client:
        await client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": text}]
        )


async def test_a_call_served_by_b_appears_on_as_feed_with_bs_name(
    fleet: list[RunningService],
) -> None:
    a, b = fleet
    async with signed_in(a) as admin, feed(a, bearer(admin)) as socket:
        await until(lambda: fleet_feed_of(b).statistics().audience)
        await ask(b)
        event = await next_event(socket, "request")
        assert (event["instance"], event["model"], event["status"]) == ("b", "mock", "ok")
        await ask(a)
        own = await next_event(socket, "request")
        assert own["instance"] == "a"  # this process's calls are named too
    assert fleet_feed_of(a).statistics().calls_relayed == 1
    assert fleet_feed_of(a).statistics().calls_published == 0  # nobody else watched


async def test_nobody_watching_anywhere_means_no_publishing(fleet: list[RunningService]) -> None:
    a, b = fleet
    for gateway in (a, b):
        await ask(gateway)
    await trio.sleep(0.3)  # longer than a batch interval and the relay's look for subscribers
    for gateway in (a, b):
        stats = fleet_feed_of(gateway).statistics()
        assert (stats.audience, stats.subscribed, stats.batches_published) == (False, False, 0)


def record(n: int) -> RequestRecord:
    return RequestRecord(
        request_id=f"req_{n}",
        ts_ms=n,
        client_id="cl",
        provider="mock",
        model="mock",
        upstream_model="mock",
        stream=False,
        status="ok",
        http_status=200,
        request_body="secret prompt",
        response_body="secret answer",
    )


class NoLocalFeed:
    """Nobody watches in this process: the feed only publishes."""

    subscribers = 0

    def publish(self, item: LiveCall) -> None:
        raise AssertionError("nothing is relayed without a local subscriber")


async def test_a_burst_goes_out_in_one_publish_without_bodies(
    nursery: trio.Nursery, redis: RedisServer
) -> None:
    link = RedisLink(redis.url, instance="busy")
    await nursery.start(link.run)
    fleet = FleetFeed(link, NoLocalFeed(), audience_s=0.05)
    await nursery.start(fleet.run)
    fleet.offer(record(0))  # nobody listens yet: not even buffered
    watcher: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
    async with watcher, watcher.pubsub(channels=[FEED_CHANNEL]) as messages:
        await until(lambda: fleet.statistics().audience)
        for n in range(1, 101):
            fleet.offer(record(n))
        with trio.fail_after(5):
            async for message in messages:
                if message["type"] == "message":
                    assert isinstance(message["data"], str)
                    batch = msgspec.json.decode(message["data"], type=FeedBatch)
                    break
    assert batch.instance == "busy"
    assert [call.request_id for call in batch.calls] == [f"req_{n}" for n in range(1, 101)]
    assert {(call.request_body, call.response_body) for call in batch.calls} == {(None, None)}
    stats = fleet.statistics()
    assert (stats.batches_published, stats.calls_published) == (1, 100)
    fleet.close()
    link.close()


async def test_the_fleet_feed_resumes_after_redis_comes_back(
    fleet: list[RunningService], redis: RedisServer
) -> None:
    a, b = fleet
    async with signed_in(a) as admin, feed(a, bearer(admin)) as socket:
        await until(lambda: fleet_feed_of(a).statistics().subscribed)
        redis.stop(kill=True)
        await until(lambda: not fleet_feed_of(a).statistics().subscribed)
        await ask(b)  # served while Redis is down: on B's own feed only
        assert redis.start()
        await until(lambda: fleet_feed_of(b).statistics().audience)
        await ask(b, "after the outage")
        event = await next_event(socket, "request")
        assert event["instance"] == "b"
    assert fleet_feed_of(a).statistics().calls_relayed == 1


async def test_a_burst_past_the_buffer_is_dropped_and_counted(
    nursery: trio.Nursery, redis: RedisServer
) -> None:
    link = RedisLink(redis.url, instance="busy")
    await nursery.start(link.run)
    fleet = FleetFeed(link, NoLocalFeed(), audience_s=0.05, buffer_size=10, max_batch=4)
    await nursery.start(fleet.run)
    watcher: coredis.Redis[str] = coredis.Redis.from_url(redis.url, decode_responses=True)
    async with watcher, watcher.pubsub(channels=[FEED_CHANNEL]) as messages:
        await until(lambda: fleet.statistics().audience)
        for n in range(25):
            fleet.offer(record(n))  # no checkpoint between: one burst
        received: list[str] = []
        with trio.fail_after(5):
            async for message in messages:
                if message["type"] == "message":
                    assert isinstance(message["data"], str)
                    batch = msgspec.json.decode(message["data"], type=FeedBatch)
                    received.extend(call.request_id for call in batch.calls)
                    if len(received) == 10:
                        break
    assert received == [f"req_{n}" for n in range(10)]
    stats = fleet.statistics()
    assert (stats.calls_published, stats.batches_published, stats.calls_dropped) == (10, 3, 15)
    fleet.close()
    link.close()


async def test_the_live_tiles_count_the_whole_fleet(
    fleet: list[RunningService], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = fleet
    monkeypatch.setattr(live, "METRICS_EVERY_S", 0.1)
    for _ in range(3):
        await ask(b)
    await ask(a)
    presence = a.gateway.presence
    assert presence is not None
    # A's view of B is as of B's last heartbeat.
    await until(lambda: [o.requests_per_min for o in presence.others()] == [3])
    async with signed_in(a) as admin, feed(a, bearer(admin)) as socket:
        tiles = await next_event(socket, "metrics")
    assert tiles["requests_per_min"] == 4  # A's one and B's three
