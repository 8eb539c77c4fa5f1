"""Tokens per minute end to end: reserved when a call is admitted, settled when it ends."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import httpx
import trio

from proxy.service import RunningService
from storage import create_client
from tests.conftest import http
from tests.fakes.openai_upstream import ErrorReply, FakeOpenAI, StallMidStream

GUARD_S = 10  # only turns a hang into a failure: the waits below end by events
HI = [{"role": "user", "content": "hi"}]


async def client_key(gateway: RunningService, tokens_per_minute: int) -> str:
    """A new client's API key with this tokens-per-minute limit, known to the gateway at once."""
    _client, _token, key = await gateway.gateway.writer.execute(
        partial(
            create_client,
            name=f"tpm {tokens_per_minute}",
            tokens_per_minute=tokens_per_minute,
            now_ms=int(time.time() * 1000),
        )
    )
    await gateway.gateway.directory.refresh()
    return key


async def call(gateway: RunningService, key: str, **body: Any) -> httpx.Response:
    """One chat call to the fake OpenAI behind the gateway."""
    async with http(gateway) as client:
        return await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": HI, **body},
            headers={"authorization": f"Bearer {key}"},
        )


def chats(fake: FakeOpenAI) -> int:
    return sum(1 for request in fake.received if request.path == "/v1/chat/completions")


async def test_forty_concurrent_calls_under_a_tpm_of_20_use_at_most_one_call_over_it(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    key = await client_key(gateway, 20)
    fake_openai.hold = trio.Event()  # calls that reach the upstream wait there together
    answers: list[httpx.Response] = []

    async def one() -> None:
        answers.append(await call(gateway, key))

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(one)
        # Every call has either reached the upstream or been answered: only then do the
        # admitted ones finish (and settle what they used).
        with trio.fail_after(GUARD_S):
            while chats(fake_openai) + len(answers) < 40:
                await trio.sleep(0.01)
        fake_openai.hold.set()

    used = [r.json()["usage"]["total_tokens"] for r in answers if r.status_code == 200]
    assert used
    assert sum(used) <= 20 + max(used)
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) == 40 - len(used)
    denial = refused[0]
    assert int(denial.headers["retry-after"]) >= 1
    assert denial.headers["x-ratelimit-limit-tokens"] == "20"
    assert denial.headers["x-ratelimit-remaining-tokens"] == "0"
    assert denial.headers["x-ratelimit-reset-tokens"].endswith("s")
    assert "tokens per minute" in denial.json()["error"]["message"]


async def test_the_unused_part_is_refunded_and_a_call_the_upstream_refused_costs_nothing(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    key = await client_key(gateway, 1000)
    first = await call(gateway, key, max_tokens=400)
    assert first.status_code == 200
    reserved = 1000 - int(first.headers["x-ratelimit-remaining-tokens"])
    assert reserved > 400  # the prompt estimate plus max_tokens, taken at admission
    used = first.json()["usage"]["total_tokens"]
    # Settled: only what the call used stays spent (plus what refilled since, at 1000 a minute).
    second = await call(gateway, key, max_tokens=400)
    remaining = int(second.headers["x-ratelimit-remaining-tokens"])
    assert 1000 - used - reserved <= remaining <= 1000 - used - reserved + 20

    fake_openai.enqueue(ErrorReply(500), ErrorReply(400))
    for _ in range(2):
        failed = await call(gateway, key, max_tokens=400)
        assert failed.status_code in (400, 502)
    after = await call(gateway, key, max_tokens=400)
    # The two failed calls reserved as much each, and gave it all back.
    assert int(after.headers["x-ratelimit-remaining-tokens"]) >= remaining - 2 * 20 - used


async def test_a_call_larger_than_the_whole_budget_is_refused_at_once_without_retry(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    key = await client_key(gateway, 100)
    with trio.fail_after(GUARD_S):
        answer = await call(gateway, key, max_completion_tokens=500)
    assert answer.status_code == 429
    error = answer.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert "Request too large" in error["message"]
    assert "limit 100" in error["message"]
    # Waiting would not help: the official SDKs honour x-should-retry and do not retry.
    assert answer.headers["x-should-retry"] == "false"
    assert "retry-after" not in answer.headers
    assert chats(fake_openai) == 0
    assert (await call(gateway, key, max_tokens=50)).status_code == 200


async def test_a_stream_the_client_abandons_settles_its_reservation_as_the_charge(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    key = await client_key(gateway, 1000)
    fake_openai.enqueue(StallMidStream(after_chunks=1, seconds=GUARD_S))
    limiter = gateway.gateway.limiter
    async with http(gateway) as client:
        request = client.build_request(
            "POST",
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": HI, "max_tokens": 400, "stream": True},
            headers={"authorization": f"Bearer {key}"},
        )
        response = await client.send(request, stream=True)
        reserved = 1000 - int(response.headers["x-ratelimit-remaining-tokens"])
        assert limiter.statistics().tokens_reserved == reserved
        await response.aclose()  # gone mid-stream: the upstream billed something, unknown
    with trio.fail_after(GUARD_S):
        while limiter.statistics().tokens_reserved:
            await trio.sleep(0.01)
    after = await call(gateway, key, max_tokens=1)
    assert int(after.headers["x-ratelimit-remaining-tokens"]) <= 1000 - reserved + 20
