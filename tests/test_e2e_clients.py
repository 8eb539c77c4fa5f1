"""Client keys and rate limits end to end: the CLI beside a live server, the SDK's exceptions."""

from __future__ import annotations

import logging
import sys
from functools import partial
from pathlib import Path

import openai
import pytest
import trio

from proxy.service import RunningService
from storage.queries import client_usage
from tests.conftest import StartGateway, http, sdk

HELLO = [{"role": "user", "content": "hello there gateway"}]
SEEN_WITHIN_S = 1.0


async def cli(gateway: RunningService, *args: str) -> str:
    """Run ``llm-proxy clients ...`` in another process against the server's database."""
    database = gateway.gateway.config.server.database
    result = await trio.run_process(
        [sys.executable, "-m", "proxy.cli", "clients", *args, "--database", database],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().strip()


async def accepted(gateway: RunningService, key: str) -> bool:
    """Whether a call with ``key`` gets through (False on 401)."""
    try:
        await sdk(gateway, key=key).chat.completions.create(model="mock", messages=HELLO)
    except openai.AuthenticationError:
        return False
    return True


async def becomes(gateway: RunningService, key: str, expected: bool) -> float:
    """Seconds until the server's answer to ``key`` becomes ``expected``."""
    started = trio.current_time()
    with trio.fail_after(5):
        while await accepted(gateway, key) != expected:
            await trio.sleep(0.05)
    return trio.current_time() - started


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> RunningService:
    return await start_gateway()


async def test_cli_changes_reach_a_running_server_within_a_second(
    gateway: RunningService,
) -> None:
    key = await cli(gateway, "create", "team-a", "--rpm", "100")
    assert key.startswith("sk-")
    assert await becomes(gateway, key, True) < SEEN_WITHIN_S
    listing = await cli(gateway, "list")
    client_id = listing.split()[0]
    assert client_id.startswith("cl_")
    await cli(gateway, "revoke", client_id)
    assert await becomes(gateway, key, False) < SEEN_WITHIN_S


async def test_revoked_key_is_401_while_the_clients_other_key_works(
    gateway: RunningService,
) -> None:
    first = await cli(gateway, "create", "team-b")
    client_id = (await cli(gateway, "list")).split()[0]
    second = await cli(gateway, "add-key", client_id)
    key_id = (await cli(gateway, "keys", client_id)).splitlines()[0].split()[0]
    await cli(gateway, "revoke", key_id)
    await becomes(gateway, first, False)
    assert await accepted(gateway, second)
    with pytest.raises(openai.AuthenticationError) as caught:
        await sdk(gateway, key=first).chat.completions.create(model="mock", messages=HELLO)
    assert caught.value.code == "invalid_api_key"


async def test_rate_limit_headers_and_429_with_retry_after(gateway: RunningService) -> None:
    key = await cli(gateway, "create", "limited", "--rpm", "3")
    await becomes(gateway, key, True)  # that call spent one of the three
    client = sdk(gateway, key=key)
    raw = await client.chat.completions.with_raw_response.create(model="mock", messages=HELLO)
    assert raw.headers["x-ratelimit-limit-requests"] == "3"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    await client.chat.completions.create(model="mock", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="mock", messages=HELLO)
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"


async def test_exactly_the_budget_gets_through_under_concurrency(
    gateway: RunningService,
) -> None:
    key = await cli(gateway, "create", "burst", "--rpm", "20")
    await becomes(gateway, key, True)  # 19 left
    statuses: list[int] = []

    async def call(client: object) -> None:
        response = await client.post(  # type: ignore[attr-defined]
            "/v1/chat/completions",
            json={"model": "mock", "messages": HELLO},
            headers={"authorization": f"Bearer {key}"},
        )
        statuses.append(response.status_code)

    async with http(gateway) as client, trio.open_nursery() as nursery:
        for _ in range(60):
            nursery.start_soon(call, client)
    assert statuses.count(200) == 19
    assert statuses.count(429) == 41


async def test_tokens_per_minute_are_reserved_at_admission_and_settled_with_the_usage(
    gateway: RunningService,
) -> None:
    key = await cli(gateway, "create", "thrifty", "--tpm", "40")
    # Without max_tokens a call reserves its prompt's estimate plus as much of the default
    # answer as the budget holds: all 40. "echo: hello there gateway" then settles at 3 + 4 = 7.
    await becomes(gateway, key, True)
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk(gateway, key=key).chat.completions.create(model="mock", messages=HELLO)
    assert "tokens per minute" in caught.value.message
    headers = caught.value.response.headers
    assert headers["x-ratelimit-limit-tokens"] == "40"
    assert 33 <= int(headers["x-ratelimit-remaining-tokens"]) < 40  # 40 - 7, plus the refill


async def test_key_use_and_usage_are_recorded_and_no_plain_key_is_stored_or_logged(
    start_gateway: StartGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await start_gateway()
    key = await cli(gateway, "create", "audited")
    await becomes(gateway, key, True)
    await sdk(gateway, key=key).chat.completions.create(model="mock", messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        await sdk(gateway, key=key + "x").chat.completions.create(model="mock", messages=HELLO)
    reads = gateway.gateway.reads
    query = partial(client_usage, since_ms=0, until_ms=2**62)
    with trio.fail_after(5):
        while True:
            rows = [u for u in await reads.run(query) if u.client_id and u.client_id != "static"]
            if rows and rows[0].requests >= 2:
                break
            await trio.sleep(0.05)
    (row,) = rows
    assert row.client_id.startswith("cl_")
    assert row.prompt_tokens > 0
    assert row.cost_usd == 0.0
    assert row.last_call_ms is not None
    # Key use is written in batches, not per request: the graceful stop flushes the last one.
    gateway.stop()
    with trio.fail_after(10):
        await gateway.stopped.wait()
    assert "last_used=never" not in await cli(gateway, "keys", row.client_id)
    database = Path(gateway.gateway.config.server.database)
    for path in database.parent.glob(database.name + "*"):
        assert key.encode() not in path.read_bytes()
    # The gateway's own lines (the SDK, a client here, logs its requests at DEBUG).
    ours = "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.startswith(("llm_proxy", "hypercorn", "httpx", "apsw"))
    )
    assert "llm_proxy" in " ".join(record.name for record in caplog.records)
    assert key not in ours
    assert key[3:] not in ours
