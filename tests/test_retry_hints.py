"""What SDKs are told about retrying: ``x-should-retry: false`` where no retry can help.

The OpenAI and Anthropic SDKs retry 408, 409, 429 and every 5xx twice by default, and obey
``x-should-retry`` over their own rule. A gateway error that a retry cannot fix (a provider or
model switched off, an unknown model, a bad request, credentials the upstream refuses) says so;
one a retry may fix (a rate limit, an open breaker, upstream trouble) does not.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import openai
import pytest
import trio

from proxy.service import RunningService
from storage import queries
from tests.conftest import CLIENT_KEY, StartGateway, http
from tests.fakes.openai_upstream import (
    DEFAULT_API_KEY,
    FakeOpenAI,
    bad_key,
    rate_limited,
    server_error,
)

HELLO = [{"role": "user", "content": "hello there gateway"}]
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


@pytest.fixture
async def gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    """The gateway before the fake OpenAI, with a breaker that opens on the first failure."""
    return await start_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": fake_openai.base_url,
                    "api_key": DEFAULT_API_KEY,
                    "timeout_s": 5,
                    "breaker_failures": 1,
                    "breaker_cooldown_s": 60,
                }
            },
        }
    )


async def calls_logged(gateway: RunningService, model: str) -> int:
    """How many calls for ``model`` the gateway logged, once every earlier record is written."""
    # A marker call's record is written after every record queued before it.
    await post(gateway, {"model": "marker-model", "messages": HELLO})
    reads = gateway.gateway.reads
    with trio.fail_after(10):
        while True:
            rows = await reads.run(partial(queries.recent_requests, limit=100))
            if any(row["model"] == "marker-model" for row in rows):
                return sum(row["model"] == model for row in rows)
            await trio.sleep(0.02)


async def test_sdk_does_not_retry_a_disabled_provider(gateway: RunningService) -> None:
    gateway.gateway.router.set_provider_enabled("openai", False)
    # The SDK as applications use it: its default of two retries, with backoff.
    client = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=CLIENT_KEY)
    assert client.max_retries == 2
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 503
    assert caught.value.code == "provider_disabled"
    assert await calls_logged(gateway, "gpt-4o") == 1


async def post(
    gateway: RunningService, body: Any, path: str = "/v1/chat/completions"
) -> httpx.Response:
    async with http(gateway) as client:
        if isinstance(body, bytes):
            return await client.post(path, headers=AUTH, content=body)
        return await client.post(path, headers=AUTH, json=body)


async def test_errors_no_retry_can_fix_say_so(gateway: RunningService) -> None:
    router = gateway.gateway.router
    unknown = await post(gateway, {"model": "no-such-model", "messages": HELLO})
    bad_json = await post(gateway, b"{not json")
    bad_field = await post(gateway, {"model": "gpt-4o", "messages": "not a list"})
    wrong_path = await post(gateway, {}, path="/v1/nothing-here")
    async with http(gateway) as client:
        no_key = await client.post("/v1/chat/completions", json={"model": "gpt-4o"})
    router.set_model_enabled("gpt-4o-mini", False)
    model_off = await post(gateway, {"model": "gpt-4o-mini", "messages": HELLO})
    router.set_provider_enabled("openai", False)
    provider_off = await post(gateway, {"model": "gpt-4o", "messages": HELLO})
    answers = {
        "unknown model": (unknown, 404),
        "bad json": (bad_json, 400),
        "bad field": (bad_field, 400),
        "wrong path": (wrong_path, 404),
        "no key": (no_key, 401),
        "model switched off": (model_off, 404),
        "provider switched off": (provider_off, 503),
    }
    for name, (answer, status) in answers.items():
        assert answer.status_code == status, name
        assert answer.headers.get("x-should-retry") == "false", name


async def test_upstream_refusing_the_gateways_key_is_not_worth_a_retry(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(bad_key())
    answer = await post(gateway, {"model": "gpt-4o", "messages": HELLO})
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_auth_failed"
    assert answer.headers.get("x-should-retry") == "false"


async def test_errors_a_retry_may_fix_leave_the_sdk_its_rule(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(rate_limited("7"), server_error())
    limited = await post(gateway, {"model": "gpt-4o", "messages": HELLO})
    failed = await post(gateway, {"model": "gpt-4o", "messages": HELLO})
    breaker_open = await post(gateway, {"model": "gpt-4o", "messages": HELLO})
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
    assert failed.status_code == 502
    assert breaker_open.status_code == 503
    assert breaker_open.json()["error"]["code"] == "circuit_open"
    assert int(breaker_open.headers["retry-after"]) > 0
    for answer in (limited, failed, breaker_open):
        assert "x-should-retry" not in answer.headers
