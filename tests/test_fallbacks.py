"""Fallbacks: a primary that fails before the first byte is replaced by the next model in line."""

from __future__ import annotations

import json

import openai
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, http, logged, sdk
from tests.fakes.openai_upstream import (
    DEFAULT_API_KEY,
    CutStream,
    ErrorReply,
    FakeOpenAI,
    Stall,
    rate_limited,
    server_error,
)

HELLO = [{"role": "user", "content": "hello there gateway"}]


@pytest.fixture
async def backup(nursery: trio.Nursery) -> FakeOpenAI:
    """A second OpenAI-compatible upstream, serving as the deepseek provider."""
    fake = FakeOpenAI()
    await nursery.start(fake.run)
    return fake


@pytest.fixture
async def gateway(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, backup: FakeOpenAI
) -> RunningService:
    upstream = {"api_key": DEFAULT_API_KEY, "timeout_s": 1, "breaker_failures": 100}
    return await start_gateway(
        {
            "providers": {
                "openai": {"base_url": fake_openai.base_url, **upstream},
                "deepseek": {"base_url": backup.base_url, **upstream},
            },
            "models": {
                "fast": {
                    "provider": "openai",
                    "model": "gpt-4o-mini",
                    "fallbacks": ["deepseek-chat"],
                }
            },
            "fallbacks": {"gpt-4o": ["gemini-2.5-pro", "deepseek-chat"]},
        }
    )


@pytest.mark.parametrize(
    "failure",
    [server_error(), rate_limited(), Stall(seconds=5), ErrorReply(503, "overloaded")],
    ids=["500", "429", "timeout", "503"],
)
async def test_failure_before_the_first_byte_falls_back(
    gateway: RunningService, fake_openai: FakeOpenAI, backup: FakeOpenAI, failure: object
) -> None:
    fake_openai.enqueue(failure)  # type: ignore[arg-type]
    raw = await sdk(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HELLO
    )
    assert raw.parse().choices[0].message.content == "echo: hello there gateway"
    assert raw.headers["x-llm-proxy-provider"] == "deepseek"
    assert backup.received[-1].body["model"] == "deepseek-chat"
    (row,) = await logged(gateway)
    assert (row["provider"], row["upstream_model"], row["status"]) == (
        "deepseek",
        "deepseek-chat",
        "ok",
    )
    assert row["model"] == "gpt-4o"
    assert row["attempts"] == 2
    (failed,) = json.loads(str(row["failed_attempts"]))
    assert failed["provider"] == "openai"
    assert failed["status"] in (429, 502, 503, 504)


async def test_alias_fallbacks_apply_to_streams_before_the_first_chunk(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(server_error())
    raw = await sdk(gateway).chat.completions.with_raw_response.create(
        model="fast", messages=HELLO, stream=True
    )
    assert raw.headers["x-llm-proxy-provider"] == "deepseek"
    chunks = [chunk async for chunk in raw.parse()]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there gateway"


async def test_no_fallback_once_the_stream_started(
    gateway: RunningService, fake_openai: FakeOpenAI, backup: FakeOpenAI
) -> None:
    fake_openai.enqueue(CutStream(after_chunks=2))
    stream = await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    assert backup.received == []
    (row,) = await logged(gateway)
    assert row["attempts"] == 1
    assert row["status"] == "error"


async def test_the_clients_own_errors_do_not_fall_back(
    gateway: RunningService, fake_openai: FakeOpenAI, backup: FakeOpenAI
) -> None:
    fake_openai.enqueue(ErrorReply(400, "Invalid value for 'temperature'.", param="temperature"))
    with pytest.raises(openai.BadRequestError):
        await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert backup.received == []


async def test_when_every_model_fails_the_last_error_is_answered(
    gateway: RunningService, fake_openai: FakeOpenAI, backup: FakeOpenAI
) -> None:
    fake_openai.enqueue(server_error())
    backup.enqueue(ErrorReply(503, "overloaded"))
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 503
    (row,) = await logged(gateway)
    assert row["attempts"] == 2
    assert row["provider"] == "deepseek"
    assert row["status"] == "error"


async def test_a_disabled_primary_is_skipped_for_its_fallback(
    start_gateway: StartGateway, backup: FakeOpenAI
) -> None:
    gateway = await start_gateway(
        {
            "providers": {"deepseek": {"base_url": backup.base_url, "api_key": DEFAULT_API_KEY}},
            "fallbacks": {"gpt-4o": ["deepseek-chat"]},
        }
    )
    async with http(gateway) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": HELLO},
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )
    assert response.status_code == 200
    assert response.headers["x-llm-proxy-provider"] == "deepseek"
