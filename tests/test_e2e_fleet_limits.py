"""Rate limits across two gateways sharing one Redis, end to end through the official SDK: one
fleet-wide budget, its headers on either gateway, and a 503 while Redis is down under "refuse"."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import StartGateway, http, sdk
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI
from tests.redis_server import RedisServer

HI: Any = [{"role": "user", "content": "hi"}]


def _fleet_config(fake: FakeOpenAI, redis_url: str, **cluster: str) -> dict[str, Any]:
    return {
        "providers": {
            "openai": {"base_url": fake.base_url, "api_key": DEFAULT_API_KEY, "timeout_s": 5}
        },
        "models": {"fast": {"provider": "openai", "model": "gpt-4o-mini"}},
        "limits": {"default_client_requests_per_minute": 6},
        "cluster": {"redis_url": redis_url, **cluster},
    }


async def _statuses(gateway: RunningService, calls: int) -> list[int]:
    statuses: list[int] = []

    async def one() -> None:
        try:
            await sdk(gateway).chat.completions.create(model="fast", messages=HI)
            statuses.append(200)
        except openai.APIStatusError as exc:
            statuses.append(exc.status_code)

    async with trio.open_nursery() as nursery:
        for _ in range(calls):
            nursery.start_soon(one)
    return statuses


async def test_two_gateways_share_one_budget(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, redis: RedisServer
) -> None:
    a = await start_gateway(_fleet_config(fake_openai, redis.url, instance_name="a"))
    b = await start_gateway(_fleet_config(fake_openai, redis.url, instance_name="b"))
    first = await _statuses(a, 4)
    assert first == [200] * 4
    # The model list spends nothing and shows what the other gateway spent.
    listed = await sdk(b).models.with_raw_response.list()
    assert listed.headers["x-ratelimit-limit-requests"] == "6"
    assert listed.headers["x-ratelimit-remaining-requests"] == "2"
    second = await _statuses(b, 6)
    assert sorted(second) == [200, 200, 429, 429, 429, 429]
    with pytest.raises(openai.RateLimitError) as denied:
        await sdk(a).chat.completions.create(model="fast", messages=HI)
    assert int(denied.value.response.headers["retry-after"]) >= 1
    assert denied.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    stats = a.gateway.limiter.statistics()
    assert stats.round_trips >= 1
    assert stats.decided_locally == 0


async def test_redis_down_under_refuse_is_a_503_naming_the_cause(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, redis: RedisServer
) -> None:
    gateway = await start_gateway(_fleet_config(fake_openai, redis.url, on_redis_down="refuse"))
    assert await _statuses(gateway, 1) == [200]
    redis.stop(kill=True)
    with pytest.raises(openai.InternalServerError) as refused:
        await sdk(gateway).chat.completions.create(model="fast", messages=HI)
    response = refused.value.response
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == "rate_limit_store_unavailable"
    assert "Redis" in error["message"]
    async with http(gateway) as client:
        metrics = (await client.get("/metrics")).text
    assert "llm_proxy_rate_limit_refused_store_down_total 1" in metrics


async def test_redis_down_under_local_serves_on(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, redis: RedisServer
) -> None:
    gateway = await start_gateway(_fleet_config(fake_openai, redis.url))
    redis.stop(kill=True)
    assert await _statuses(gateway, 3) == [200] * 3
    assert gateway.gateway.limiter.statistics().decided_locally == 3
