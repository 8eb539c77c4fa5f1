"""The change bus on a real Redis: another process's change runs this one's follower within a
second, its own does not; everything is reloaded when the link comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import trio

from actors.fleet_bus import ChangeBus, Follower
from actors.redis_link import RedisLink
from tests.redis_server import RedisServer


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


def _recording(seen: list[tuple[str, str | None]], kind: str) -> Follower:
    async def follow(name: str | None) -> None:
        seen.append((kind, name))

    return follow


def _followers(seen: list[tuple[str, str | None]]) -> dict[str, Follower]:
    return {kind: _recording(seen, kind) for kind in ("clients", "users", "providers", "models")}


@asynccontextmanager
async def _bus(
    url: str,
    instance: str,
    followers: Mapping[str, Follower],
    *,
    full_reload_s: float = 3600,
    down_reload_s: float = 0.2,
) -> AsyncIterator[ChangeBus]:
    """A bus on its own link, closed in the service's order: the bus, then the link."""
    link = RedisLink(url, instance=instance, probe_s=0.05)
    async with trio.open_nursery() as links:
        await links.start(link.run)
        async with trio.open_nursery() as buses:
            bus = ChangeBus(
                link, followers, full_reload_s=full_reload_s, down_reload_s=down_reload_s
            )
            await buses.start(bus.run)
            try:
                yield bus
            finally:
                bus.close()
        link.close()


async def test_a_change_reaches_the_other_process_within_a_second_and_not_its_own(
    redis: RedisServer,
) -> None:
    seen_a: list[tuple[str, str | None]] = []
    seen_b: list[tuple[str, str | None]] = []
    async with (
        _bus(redis.url, "a", _followers(seen_a)) as bus_a,
        _bus(redis.url, "b", _followers(seen_b)) as bus_b,
    ):
        await _until(lambda: bus_a.statistics().subscribed and bus_b.statistics().subscribed)
        bus_a.publish("clients", "cl_1")
        bus_a.publish("models", "fast")
        start = trio.current_time()
        await _until(lambda: len(seen_b) == 2)
        assert trio.current_time() - start < 1.0
        assert seen_b == [("clients", "cl_1"), ("models", "fast")]
        await trio.sleep(0.2)
        assert seen_a == []  # its own changes are applied where they are made
        assert bus_a.statistics().published == 2
        assert bus_b.statistics().received == 2


async def test_everything_is_reloaded_when_redis_comes_back(redis: RedisServer) -> None:
    seen: list[tuple[str, str | None]] = []
    async with _bus(redis.url, "a", _followers(seen)) as bus:
        await _until(lambda: bus.statistics().subscribed)
        redis.stop(kill=True)
        await _until(lambda: not bus.statistics().subscribed)
        seen.clear()
        assert redis.start()
        await _until(lambda: bus.statistics().subscribed)
        # Every kind re-read in full: what was announced meanwhile never arrived.
        await _until(lambda: {kind for kind, name in seen if name is None} >= {"clients", "models"})


async def test_a_change_made_while_redis_was_down_reaches_the_others_afterwards(
    redis: RedisServer,
) -> None:
    seen_b: list[tuple[str, str | None]] = []
    # b reloads in full only every hour, also while Redis is down: what it learns, it learns
    # from a's "everything changed" once Redis is back.
    async with (
        _bus(redis.url, "a", {}) as bus_a,
        _bus(redis.url, "b", _followers(seen_b), down_reload_s=3600) as bus_b,
    ):
        await _until(lambda: bus_a.statistics().subscribed and bus_b.statistics().subscribed)
        redis.stop(kill=True)
        await _until(lambda: not bus_a.statistics().subscribed)
        bus_a.publish("clients", "cl_1")  # lost: Redis is down
        await _until(lambda: bus_a.statistics().unsent == 1)
        assert redis.start()
        await _until(lambda: ("clients", None) in seen_b, timeout=10)


async def test_a_failing_follower_does_not_stop_the_bus(redis: RedisServer) -> None:
    calls: list[str | None] = []

    async def broken(name: str | None) -> None:
        calls.append(name)
        raise RuntimeError("database is locked")

    followers: dict[str, Callable[[str | None], Awaitable[None]]] = {"clients": broken}
    async with _bus(redis.url, "a", {}) as bus_a, _bus(redis.url, "b", followers) as bus_b:
        await _until(lambda: bus_a.statistics().subscribed and bus_b.statistics().subscribed)
        bus_a.publish("clients", "cl_1")
        bus_a.publish("clients", "cl_2")
        await _until(lambda: calls == ["cl_1", "cl_2"])
        assert bus_b.statistics().follower_failures == 2


async def test_the_bus_survives_the_link_noticing_an_outage_before_the_subscription(
    redis: RedisServer,
) -> None:
    seen: list[tuple[str, str | None]] = []
    async with _bus(redis.url, "a", {}) as bus_a, _bus(redis.url, "b", _followers(seen)) as bus_b:
        for _ in range(5):
            await _until(lambda: bus_a.statistics().subscribed and bus_b.statistics().subscribed)
            redis.stop(kill=True)
            bus_a.publish("clients", "cl_1")  # the sender meets the outage first
            await _until(lambda: not bus_a.statistics().subscribed)
            assert redis.start()
        await _until(lambda: bus_a.statistics().subscribed and bus_b.statistics().subscribed)
        seen.clear()
        bus_a.publish("users", "admin")
        await _until(lambda: ("users", "admin") in seen)
