"""The fleet on the health page and ``/metrics``: the live instances (heartbeats), and the
degraded state while Redis is down — said by health, metrics, the banner's endpoint and
``/readyz`` — cleared when it is back."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest
import trio

from actors.fleet_presence import INSTANCES_KEY, FleetPresence
from actors.redis_link import RedisLink
from proxy.service import RunningService
from tests.conftest import StartGateway, signed_in
from tests.redis_server import RedisServer
from tests.test_fleet_feed import fleet_config, until


async def health(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/api/system/health")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def metric_lines(gateway: RunningService) -> list[str]:
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        answer = await client.get("/metrics")
    return answer.text.splitlines()


async def ready_status(gateway: RunningService) -> int:
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        return (await client.get("/readyz")).status_code


def link_up(gateway: RunningService) -> bool:
    link = gateway.gateway.redis
    assert link is not None
    return link.up


async def test_health_on_one_instance_lists_the_whole_fleet(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    a = await start_gateway(fleet_config(redis, "a"))
    b = await start_gateway(fleet_config(redis, "b"))
    async with signed_in(a) as admin:
        with trio.fail_after(10):
            while len((answer := await health(admin))["instances"]) < 2:
                await trio.sleep(0.1)
    assert [(i["name"], i["this"]) for i in answer["instances"]] == [("a", True), ("b", False)]
    assert {i["on_redis_down"] for i in answer["instances"]} == {"local"}
    assert answer["instance"] == "a"
    assert answer["redis"]["up"] is True
    lines = await metric_lines(a)
    assert 'llm_proxy_instance_info{instance="a"} 1' in lines
    assert "llm_proxy_redis_up 1" in lines
    # A graceful stop says goodbye: the others stop listing it at their next heartbeat.
    b.stop()
    await b.stopped.wait()
    async with signed_in(a) as admin:
        with trio.fail_after(10):
            while len((await health(admin))["instances"]) != 1:
                await trio.sleep(0.1)


async def test_redis_down_is_said_everywhere_then_cleared(
    start_gateway: StartGateway, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = await start_gateway(fleet_config(redis, "a"))
    caplog.clear()
    async with signed_in(a) as admin:
        redis.stop(kill=True)
        await until(lambda: not link_up(a))
        down = (await health(admin))["redis"]
        assert (down["up"], down["policy"], down["outages"]) == (False, "local", 1)
        assert isinstance(down["down_since_ms"], int)
        assert re.fullmatch(r"down since \S+Z, policy local", down["summary"])
        banner = (await admin.get("/api/system/cluster")).json()
        assert banner["instance"] == "a"
        assert (banner["redis"]["up"], banner["redis"]["policy"]) == (False, "local")
        lines = await metric_lines(a)
        assert "llm_proxy_redis_up 0" in lines
        assert "llm_proxy_redis_outages_total 1" in lines
        assert await ready_status(a) == 200  # "local": it still serves
        assert redis.start()
        await until(lambda: link_up(a))
    # This Redis came back without its data (no persistence), sessions included: sign in again.
    async with signed_in(a) as admin:
        back = (await health(admin))["redis"]
        assert (back["up"], back["down_since_ms"], back["summary"]) == (True, None, "up")
        assert "llm_proxy_redis_up 1" in await metric_lines(a)
    # One line when the outage starts and one when it ends; the fleet's parts add none.
    said = [(r.name, r.levelname) for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [("llm_proxy.redis", "ERROR"), ("llm_proxy.redis", "WARNING")], caplog.text


async def test_readyz_sends_traffic_elsewhere_while_refusing(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    config = fleet_config(redis, "a")
    config["cluster"]["on_redis_down"] = "refuse"
    a = await start_gateway(config)
    assert await ready_status(a) == 200
    redis.stop(kill=True)
    await until(lambda: not link_up(a))
    async with httpx.AsyncClient(base_url=a.base_url) as client:
        answer = await client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["problems"] == ["redis unreachable (on_redis_down = refuse)"]
    assert redis.start()
    await until(lambda: link_up(a))
    assert await ready_status(a) == 200


async def test_without_redis_the_instance_is_still_named(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"cluster": {"instance_name": "solo"}})
    async with signed_in(gateway) as admin:
        answer = await health(admin)
        banner = (await admin.get("/api/system/cluster")).json()
    assert (answer["instance"], answer["redis"]) == ("solo", None)
    assert [i["name"] for i in answer["instances"]] == ["solo"]
    assert banner == {"instance": "solo", "redis": None}
    lines = await metric_lines(gateway)
    # A single process's /metrics stays as it was: no fleet families.
    assert not any(line.startswith(("llm_proxy_redis_up", "llm_proxy_instance")) for line in lines)


async def test_two_processes_of_one_name_are_told(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    links = [RedisLink(redis.url, instance="twin") for _ in range(2)]
    twins = [
        FleetPresence(
            link, started_ms=0, version="1", in_flight=lambda: 0, heartbeat_s=0.05, host=f"h{n}"
        )
        for n, link in enumerate(links)
    ]
    async with trio.open_nursery() as outer:
        for link in links:
            await outer.start(link.run)
        async with trio.open_nursery() as inner:
            for presence in twins:
                await inner.start(presence.run)
            with trio.fail_after(10):
                while "also used by" not in caplog.text:
                    await trio.sleep(0.05)
            for presence in twins:
                presence.close()
        for link in links:
            link.close()
    warnings = {r.getMessage() for r in caplog.records if "also used by" in r.getMessage()}
    assert len(warnings) <= 2  # once per process, however many heartbeats
    assert any(message.startswith("fleet: instance name 'twin' is also") for message in warnings)


async def test_a_heartbeat_refused_by_redis_is_said_once_and_the_gateway_serves_on(
    start_gateway: StartGateway, redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a = await start_gateway(fleet_config(redis, "a"))
    presence = a.gateway.presence
    assert presence is not None
    link = a.gateway.redis
    assert link is not None
    # Someone else's value of another type where the index lives: ZADD answers WRONGTYPE.
    await link.call(lambda r: r.set(INSTANCES_KEY, "not a sorted set"))
    beats = presence.statistics().failed_heartbeats
    await until(lambda: presence.statistics().failed_heartbeats >= beats + 2)
    refused = [r for r in caplog.records if "heartbeat was refused" in r.getMessage()]
    assert len(refused) == 1
    assert "wrong kind of value" in refused[0].getMessage()
    assert await ready_status(a) == 200
    await link.call(lambda r: r.delete([INSTANCES_KEY]))
    await until(lambda: presence.statistics().heartbeats > 1)


async def test_the_settings_page_shows_cluster_with_the_redis_password_masked(
    start_gateway: StartGateway,
) -> None:
    # Nothing listens on port 1: the gateway starts anyway (on_redis_down applies).
    url = "redis://fleet:hunter2-redis-secret@127.0.0.1:1/0?password=hunter2-redis-secret"
    gateway = await start_gateway({"cluster": {"redis_url": url, "instance_name": "a"}})
    async with signed_in(gateway) as admin:
        answer = await admin.get("/api/settings")
    assert "hunter2" not in answer.text
    cluster = answer.json()["config"]["cluster"]
    assert cluster["redis_url"].startswith("redis://…@127.0.0.1:1/0?password=")
    assert (cluster["instance_name"], cluster["on_redis_down"]) == ("a", "local")
