"""Issue 18's fleet: two and three real ``llm-proxy serve`` processes on one Redis and one database.

Limits are exact across the processes, a change made through one reaches the others within a
second, sessions and the live feed are the fleet's, and a Redis outage costs no call (policy
"local") or is refused plainly (policy "refuse"), with exact limits back once Redis is.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import trio
from trio_websocket import open_websocket_url

from tests.fakes.openai_upstream import DEFAULT_API_KEY, Echo, FakeOpenAI
from tests.fleet import (
    admin_token,
    chat,
    create_client,
    running_fleet,
    write_fleet_config,
)
from tests.process import CLIENT_KEY, ServerProcess, read_rows
from tests.redis_server import RedisServer


def _config(tmp_path: Path, fake: FakeOpenAI, redis: RedisServer, **options: object) -> Path:
    return write_fleet_config(
        tmp_path / "config.toml",
        upstream_url=fake.base_url,
        upstream_key=DEFAULT_API_KEY,
        redis_url=redis.url,
        **options,  # type: ignore[arg-type]
    )


async def test_a_client_at_30_rpm_gets_exactly_30_of_90_calls_over_three_processes(
    fake_openai: FakeOpenAI, redis: RedisServer, tmp_path: Path
) -> None:
    config = _config(tmp_path, fake_openai, redis)
    database = tmp_path / "gateway.db"
    async with running_fleet(config, database, tmp_path, 3) as servers:
        key = await create_client(config, database, "thirty", "--rpm", "30")
        statuses: list[int] = []
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(n: int) -> None:
                statuses.append((await chat(client, servers[n % 3], key)).status_code)

            async with trio.open_nursery() as nursery:
                for n in range(90):
                    nursery.start_soon(one, n)
    assert sorted(statuses) == [200] * 30 + [429] * 60


async def test_a_token_budget_holds_under_40_concurrent_calls_over_two_processes(
    fake_openai: FakeOpenAI, redis: RedisServer, tmp_path: Path
) -> None:
    budget = 2_000
    config = _config(tmp_path, fake_openai, redis)
    database = tmp_path / "gateway.db"
    # Each answer is slow enough that no call settles before the others are admitted.
    fake_openai.enqueue(*[Echo(chunks=4, chunk_interval_s=0.1)] * 40)
    async with running_fleet(config, database, tmp_path, 2) as servers:
        key = await create_client(config, database, "budget", "--rpm", "0", "--tpm", str(budget))
        answers: list[httpx.Response] = []
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(n: int) -> None:
                answers.append(
                    await client.post(
                        f"{servers[n % 2].url}/v1/chat/completions",
                        json={
                            "model": "fast",
                            "max_tokens": 200,
                            "messages": [{"role": "user", "content": "hello budget"}],
                        },
                        headers={"authorization": f"Bearer {key}"},
                    )
                )

            async with trio.open_nursery() as nursery:
                for n in range(40):
                    nursery.start_soon(one, n)
    served = [answer for answer in answers if answer.status_code == 200]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert served
    assert len(served) + len(refused) == 40
    # Each call reserved its prompt's estimate and its max_tokens: the admitted reservations fit
    # the budget, so the tokens spent do too.
    assert len(served) * 200 <= budget
    assert sum(answer.json()["usage"]["total_tokens"] for answer in served) <= budget
    assert all(answer.headers["x-ratelimit-limit-tokens"] == str(budget) for answer in refused)


async def test_a_key_revoked_through_one_process_is_refused_by_the_others_within_a_second(
    fake_openai: FakeOpenAI, redis: RedisServer, tmp_path: Path
) -> None:
    config = _config(tmp_path, fake_openai, redis)
    database = tmp_path / "gateway.db"
    async with running_fleet(config, database, tmp_path, 3) as servers:
        first, *others = servers
        token = await admin_token(first, database)
        async with httpx.AsyncClient(
            base_url=first.url, timeout=10, headers={"authorization": f"Bearer {token}"}
        ) as admin:
            made = await admin.post("/api/clients", json={"name": "soon-revoked"})
            assert made.status_code == 201, made.text
            key, client_id, key_id = made.json()["token"], made.json()["id"], made.json()["key"]
            async with httpx.AsyncClient(timeout=10) as client:
                for server in servers:
                    # Created on the first: known to the others within a second too.
                    with trio.fail_after(1):
                        while (await chat(client, server, key)).status_code != 200:
                            await trio.sleep(0.02)
                revoked = await admin.delete(f"/api/clients/{client_id}/tokens/{key_id['id']}")
                assert revoked.status_code == 200, revoked.text
                started = time.monotonic()
                for server in others:
                    with trio.fail_after(1):
                        while (await chat(client, server, key)).status_code != 401:
                            await trio.sleep(0.02)
                assert time.monotonic() - started < 1


async def test_a_session_from_one_process_is_valid_on_another_and_ends_everywhere(
    fake_openai: FakeOpenAI, redis: RedisServer, tmp_path: Path
) -> None:
    config = _config(tmp_path, fake_openai, redis)
    database = tmp_path / "gateway.db"
    async with running_fleet(config, database, tmp_path, 2) as (one, two):
        bearer = {"authorization": f"Bearer {await admin_token(one, database)}"}
        async with httpx.AsyncClient(timeout=10, headers=bearer) as client:
            assert (await client.get(f"{two.url}/api/auth/status")).status_code == 200
            assert (await client.get(f"{two.url}/api/clients")).status_code == 200
            assert (await client.post(f"{two.url}/api/auth/logout")).status_code == 200
            for server in (one, two):
                assert (await client.get(f"{server.url}/api/clients")).status_code == 401


async def test_the_live_feed_on_one_process_shows_calls_served_by_another(
    fake_openai: FakeOpenAI, redis: RedisServer, tmp_path: Path
) -> None:
    config = _config(tmp_path, fake_openai, redis)
    database = tmp_path / "gateway.db"
    async with running_fleet(config, database, tmp_path, 2) as (watched, serving):
        token = await admin_token(watched, database)
        url = watched.url.replace("http://", "ws://", 1) + "/api/ws"
        headers = [(b"authorization", f"Bearer {token}".encode())]
        async with (
            open_websocket_url(url, extra_headers=headers, disconnect_timeout=2) as feed,
            httpx.AsyncClient(timeout=10) as client,
        ):
            with trio.fail_after(10):
                seen: dict[str, object] | None = None
                while seen is None:
                    # Until the feed's subscription is in place, calls may go unseen.
                    answer = await chat(client, serving, CLIENT_KEY)
                    assert answer.status_code == 200
                    with trio.move_on_after(0.5):
                        while seen is None:
                            frame = json.loads(await feed.get_message())
                            if frame["type"] == "request":
                                seen = frame
        served_by = _instance_of(serving)
        assert seen is not None
        assert seen["instance"] == served_by
        assert served_by != _instance_of(watched)


def _instance_of(server: ServerProcess) -> str:
    """The instance name a process logged at start (``instance=NAME``)."""
    for line in server.lines:
        match = re.search(r"instance=(\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("no instance= in the start lines")


async def test_redis_killed_mid_load_costs_no_call_and_exact_limits_come_back(
    fake_openai: FakeOpenAI, redis: RedisServer, tmp_path: Path
) -> None:
    config = _config(tmp_path, fake_openai, redis)
    database = tmp_path / "gateway.db"
    calls = 120
    async with running_fleet(config, database, tmp_path, 2) as servers:
        # Limited, so that every admission goes through Redis, but never reached.
        key = await create_client(config, database, "steady", "--rpm", "100000")
        statuses: list[int] = []
        async with httpx.AsyncClient(timeout=30) as client:

            async def one(n: int) -> None:
                statuses.append((await chat(client, servers[n % 2], key)).status_code)

            async with trio.open_nursery() as nursery:
                for n in range(calls):
                    nursery.start_soon(one, n)
                    if n == calls // 3:
                        redis.stop(kill=True)
                    await trio.sleep(0.01)
            assert statuses == [200] * calls
            for server in servers:
                metrics = (await client.get(f"{server.url}/metrics")).text
                assert "llm_proxy_redis_up 0" in metrics
                assert "redis: unreachable" in server.stderr
            assert redis.start()
            for server in servers:
                with trio.fail_after(5):
                    while (
                        "llm_proxy_redis_up 1"
                        not in (await client.get(f"{server.url}/metrics")).text
                    ):
                        await trio.sleep(0.05)
            # Exact again across the processes, without a restart.
            five = await create_client(config, database, "five", "--rpm", "5")
            again: list[int] = []

            async def limited(n: int) -> None:
                again.append((await chat(client, servers[n % 2], five)).status_code)

            async with trio.open_nursery() as nursery:
                for n in range(15):
                    nursery.start_soon(limited, n)
            assert sorted(again) == [200] * 5 + [429] * 10
    # Nothing logged was lost, outage or not.
    assert len(read_rows(database)) == calls + 15


async def test_with_refuse_calls_get_503_and_retry_after_while_redis_is_down(
    fake_openai: FakeOpenAI, redis: RedisServer, tmp_path: Path
) -> None:
    config = _config(tmp_path, fake_openai, redis, on_redis_down="refuse")
    database = tmp_path / "gateway.db"
    async with running_fleet(config, database, tmp_path, 2) as servers:
        key = await create_client(config, database, "strict", "--rpm", "100")
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await chat(client, servers[0], key)).status_code == 200
            redis.stop(kill=True)
            refusals = 0
            for server in servers:
                refused = await chat(client, server, key)
                refusals += 1
                assert refused.status_code == 503, refused.text
                assert int(refused.headers["retry-after"]) >= 1
                assert "redis" in refused.json()["error"]["message"].lower()
            assert redis.start()
            with trio.fail_after(5):
                while (answer := await chat(client, servers[1], key)).status_code != 200:
                    assert answer.status_code == 503
                    refusals += 1
                    await trio.sleep(0.05)
    # Every refusal is in the log, as any other answer.
    rows = read_rows(database)
    assert sum(1 for row in rows.values() if row["http_status"] == 503) == refusals
