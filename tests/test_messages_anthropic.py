"""``/v1/messages`` passed through to the anthropic provider, end to end: the official
``anthropic`` SDK (and raw HTTP, as Claude Code sends it) → the gateway → the fake Anthropic API.
What goes up is the client's body with the model renamed and its protocol headers; what comes
back is the upstream's bytes, every event with its name."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
import trio

from proxy.pricing import Pricer, TokenCounts
from proxy.service import RunningService
from tests.claude_code import HEADERS, PATH, claude_code_body
from tests.conftest import CLIENT_KEY, StartGateway, http, logged
from tests.fakes.anthropic_answers import (
    Answer,
    CutMidStream,
    FailMidStream,
    ToolUse,
    thinking_answer,
    tool_use,
    web_search_answer,
)
from tests.fakes.anthropic_upstream import DEFAULT_API_KEY, FakeAnthropic
from tests.fakes.anthropic_wire import overloaded, rate_limited

MODEL = "claude-sonnet-4-5"
HELLO: list[Any] = [{"role": "user", "content": "hello there"}]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
async def gateway(start_gateway: StartGateway, fake_anthropic: FakeAnthropic) -> RunningService:
    return await start_gateway(
        {
            "providers": {
                "anthropic": {
                    "base_url": fake_anthropic.base_url,
                    "api_key": DEFAULT_API_KEY,
                    "timeout_s": 5,
                },
                "ollama": {"enabled": False},
            },
            "models": {"sonnet": {"provider": "anthropic", "model": MODEL}},
        }
    )


def client(gateway: RunningService) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0)


def _sent_body(fake: FakeAnthropic) -> bytes:
    return fake.sent[-1].body


async def test_a_message_passes_through_byte_for_byte(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(web_search_answer())
    async with http(gateway) as raw:
        answer = await raw.post(
            "/v1/messages",
            json={"model": "sonnet", "max_tokens": 200, "messages": HELLO, "top_k": 5},
            headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
        )
    assert answer.status_code == 200
    # The upstream's bytes: server tool blocks, citations and all, as they came.
    assert answer.content == _sent_body(fake_anthropic)
    received = fake_anthropic.received[-1]
    assert received.body == {"model": MODEL, "max_tokens": 200, "messages": HELLO, "top_k": 5}
    # The gateway's own key goes up, never the client's.
    assert received.headers["x-api-key"] == DEFAULT_API_KEY
    assert "authorization" not in received.headers
    (row,) = await logged(gateway)
    assert (row["endpoint"], row["provider"], row["model"]) == ("messages", "anthropic", "sonnet")
    assert row["prompt_tokens"] == answer.json()["usage"]["input_tokens"]


async def test_a_stream_passes_through_event_for_event(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(Answer(novel_fields=True))
    async with http(gateway) as raw:
        answer = await raw.post(
            "/v1/messages?beta=true",
            json={"model": MODEL, "max_tokens": 50, "messages": HELLO, "stream": True},
            headers={
                "authorization": f"Bearer {CLIENT_KEY}",
                "anthropic-version": "2026-10-21",
                "anthropic-beta": "interleaved-thinking-2025-05-14,context-1m-2025-08-07",
            },
        )
    assert answer.status_code == 200
    assert answer.content == _sent_body(fake_anthropic)
    received = fake_anthropic.received[-1]
    assert received.query == "beta=true"
    assert received.headers["anthropic-version"] == "2026-10-21"
    assert received.headers["anthropic-beta"] == (
        "interleaved-thinking-2025-05-14,context-1m-2025-08-07"
    )
    (row,) = await logged(gateway)
    assert (row["endpoint"], row["stream"], row["status"]) == ("messages", 1, "ok")
    assert int(row["completion_tokens"] or 0) > 1  # type: ignore[call-overload]


async def test_the_sdk_with_thinking_and_tools_over_two_turns(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    sdk = client(gateway)
    question = {"role": "user", "content": "Weather in Paris?"}
    fake_anthropic.enqueue(tool_use(ToolUse("get_weather", {"city": "Paris"}), thinking="Hmm."))
    async with sdk.messages.stream(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[question],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        first = await stream.get_final_message()
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    use = first.content[1]
    # The thinking block goes back as it came: the fake refuses a changed signature.
    second = await sdk.messages.create(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[
            question,  # type: ignore[list-item]
            {"role": "assistant", "content": first.content},  # as the SDK's users send it back
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}],  # type: ignore[union-attr]
            },
        ],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.stop_reason == "end_turn"
    assert second.content[-1].text.startswith("echo: ")  # type: ignore[union-attr]


async def test_cache_usage_is_logged_and_priced_at_the_cache_rates(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(Answer(cache_read_input_tokens=1800))
    message = await client(gateway).messages.create(model=MODEL, max_tokens=50, messages=HELLO)
    usage = message.usage
    (row,) = await logged(gateway)
    cache_write = usage.cache_creation_input_tokens or 0
    cache_read = usage.cache_read_input_tokens or 0
    assert row["prompt_tokens"] == usage.input_tokens + cache_write + cache_read
    assert row["cached_tokens"] == cache_read == 1800
    tokens = TokenCounts(
        int(row["prompt_tokens"]),  # type: ignore[call-overload]
        usage.output_tokens,
        cache_read,
        cache_write,
    )
    expected = Pricer().cost(provider="anthropic", upstream_model=MODEL, alias=None, tokens=tokens)
    assert row["cost_usd"] == pytest.approx(expected)


async def test_an_upstream_error_event_reaches_the_sdk_and_logs_an_error(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(FailMidStream(after_deltas=2))
    with pytest.raises(anthropic.APIStatusError):
        async with client(gateway).messages.stream(
            model=MODEL, max_tokens=50, messages=HELLO
        ) as stream:
            await stream.get_final_message()
    (row,) = await logged(gateway)
    assert (row["endpoint"], row["status"]) == ("messages", "error")
    assert "Overloaded" in str(row["error_message"])


async def test_a_cut_stream_ends_with_an_error_event_of_ours(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(CutMidStream(after_events=5))
    async with http(gateway) as raw:
        answer = await raw.post(
            "/v1/messages",
            json={"model": MODEL, "max_tokens": 50, "messages": HELLO, "stream": True},
            headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
        )
    blocks = [b for b in answer.content.split(b"\n\n") if b.strip()]
    assert blocks[-1].startswith(b"event: error\ndata: ")
    error = json.loads(blocks[-1].split(b"data: ", 1)[1])
    assert error["type"] == "error"
    assert error["error"]["type"] == "api_error"
    assert b"event: message_stop" not in answer.content


async def test_upstream_errors_keep_anthropics_classes(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    sdk = client(gateway)
    fake_anthropic.enqueue(rate_limited("7"))
    with pytest.raises(anthropic.RateLimitError) as limited:
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert limited.value.response.headers["retry-after"] == "7"
    fake_anthropic.enqueue(overloaded("3"))
    with pytest.raises(anthropic.OverloadedError) as busy:
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert busy.value.status_code == 529
    # The upstream's own 400, with its message naming the field.
    with pytest.raises(anthropic.BadRequestError) as refused:
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO, extra_body={"n": 2})
    assert "n: Extra inputs are not permitted" in refused.value.message


async def test_count_tokens_is_the_upstreams_exact_count(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue_count(2095)
    counted = await client(gateway).messages.count_tokens(model=MODEL, messages=HELLO)
    assert counted.input_tokens == 2095
    # As Claude Code asks: ?beta=true and its betas go up with it.
    fake_anthropic.enqueue_count(17)
    async with http(gateway) as raw:
        answer = await raw.post(
            "/v1/messages/count_tokens?beta=true",
            json={"model": MODEL, "messages": HELLO},
            headers={
                "x-api-key": CLIENT_KEY,
                "anthropic-version": "2023-06-01",
                "anthropic-beta": "token-efficient-tools-2025-02-19",
            },
        )
    assert answer.json() == {"input_tokens": 17}
    received = fake_anthropic.received[-1]
    assert received.path == "/v1/messages/count_tokens"
    assert received.query == "beta=true"
    assert received.headers["anthropic-beta"] == "token-efficient-tools-2025-02-19"
    assert received.body["model"] == MODEL


async def test_claude_codes_requests_pass_through_as_sent(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    body = claude_code_body(MODEL)
    headers = HEADERS
    fake_anthropic.enqueue(tool_use(ToolUse("Bash", {"command": "ls"})))
    async with http(gateway) as raw:
        with trio.fail_after(10):
            answer = await raw.post(PATH, json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.content == _sent_body(fake_anthropic)
    received = fake_anthropic.received[-1]
    assert received.body == body
    assert received.headers["anthropic-beta"] == headers["anthropic-beta"]
    assert received.query == "beta=true"


async def test_thinking_answer_through_chat_completions_and_messages_alike(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    # The same provider serves the OpenAI SDK (translated) and the Anthropic SDK (passed through).
    fake_anthropic.enqueue(thinking_answer("Deep thought.", "Forty-two."))
    message = await client(gateway).messages.create(
        model=MODEL,
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=HELLO,
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    rows = await logged(gateway)
    assert rows[0]["endpoint"] == "messages"
