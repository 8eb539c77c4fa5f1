"""Two gateways on one Redis and one database: a change made through either one's dashboard API,
or by the CLI, is in force on the other within a second."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import httpx
import openai
import trio
from openai.types.chat import ChatCompletionMessageParam

from proxy.keys import key_digest
from proxy.service import RunningService
from tests.conftest import StartGateway, sdk, signed_in
from tests.redis_server import RedisServer
from tests.test_cli import clean_env, run_cli

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there gateway"}]


async def _fleet(start_gateway: StartGateway, redis: RedisServer) -> tuple[RunningService, ...]:
    """Gateways "a" and "b" (the mock provider answers model "mock"), both following changes."""
    fleet = tuple(
        [
            await start_gateway({"cluster": {"redis_url": redis.url, "instance_name": name}})
            for name in ("a", "b")
        ]
    )
    for gateway in fleet:
        await _within(5.0, partial(_subscribed, gateway))
    return fleet


async def _subscribed(gateway: RunningService) -> bool:
    bus = gateway.gateway.changes
    assert bus is not None
    return bus.statistics().subscribed


async def _within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    """Wait until ``check()`` holds; fail after ``seconds``; return how long it took."""
    start = trio.current_time()
    with trio.fail_after(seconds):
        while not await check():
            await trio.sleep(0.02)
    return trio.current_time() - start


async def _answers(gateway: RunningService, key: str) -> bool:
    try:
        await sdk(gateway, key=key).chat.completions.create(model="mock", messages=HELLO)
    except openai.AuthenticationError:
        return False
    return True


async def _refuses(gateway: RunningService, key: str) -> bool:
    return not await _answers(gateway, key)


async def _new_key(admin: httpx.AsyncClient) -> tuple[str, str, int]:
    made = await admin.post("/api/clients", json={"name": "billing app"})
    assert made.status_code == 201, made.text
    body = made.json()
    return body["id"], body["token"], body["key"]["id"]


async def test_a_key_revoked_through_one_gateway_is_refused_by_the_other_within_a_second(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    a, b = await _fleet(start_gateway, redis)
    async with signed_in(a) as admin:
        client_id, token, key_id = await _new_key(admin)
        assert await _within(1.0, partial(_answers, b, token)) < 1.0
        revoked = await admin.delete(f"/api/clients/{client_id}/tokens/{key_id}")
        assert revoked.status_code == 200, revoked.text
    assert await _within(1.0, partial(_refuses, b, token)) < 1.0
    bus = b.gateway.changes
    assert bus is not None
    assert bus.statistics().received >= 2


async def test_a_provider_disabled_and_a_price_changed_on_one_gateway_apply_on_the_other(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    a, b = await _fleet(start_gateway, redis)

    async def b_refuses_mock() -> bool:
        try:
            await sdk(b).chat.completions.create(model="mock", messages=HELLO)
        except openai.APIStatusError as exc:
            return exc.status_code == 503 and exc.code == "provider_disabled"
        return False

    async with signed_in(a) as admin_a, signed_in(b) as admin_b:

        async def b_price_source() -> object:
            listed = (await admin_b.get("/api/models")).json()["data"]
            return {m["id"]: m for m in listed}["mock"]["price_source"]

        assert await b_price_source() != "dashboard"
        off = await admin_a.put("/api/providers/mock", json={"enabled": False})
        assert off.status_code == 200, off.text
        await _within(1.0, b_refuses_mock)
        on = await admin_a.put("/api/providers/mock", json={"enabled": True})
        assert on.status_code == 200, on.text
        await _within(1.0, lambda: _negated(b_refuses_mock))

        priced = await admin_a.put(
            "/api/models/mock", json={"input_per_mtok": 1000, "output_per_mtok": 2000}
        )
        assert priced.status_code == 200, priced.text

        async def b_priced_by_dashboard() -> bool:
            return await b_price_source() == "dashboard"

        await _within(1.0, b_priced_by_dashboard)

        # An override removed from the database (by another version, or by hand) is removed
        # on the others too.
        await a.gateway.writer.execute(
            lambda conn: conn.execute("DELETE FROM model_settings WHERE model = 'mock'")
        )
        bus = a.gateway.changes
        assert bus is not None
        bus.publish("models", "mock")
        await _within(1.0, lambda: _negated(b_priced_by_dashboard))


async def _negated(check: Callable[[], Awaitable[bool]]) -> bool:
    return not await check()


async def test_a_key_revoked_by_the_cli_is_refused_by_a_running_gateway_within_a_second(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    a, b = await _fleet(start_gateway, redis)
    async with signed_in(a) as admin:
        _, token, key_id = await _new_key(admin)
    await _within(1.0, partial(_answers, b, token))
    database = b.gateway.config.server.database
    env = clean_env(LLM_PROXY_REDIS_URL=redis.url)
    result = await trio.to_thread.run_sync(
        lambda: run_cli("clients", "revoke", str(key_id), "--database", database, env=env)
    )
    assert result.returncode == 0, result.stderr
    assert "could not tell" not in result.stderr
    assert await _within(1.0, partial(_refuses, b, token)) < 1.0
    assert await _refuses(a, token)


async def test_the_cli_still_succeeds_when_redis_is_down_and_says_when_gateways_see_it(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    (a,) = [await start_gateway({"cluster": {"redis_url": redis.url, "instance_name": "a"}})]
    async with signed_in(a) as admin:
        _, token, key_id = await _new_key(admin)
    directory = a.gateway.directory
    assert directory.lookup(key_digest(token)) is not None
    redis.stop(kill=True)
    env = clean_env(LLM_PROXY_REDIS_URL=redis.url)
    database = a.gateway.config.server.database
    result = await trio.to_thread.run_sync(
        lambda: run_cli("clients", "revoke", str(key_id), "--database", database, env=env)
    )
    assert result.returncode == 0, result.stderr
    assert f"revoked key {key_id}" in result.stdout
    assert "could not tell running gateways through redis" in result.stderr
    assert "periodic reload" in result.stderr
    # The gateway, also cut off from Redis, reloads on its own within the outage period
    # (looked up in its key table: a call every 20 ms would meet the client's rate limit).

    async def forgotten() -> bool:
        return directory.lookup(key_digest(token)) is None

    await _within(5.0, forgotten)


async def test_a_password_reset_by_the_cli_ends_sessions_on_a_running_gateway_within_a_second(
    start_gateway: StartGateway, redis: RedisServer
) -> None:
    (a,) = [await start_gateway({"cluster": {"redis_url": redis.url, "instance_name": "a"}})]
    async with signed_in(a) as admin:
        assert (await admin.get("/api/auth/status")).status_code == 200
        env = clean_env(LLM_PROXY_REDIS_URL=redis.url)
        database = a.gateway.config.server.database
        result = await trio.to_thread.run_sync(
            lambda: run_cli("users", "reset-password", "admin", "--database", database, env=env)
        )
        assert result.returncode == 0, result.stderr

        async def signed_out() -> bool:
            return (await admin.get("/api/clients")).status_code == 401

        assert await _within(1.0, signed_out) < 1.0
