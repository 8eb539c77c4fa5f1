"""RedisLink against a real Redis that goes away and comes back: the state it reports, a deadline
on every round trip, and recovery without a restart."""

from __future__ import annotations

import pytest
import trio

from actors.redis_link import RedisDown, RedisLink
from tests.conftest import StartGateway
from tests.redis_server import RedisServer


async def _until(predicate: object, timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.01)


async def test_calls_go_through_and_an_outage_is_seen_then_mended(redis: RedisServer) -> None:
    link = RedisLink(redis.url, instance="test:1", probe_s=0.05)
    changes: list[bool] = []
    link.on_change(changes.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        assert link.up
        assert await link.call(lambda r: r.incr("n")) == 1
        redis.stop(kill=True)
        with pytest.raises(RedisDown):
            await link.call(lambda r: r.incr("n"))
        assert not link.up
        with pytest.raises(RedisDown):  # known down: refused at once, no connection tried
            await link.call(lambda r: r.incr("n"))
        assert redis.start()
        await _until(lambda: link.up)
        assert await link.call(lambda r: r.incr("n")) == 1  # a new Redis, empty
        stats = link.statistics()
        assert (stats.outages, stats.failed_calls, stats.down_since) == (1, 2, None)
        link.close()
    assert changes == [True, False, True]


async def test_an_unreachable_redis_does_not_stop_the_start(redis: RedisServer) -> None:
    redis.stop()
    link = RedisLink(redis.url, instance="test:1", probe_s=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        assert not link.up
        assert redis.start()
        await _until(lambda: link.up)
        link.close()


async def test_the_gateway_runs_its_link_and_starts_without_redis(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    with_redis = await start_gateway({"cluster": {"redis_url": redis.url, "instance_name": "a"}})
    link = with_redis.gateway.redis
    assert link is not None
    assert link.up
    assert with_redis.gateway.instance == "a"
    redis.stop()
    # Unreachable at start: the gateway starts anyway (the on_redis_down policy applies).
    without = await start_gateway({"cluster": {"redis_url": redis.url}})
    assert without.gateway.redis is not None
    assert not without.gateway.redis.up
