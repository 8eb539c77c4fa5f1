"""The ground issue 18 builds on: a real ``redis-server`` started by the tests, and ``coredis``
(the design's client) driving it natively on trio — commands, a server-side script (the shape
of the fleet-wide token bucket), a pipelined batch (one round trip for many admissions) and
pub/sub (change notification) between two clients."""

from __future__ import annotations

from collections.abc import Iterator

import coredis
import pytest
import trio

from tests.redis_server import running_redis

# Take `amount` from a bucket of `capacity` if it holds that much: atomic on the server.
TAKE = """
local held = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if held < tonumber(ARGV[2]) then return -1 end
redis.call('SET', KEYS[1], held - tonumber(ARGV[2]))
return held - tonumber(ARGV[2])
"""


@pytest.fixture
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url


async def test_commands_and_a_script_run_on_trio(redis_url: str) -> None:
    client: coredis.Redis[str] = coredis.Redis.from_url(redis_url, decode_responses=True)
    async with client:
        await client.set("greeting", "hello")
        assert await client.get("greeting") == "hello"
        take = client.register_script(TAKE)
        assert await take(keys=["bucket"], args=[10, 4]) == 6
        assert await take(keys=["bucket"], args=[10, 4]) == 2
        assert await take(keys=["bucket"], args=[10, 4]) == -1  # refused, nothing taken
        assert await client.get("bucket") == "2"


async def test_a_pipeline_is_one_round_trip_for_many_commands(redis_url: str) -> None:
    client: coredis.Redis[str] = coredis.Redis.from_url(redis_url, decode_responses=True)
    async with client:
        async with client.pipeline(transaction=False) as pipe:
            counts = [pipe.incr("calls") for _ in range(50)]
        assert [await count for count in counts] == list(range(1, 51))


async def test_pub_sub_reaches_another_client(redis_url: str) -> None:
    publisher: coredis.Redis[str] = coredis.Redis.from_url(redis_url, decode_responses=True)
    subscriber: coredis.Redis[str] = coredis.Redis.from_url(redis_url, decode_responses=True)
    async with publisher, subscriber, subscriber.pubsub(channels=["changes"]) as pubsub:
        with trio.fail_after(5):
            while not await publisher.publish("changes", "client cl_1 revoked"):
                await trio.sleep(0.01)  # until the subscription is in place
            async for message in pubsub:
                if message["type"] == "message":
                    assert message["data"] == "client cl_1 revoked"
                    break
