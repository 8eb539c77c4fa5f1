"""Clients that go away: the upstream call is closed at once, logged, and nothing leaks."""

from __future__ import annotations

import random

import httpx
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, logged, sdk
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI, Stall, StallMidStream

HELLO = [{"role": "user", "content": "hello there gateway"}]
BODY = {"model": "gpt-4o", "messages": HELLO, "stream": True}
HEADERS = {"authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture
async def gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    # A small pool: a leaked slot would soon leave none for the calls that follow.
    return await start_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": fake_openai.base_url,
                    "api_key": DEFAULT_API_KEY,
                    "max_concurrency": 4,
                    "timeout_s": 30,
                }
            },
            "limits": {"default_client_requests_per_minute": 0},
        }
    )


async def hang_up_after_first_chunk(client: httpx.AsyncClient) -> None:
    """Start a stream, read its first event, and close the connection."""
    async with client.stream("POST", "/v1/chat/completions", json=BODY, headers=HEADERS) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                return


async def test_hang_up_closes_the_upstream_call_and_logs_cancelled(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(StallMidStream(after_chunks=2, seconds=30))
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        await hang_up_after_first_chunk(client)
    with trio.fail_after(2):  # the upstream sees its client (the gateway) go; benchmarked apart
        while fake_openai.disconnects == 0:
            await trio.sleep(0.001)
    (row,) = await logged(gateway)
    assert row["status"] == "cancelled"
    assert row["http_status"] == 499
    provider = gateway.gateway.providers["openai"].statistics()
    assert provider.in_flight == 0


async def test_a_thousand_cancellations_leak_no_pool_slot(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    total, concurrency = 1000, 40
    fake_openai.enqueue(*[StallMidStream(after_chunks=1, seconds=30)] * total)
    chance = random.Random(5)
    limits = httpx.Limits(max_connections=concurrency)

    async def one(client: httpx.AsyncClient, delay: float) -> None:
        # Some hang up before the first chunk: while waiting for a slot, connecting, or for
        # the upstream's headers; the rest after it.
        with trio.move_on_after(delay):
            await hang_up_after_first_chunk(client)

    async with httpx.AsyncClient(base_url=gateway.base_url, limits=limits) as client:
        for start in range(0, total, concurrency):
            async with trio.open_nursery() as nursery:
                for _ in range(min(concurrency, total - start)):
                    nursery.start_soon(one, client, chance.choice([0.001, 0.005, 0.02, 1.0]))
    with trio.fail_after(10):
        while gateway.gateway.providers["openai"].statistics().in_flight:
            await trio.sleep(0.01)
    # Every slot came back: calls beyond the pool's size still go through, concurrently.
    fake_openai.clear()
    client = sdk(gateway)
    answers: list[str | None] = []

    async def normal() -> None:
        answer = await client.chat.completions.create(model="gpt-4o", messages=HELLO)
        answers.append(answer.choices[0].message.content)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(normal)
    assert answers == ["echo: hello there gateway"] * 20
    stats = gateway.gateway.providers["openai"].statistics()
    assert (stats.in_flight, stats.waiting) == (0, 0)


async def abandon_a_stalled_call(
    gateway: RunningService, fake_openai: FakeOpenAI, after_s: float
) -> None:
    """Start a non-streaming call the upstream stalls, hang up ``after_s`` after it reached the
    upstream, and wait (2 s at most) for the gateway to close the upstream call."""
    fake_openai.enqueue(Stall(seconds=30))
    body = {"model": "gpt-4o", "messages": HELLO}
    async with trio.open_nursery() as nursery:

        async def call() -> None:
            async with httpx.AsyncClient(base_url=gateway.base_url) as client:
                await client.post("/v1/chat/completions", json=body, headers=HEADERS)

        nursery.start_soon(call)
        with trio.fail_after(5):
            while not fake_openai.received:
                await trio.sleep(0.001)
        await trio.sleep(after_s)
        nursery.cancel_scope.cancel()  # closes the client's connection
    with trio.fail_after(2):
        while fake_openai.disconnects == 0:
            await trio.sleep(0.001)


async def test_hang_up_during_a_non_streaming_call_closes_the_upstream_call(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    # Past the hang-up watcher's delay: the call is watched by then, as any long call is.
    await abandon_a_stalled_call(gateway, fake_openai, after_s=0.2)
    (row,) = await logged(gateway)
    assert (row["status"], row["http_status"], row["stream"]) == ("cancelled", 499, 0)
    assert gateway.gateway.providers["openai"].statistics().in_flight == 0


async def test_hang_up_early_in_a_non_streaming_call_is_noticed_within_the_delay(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    # Before the watcher's delay: the sweeper hands the call a watcher when it comes due.
    await abandon_a_stalled_call(gateway, fake_openai, after_s=0)
    (row,) = await logged(gateway)
    assert row["status"] == "cancelled"
