"""Tests of the fake Anthropic upstream, checked with the official anthropic SDK and raw httpx."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import msgspec
import pytest
import trio
from anthropic.types import MessageParam, ThinkingBlock, ThinkingConfigEnabledParam, ToolParam

from tests.fakes.anthropic_answers import (
    NOVEL_EVENT,
    NOVEL_FIELD,
    NOVEL_VALUE,
    Answer,
    CutMidStream,
    FailMidStream,
    StallMidStream,
    Text,
    Thinking,
    ToolUse,
    garbage,
    max_tokens_stop,
    refusal,
    stop_sequence_stop,
    tool_use,
    web_search_answer,
)
from tests.fakes.anthropic_upstream import DEFAULT_API_KEY, MODELS, FakeAnthropic
from tests.fakes.anthropic_wire import (
    api_error,
    event_stream,
    invalid_key,
    overloaded,
    parse_event_stream,
    permission_denied,
    rate_limited,
)

KEY = DEFAULT_API_KEY
MODEL = "claude-sonnet-4-5"
OLD = "2023-06-01"
HEADERS = {"x-api-key": KEY, "anthropic-version": OLD}
HELLO: list[MessageParam] = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL: ToolParam = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
# The smallest valid PNG (1x1, transparent).
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeAnthropic:
    """A running fake; the pytest-trio nursery cancels it at the end of the test."""
    upstream = FakeAnthropic()
    url = await nursery.start(upstream.run)
    assert url == upstream.base_url
    return upstream


@pytest.fixture
async def sdk(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """The official SDK (2.x: Bearer auth, anthropic-version 2026-10-21), no retries."""
    client = anthropic.AsyncAnthropic(
        base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=5.0
    )
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def http(fake: FakeAnthropic) -> AsyncIterator[httpx.AsyncClient]:
    """A raw httpx client sending x-api-key and anthropic-version 2023-06-01."""
    async with httpx.AsyncClient(base_url=fake.base_url, headers=HEADERS, timeout=5.0) as client:
        yield client


async def read_stream(http: httpx.AsyncClient, chunks: list[bytes]) -> None:
    """POST a streamed create of HELLO and read its body into `chunks` (kept if reading fails)."""
    body = {"model": MODEL, "max_tokens": 100, "messages": HELLO, "stream": True}
    async with http.stream("POST", "/v1/messages", json=body) as response:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)


async def create(http: httpx.AsyncClient, **body: Any) -> httpx.Response:
    """POST /v1/messages with a valid default body overridden by `body`."""
    return await http.post(
        "/v1/messages", json={"model": MODEL, "max_tokens": 100, "messages": HELLO, **body}
    )


# ---------------------------------------------------------------------------------------------
# Plain and streamed answers through the SDK
# ---------------------------------------------------------------------------------------------


async def test_sdk_create_echoes_with_deterministic_usage(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    message = await sdk.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    assert message.id.startswith("msg_01")
    assert message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there"
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens == 2  # "hello there"
    assert message.usage.output_tokens == 3  # "echo: hello there"
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0
    request = fake.received[-1]
    assert request.path == "/v1/messages"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["anthropic-version"] == "2026-10-21"
    assert request.body == {"max_tokens": 100, "messages": HELLO, "model": MODEL}
    assert msgspec.json.decode(request.raw) == request.body
    sent = fake.sent[-1]
    assert sent.status == 200
    assert sent.headers["request-id"].startswith("req_011C")
    assert sent.headers["anthropic-organization-id"]
    assert sent.headers["anthropic-ratelimit-requests-limit"] == "4000"


async def test_sdk_stream_assembles_the_final_message(sdk: anthropic.AsyncAnthropic) -> None:
    async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        texts = [text async for text in stream.text_stream]
        message = await stream.get_final_message()
    assert texts == ["echo:", " hello", " there"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 2
    assert message.usage.output_tokens == 3


async def test_stream_follows_the_reference_event_sequence(http: httpx.AsyncClient) -> None:
    async with http.stream(
        "POST",
        "/v1/messages",
        json={"model": MODEL, "max_tokens": 100, "messages": HELLO, "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["request-id"].startswith("req_")
        body = await response.aread()
    events = parse_event_stream(body)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in body
    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    assert start["usage"]["input_tokens"] == 2
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    delta = events[7][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 3  # cumulative, not an increment


# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------


async def test_tools_over_two_turns(sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    fake.enqueue(tool_use(text="Let me check."))
    first = await sdk.messages.create(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["text", "tool_use"]
    call = first.content[1]
    assert call.type == "tool_use"
    assert call.id.startswith("toolu_01")
    assert call.name == "get_weather"
    assert call.input == {"city": "Paris"}
    second = await sdk.messages.create(
        model=MODEL,
        max_tokens=200,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ],
        tools=[WEATHER_TOOL],
    )
    assert second.content[0].type == "text"
    assert second.content[0].text == "echo: sunny"
    assert second.stop_reason == "end_turn"


async def test_streamed_tool_use_sends_input_json_pieces_first_empty(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    fake.enqueue(tool_use(ToolUse(), ToolUse("get_time", {"zone": "Europe/Paris"}, 2)))
    async with sdk.messages.stream(
        model=MODEL,
        max_tokens=100,
        messages=HELLO,
        tools=[WEATHER_TOOL],
    ) as stream:
        message = await stream.get_final_message()
    assert [(b.type, getattr(b, "input", None)) for b in message.content] == [
        ("tool_use", {"city": "Paris"}),
        ("tool_use", {"zone": "Europe/Paris"}),
    ]
    events = parse_event_stream(fake.sent[-1].body)
    pieces = [
        data["delta"]["partial_json"]
        for name, data in events
        if name == "content_block_delta" and data["index"] == 0
    ]
    assert pieces[0] == ""
    assert len(pieces) == 4
    assert "".join(pieces) == '{"city":"Paris"}'
    starts = [data["content_block"] for name, data in events if name == "content_block_start"]
    assert starts[0]["input"] == {}


async def test_unanswered_tool_use_is_refused(http: httpx.AsyncClient) -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}],
        },
        {"role": "user", "content": "well?"},
    ]
    response = await create(http, messages=messages)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("messages.1: `tool_use` ids were found without `tool_result`")
    assert "toolu_1" in message


async def test_tool_result_without_its_tool_use_is_refused(http: httpx.AsyncClient) -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "I can't call tools."},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]},
    ]
    response = await create(http, messages=messages)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(
        "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_9"
    )


async def test_tool_result_after_text_is_refused(http: httpx.AsyncClient) -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "here:"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            ],
        },
    ]
    response = await create(http, messages=messages)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(
        "messages.2.content.1: `tool_result` blocks must come first"
    )


# ---------------------------------------------------------------------------------------------
# Errors the SDK raises
# ---------------------------------------------------------------------------------------------


async def test_wrong_key_is_an_authentication_error(fake: FakeAnthropic) -> None:
    client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="sk-ant-wrong", max_retries=0)
    try:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    finally:
        await client.close()
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": caught.value.request_id,
    }
    assert caught.value.request_id is not None
    assert caught.value.request_id.startswith("req_011C")


async def test_unknown_model_is_not_found(sdk: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        await sdk.messages.create(model="claude-nonexistent", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"] == {  # type: ignore[index]
        "type": "not_found_error",
        "message": "model: claude-nonexistent",
    }


async def test_rate_limit_carries_retry_after(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    fake.enqueue(rate_limited("11"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "11"
    assert caught.value.type == "rate_limit_error"


async def test_overloaded_and_server_errors(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    fake.enqueue(overloaded("3"), api_error())
    with pytest.raises(anthropic.OverloadedError) as overload:
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert overload.value.status_code == 529
    assert isinstance(overload.value, anthropic.InternalServerError)
    assert overload.value.response.headers["retry-after"] == "3"
    with pytest.raises(anthropic.InternalServerError) as server:
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert server.value.status_code == 500
    assert server.value.body["error"]["type"] == "api_error"  # type: ignore[index]


async def test_extra_fields_are_a_bad_request(sdk: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await sdk.messages.create(
            model=MODEL, max_tokens=10, messages=HELLO, extra_body={"user": "u-1"}
        )
    assert caught.value.body["error"] == {  # type: ignore[index]
        "type": "invalid_request_error",
        "message": "user: Extra inputs are not permitted",
    }


async def test_mid_stream_error_raises_api_status_error(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    fake.enqueue(FailMidStream(after_deltas=2))
    texts: list[str] = []

    async def read() -> None:
        async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            async for text in stream.text_stream:
                texts.append(text)

    with pytest.raises(anthropic.APIStatusError) as caught:
        await read()
    assert texts == ["echo:", " hello"]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    names = [name for name, _ in parse_event_stream(fake.sent[-1].body)]
    assert names[-1] == "error"
    assert "message_stop" not in names


# ---------------------------------------------------------------------------------------------
# Thinking
# ---------------------------------------------------------------------------------------------

THINKING: ThinkingConfigEnabledParam = {"type": "enabled", "budget_tokens": 2048}


async def test_thinking_with_signatures_over_two_turns(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    fake.enqueue(tool_use(thinking="I should look the weather up."))
    question: MessageParam = {"role": "user", "content": "Weather in Paris?"}
    async with sdk.messages.stream(
        model=MODEL,
        max_tokens=4096,
        thinking=THINKING,
        messages=[question],
        tools=[WEATHER_TOOL],
    ) as stream:
        first = await stream.get_final_message()
    thinking, call = first.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "I should look the weather up."
    assert thinking.signature.startswith("EqQB")
    assert call.type == "tool_use"
    names = [
        data["delta"]["type"]
        for name, data in parse_event_stream(fake.sent[-1].body)
        if name == "content_block_delta" and data["index"] == 0
    ]
    assert names[-1] == "signature_delta"
    assert set(names[:-1]) == {"thinking_delta"}
    result: MessageParam = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
    }
    second = await sdk.messages.create(
        model=MODEL,
        max_tokens=4096,
        thinking=THINKING,
        messages=[question, {"role": "assistant", "content": first.content}, result],
        tools=[WEATHER_TOOL],
    )
    # After tool results Claude thinks again only with interleaved thinking.
    assert [b.type for b in second.content] == ["text"]
    assert second.content[0].type == "text"
    assert second.content[0].text == "echo: sunny"

    tampered = ThinkingBlock(
        type="thinking", thinking="I should not.", signature=thinking.signature
    )
    with pytest.raises(anthropic.BadRequestError) as caught:
        await sdk.messages.create(
            model=MODEL,
            max_tokens=4096,
            thinking=THINKING,
            messages=[question, {"role": "assistant", "content": [tampered, call]}, result],
            tools=[WEATHER_TOOL],
        )
    assert caught.value.body["error"]["message"] == (  # type: ignore[index]
        "messages.1.content.0: Invalid signature in thinking block"
    )

    with pytest.raises(anthropic.BadRequestError) as dropped:
        await sdk.messages.create(
            model=MODEL,
            max_tokens=4096,
            thinking=THINKING,
            messages=[question, {"role": "assistant", "content": [call]}, result],
            tools=[WEATHER_TOOL],
        )
    assert dropped.value.body["error"]["message"].startswith(  # type: ignore[index]
        "messages.1.content.0.type: Expected thinking or redacted_thinking, but found tool_use"
    )


async def test_default_answer_thinks_when_thinking_is_on(
    http: httpx.AsyncClient, fake: FakeAnthropic
) -> None:
    response = await create(http, max_tokens=4096, thinking=THINKING)
    assert response.status_code == 200
    thinking, text = response.json()["content"]
    assert thinking["type"] == "thinking"
    assert fake.signatures.verify(thinking["thinking"], thinking["signature"])
    assert text == {"type": "text", "text": "echo: hello there"}


async def test_omitted_thinking_carries_only_the_signature(http: httpx.AsyncClient) -> None:
    thinking = {**THINKING, "display": "omitted"}
    response = await create(http, max_tokens=4096, thinking=thinking)
    block = response.json()["content"][0]
    assert block["thinking"] == ""
    assert block["signature"]


async def test_redacted_thinking_goes_back_unchanged(
    http: httpx.AsyncClient, fake: FakeAnthropic
) -> None:
    fake.enqueue(tool_use(redacted=True))
    first = (await create(http, max_tokens=4096, thinking=THINKING)).json()
    redacted, call = first["content"]
    assert redacted["type"] == "redacted_thinking"
    assert redacted["data"]
    result = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "ok"}],
    }
    history = [*HELLO, {"role": "assistant", "content": first["content"]}, result]
    again = await create(http, max_tokens=4096, thinking=THINKING, messages=history)
    assert again.status_code == 200
    forged = {"type": "redacted_thinking", "data": redacted["data"] + "x"}
    history[1] = {"role": "assistant", "content": [forged, call]}
    refused = await create(http, max_tokens=4096, thinking=THINKING, messages=history)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        "messages.1.content.0: Invalid data in redacted_thinking block"
    )


async def test_hand_built_history_uses_signatures_the_fake_issued(
    http: httpx.AsyncClient, fake: FakeAnthropic
) -> None:
    signature = fake.sign("Earlier thought.")
    history = [
        *HELLO,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Earlier thought.", "signature": signature},
                {"type": "text", "text": "Hi."},
            ],
        },
        {"role": "user", "content": "again"},
    ]
    response = await create(http, messages=history)
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"thinking": {"type": "enabled", "budget_tokens": 1000}},
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 2048},
            "`max_tokens` must be greater than `thinking.budget_tokens`.",
        ),
        (
            {"thinking": THINKING, "tools": [WEATHER_TOOL], "tool_choice": {"type": "any"}},
            "Thinking may not be enabled when tool_choice forces tool use.",
        ),
        (
            {"thinking": THINKING, "temperature": 0.5},
            "`temperature` may only be set to 1 when thinking is enabled.",
        ),
    ],
)
async def test_thinking_settings_are_checked(
    http: httpx.AsyncClient, settings: dict[str, Any], message: str
) -> None:
    response = await create(http, **{"max_tokens": 4096, **settings})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)


async def test_interleaved_thinking_allows_a_budget_over_max_tokens(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post(
        "/v1/messages?beta=true",
        headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
        json={"model": MODEL, "max_tokens": 2000, "messages": HELLO, "thinking": THINKING},
    )
    assert response.status_code == 200


# ---------------------------------------------------------------------------------------------
# Images, validation
# ---------------------------------------------------------------------------------------------


async def test_images_base64_and_url(sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    data = base64.b64encode(PNG).decode()
    message = await sdk.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": data},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: What is this?"
    assert message.usage.input_tokens == 5  # 3 words, 1 per image
    assert fake.received[-1].body["messages"][0]["content"][0]["source"]["data"] == data


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"type": "base64", "media_type": "image/jpeg", "data": base64.b64encode(PNG).decode()},
            "messages.0.content.0.image.source.base64.data: Image does not match the provided "
            "media type",
        ),
        (
            {"type": "base64", "media_type": "image/bmp", "data": "AAAA"},
            "messages.0.content.0.image.source.base64.media_type: Input should be",
        ),
        (
            {"type": "base64", "media_type": "image/png", "data": "not base64!"},
            "messages.0.content.0.image.source.base64.data: invalid base64 data",
        ),
        (
            {"type": "url", "url": "ftp://x.test/a.png"},
            "messages.0.content.0.image.source.url.url: Input should be a valid URL",
        ),
    ],
)
async def test_bad_images_are_refused(
    http: httpx.AsyncClient, source: dict[str, Any], message: str
) -> None:
    content = [{"type": "image", "source": source}, {"type": "text", "text": "hi"}]
    response = await create(http, messages=[{"role": "user", "content": content}])
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(message)


TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": None}, "model: Input should be a valid string"),
        ({"max_tokens": "5"}, "max_tokens: Input should be a valid integer"),
        ({"n": 2}, "n: Extra inputs are not permitted"),
        ({"stream_options": {"include_usage": True}}, "stream_options: Extra inputs are not"),
        ({"messages": []}, "messages: at least one message is required"),
        (
            {"messages": [{"role": "system", "content": "be brief"}]},
            'messages.0.role: Unexpected role "system"',
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            {"messages": [{"role": "user", "content": ""}]},
            "messages.0: all messages must have non-empty content",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "messages.0.content.0.text: text content blocks must be non-empty",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            },
            "messages.0.content.0.type: Input tag 'image_url' found using 'type' does not match",
        ),
        (
            {"messages": [{"role": "user", "content": [TOOL_USE]}]},
            "messages.0.content.0: `tool_use` blocks are not allowed in user messages",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "x": 1}]}]},
            "messages.0.content.0.text.x: Extra inputs are not permitted",
        ),
        ({"system": [{"type": "text", "text": ""}]}, "system.0.text: text content blocks must"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": " \n"}]}]},
            "messages.0.content.0.text: text content blocks must contain non-whitespace text",
        ),
        (
            {"messages": [{"role": "user", "content": "  "}]},
            "messages.0.content: text content blocks must contain non-whitespace text",
        ),
        (
            {"messages": [*HELLO, {"role": "assistant", "content": "The answer is "}]},
            "messages.1: final assistant content cannot end with trailing whitespace",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "tools.0: Input tag 'function' found using 'type' does not match",
        ),
        ({"tools": [{"name": "f"}]}, "tools.0.custom.input_schema: Field required"),
        (
            {"tools": [{"name": "f", "input_schema": {"type": "object"}, "parameters": {}}]},
            "tools.0.custom.parameters: Extra inputs are not permitted",
        ),
        ({"tool_choice": "auto"}, "tool_choice: Input should be a valid dictionary"),
        ({"metadata": {"user_id": "u", "session": "s"}}, "metadata.session: Extra inputs"),
        ({"stop_sequences": [" "]}, "stop_sequences: Each stop sequence must contain"),
        ({"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
        (
            {"temperature": 0.5, "top_p": 0.9},
            "`temperature` and `top_p` cannot both be specified for this model.",
        ),
        (
            {"max_tokens": 64001},
            "max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens",
        ),
    ],
)
async def test_invalid_bodies_name_the_field(
    http: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    response = await create(http, **body)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(message)
    assert error["request_id"] == response.headers["request-id"]


PDF = base64.b64encode(b"%PDF-1.4\n%fake\n").decode()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"type": "base64", "media_type": "application/pdf", "data": PDF}, None),
        ({"type": "text", "media_type": "text/plain", "data": "notes"}, None),
        ({"type": "content", "content": [{"type": "text", "text": "a"}]}, None),
        ({"type": "url", "url": "https://x.test/a.pdf"}, None),
        ({"type": "file", "file_id": "file_011"}, None),
        (
            {
                "type": "base64",
                "media_type": "application/pdf",
                "data": base64.b64encode(PNG).decode(),
            },
            "messages.0.content.0.document.source.base64.data: The PDF specified was not valid.",
        ),
        (
            {"type": "base64", "media_type": "text/csv", "data": PDF},
            "messages.0.content.0.document.source.base64.media_type: Input should be "
            "'application/pdf'",
        ),
        (
            {"type": "text", "media_type": "text/plain"},
            "messages.0.content.0.document.source.text.data: Field required",
        ),
        (
            {"type": "image_url", "url": "x"},
            "messages.0.content.0.document.source: Input tag 'image_url' found using 'type'",
        ),
    ],
)
async def test_documents(
    http: httpx.AsyncClient, source: dict[str, Any], message: str | None
) -> None:
    content = [{"type": "document", "source": source}, {"type": "text", "text": "Summarise."}]
    response = await create(http, messages=[{"role": "user", "content": content}])
    if message is None:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith(message)


async def test_tool_use_ids_follow_the_api_pattern(http: httpx.AsyncClient) -> None:
    call = {"type": "tool_use", "id": "call.1:x", "name": "w", "input": {}}
    result = {"type": "tool_result", "tool_use_id": "call.1:x", "content": "ok"}
    messages = [
        *HELLO,
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]
    response = await create(http, messages=messages)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "messages.1.content.0.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
    )


async def test_a_final_assistant_turn_is_a_prefill(http: httpx.AsyncClient) -> None:
    response = await create(http, messages=[*HELLO, {"role": "assistant", "content": "Sure:"}])
    assert response.status_code == 200
    empty = await create(http, messages=[*HELLO, {"role": "assistant", "content": []}])
    assert empty.status_code == 200


async def test_missing_required_fields(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/messages", json={"model": MODEL, "messages": HELLO})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "max_tokens: Field required"
    response = await http.post("/v1/messages", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_more_than_four_cache_breakpoints_are_refused(http: httpx.AsyncClient) -> None:
    cached = {"type": "ephemeral"}
    system = [{"type": "text", "text": f"part {i}", "cache_control": cached} for i in range(3)]
    tools = [{**WEATHER_TOOL, "cache_control": cached}]
    response = await create(http, system=system, tools=tools)
    assert response.status_code == 200
    content = [{"type": "text", "text": "hello", "cache_control": {"type": "ephemeral"}}]
    response = await create(
        http, system=system, tools=tools, messages=[{"role": "user", "content": content}]
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "A maximum of 4 blocks with cache_control may be provided. Found 5."
    )


async def test_consecutive_turns_are_combined(http: httpx.AsyncClient) -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look."}]},
        {"role": "assistant", "content": [TOOL_USE]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
        {"role": "user", "content": "thanks"},
    ]
    response = await create(http, messages=messages)
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == "echo: thanks"


# ---------------------------------------------------------------------------------------------
# Headers: keys, versions, betas
# ---------------------------------------------------------------------------------------------


async def test_both_api_versions(fake: FakeAnthropic) -> None:
    old = anthropic.AsyncAnthropic(
        base_url=fake.base_url,
        api_key=KEY,
        max_retries=0,
        default_headers={"anthropic-version": OLD},
    )
    new = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=KEY, max_retries=0)
    try:
        message = await old.messages.create(
            model=MODEL, max_tokens=10, messages=HELLO, extra_body={"temperature": 0.2}
        )
        assert message.content[0].type == "text"
        assert fake.received[-1].headers["anthropic-version"] == OLD
        with pytest.raises(anthropic.BadRequestError) as caught:
            await new.messages.create(
                model=MODEL, max_tokens=10, messages=HELLO, extra_body={"temperature": 0.2}
            )
        assert caught.value.body["error"]["message"] == (  # type: ignore[index]
            "temperature: Extra inputs are not permitted"
        )
        message = await new.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
        assert fake.received[-1].headers["anthropic-version"] == "2026-10-21"
    finally:
        await old.close()
        await new.close()


async def test_new_version_refuses_documents_in_assistant_turns(http: httpx.AsyncClient) -> None:
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
    }
    messages = [
        *HELLO,
        {"role": "assistant", "content": [document]},
        {"role": "user", "content": "ok"},
    ]
    old = await create(http, messages=messages)
    assert old.status_code == 200
    new = await http.post(
        "/v1/messages",
        headers={"anthropic-version": "2026-10-21"},
        json={"model": MODEL, "max_tokens": 10, "messages": messages},
    )
    assert new.status_code == 400
    assert new.json()["error"]["message"].startswith("messages.1.content.0: `document` blocks")


@pytest.mark.parametrize(
    ("headers", "status", "error_type", "message"),
    [
        ({"anthropic-version": OLD}, 401, "authentication_error", "x-api-key header is required"),
        (
            {"x-api-key": "wrong", "anthropic-version": OLD},
            401,
            "authentication_error",
            "invalid x-api-key",
        ),
        (
            # x-api-key wins over Authorization when both come.
            {"x-api-key": "wrong", "authorization": f"Bearer {KEY}", "anthropic-version": OLD},
            401,
            "authentication_error",
            "invalid x-api-key",
        ),
        (
            {"authorization": f"Bearer {KEY}"},
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        ),
        (
            {"x-api-key": KEY, "anthropic-version": "2024-01-01"},
            400,
            "invalid_request_error",
            "anthropic-version: invalid version '2024-01-01'",
        ),
    ],
)
async def test_header_checks(
    fake: FakeAnthropic, headers: dict[str, str], status: int, error_type: str, message: str
) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        response = await client.post(
            "/v1/messages",
            headers=headers,
            json={"model": MODEL, "max_tokens": 10, "messages": HELLO},
        )
    assert response.status_code == status
    assert response.headers["request-id"].startswith("req_")
    assert response.json() == {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": response.headers["request-id"],
    }


async def test_either_key_header_is_accepted(fake: FakeAnthropic) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        for auth in ({"x-api-key": KEY}, {"authorization": f"Bearer {KEY}"}):
            response = await client.post(
                "/v1/messages",
                headers={**auth, "anthropic-version": OLD},
                json={"model": MODEL, "max_tokens": 10, "messages": HELLO},
            )
            assert response.status_code == 200


async def test_betas_are_recorded_and_refused_ones_answered_400(nursery: trio.Nursery) -> None:
    fake = FakeAnthropic(refused_betas={"retired-beta-2024-01-01"})
    await nursery.start(fake.run)
    betas = "claude-code-20250219,interleaved-thinking-2025-05-14"
    async with httpx.AsyncClient(base_url=fake.base_url, headers=HEADERS) as client:
        body = {"model": MODEL, "max_tokens": 10, "messages": HELLO}
        ok = await client.post(
            "/v1/messages?beta=true", headers={"anthropic-beta": betas}, json=body
        )
        assert ok.status_code == 200
        assert fake.received[-1].query == "beta=true"
        assert fake.received[-1].headers["anthropic-beta"] == betas
        refused = await client.post(
            "/v1/messages",
            headers={"anthropic-beta": f"{betas}, retired-beta-2024-01-01"},
            json=body,
        )
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith(
        "Unexpected value(s) `retired-beta-2024-01-01` for the `anthropic-beta` header."
    )


# ---------------------------------------------------------------------------------------------
# count_tokens and models
# ---------------------------------------------------------------------------------------------


async def test_count_tokens(sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    counted = await sdk.messages.count_tokens(
        model=MODEL,
        system="Be brief.",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    # 2 (system) + 6 (message) + 1 (tool name) + 5 (tool description)
    assert counted.input_tokens == 14
    assert fake.received[-1].path == "/v1/messages/count_tokens"
    fake.enqueue_count(2095, rate_limited())
    assert (await sdk.messages.count_tokens(model=MODEL, messages=HELLO)).input_tokens == 2095
    with pytest.raises(anthropic.RateLimitError):
        await sdk.messages.count_tokens(model=MODEL, messages=HELLO)
    assert (await sdk.messages.count_tokens(model=MODEL, messages=HELLO)).input_tokens == 2


@pytest.mark.parametrize("field", ["max_tokens", "stream", "metadata", "stop_sequences"])
async def test_count_tokens_refuses_create_only_fields(http: httpx.AsyncClient, field: str) -> None:
    values = {"max_tokens": 10, "stream": True, "metadata": {}, "stop_sequences": ["x"]}
    response = await http.post(
        "/v1/messages/count_tokens?beta=true",
        json={"model": MODEL, "messages": HELLO, field: values[field]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == f"{field}: Extra inputs are not permitted"


async def test_count_tokens_of_an_unknown_model(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/messages/count_tokens", json={"model": "claude-nope", "messages": HELLO}
    )
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found_error", "message": "model: claude-nope"}


async def test_models_paged_through_the_sdk_auto_pager(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    ids = [model.id async for model in sdk.models.list(limit=2)]
    assert ids == [m.id for m in sorted(MODELS, key=lambda m: m.created_at, reverse=True)]
    assert ids[0] == "claude-opus-4-5-20251101"  # newest first
    queries = [r.query for r in fake.requests_to("/v1/models")]
    assert queries == [
        "limit=2",
        f"limit=2&after_id={ids[1]}",
        f"limit=2&after_id={ids[3]}",
    ]


async def test_models_page_shape_and_cursors(http: httpx.AsyncClient) -> None:
    first = (await http.get("/v1/models", params={"limit": 4})).json()
    ids = [m["id"] for m in first["data"]]
    assert first["has_more"] is True
    assert (first["first_id"], first["last_id"]) == (ids[0], ids[-1])
    assert first["data"][0] == {
        "type": "model",
        "id": "claude-opus-4-5-20251101",
        "display_name": "Claude Opus 4.5",
        "created_at": "2025-11-24T00:00:00Z",
        "max_input_tokens": 200000,
        "max_tokens": 64000,
        "lifecycle": "active",
    }
    rest = (await http.get("/v1/models", params={"after_id": ids[-1]})).json()
    assert rest["has_more"] is False
    assert len(rest["data"]) == len(MODELS) - 4
    back = (await http.get("/v1/models", params={"before_id": ids[-1], "limit": 2})).json()
    assert [m["id"] for m in back["data"]] == ids[1:3]
    assert back["has_more"] is True
    everything = (await http.get("/v1/models", params={"limit": 1000})).json()
    assert everything["has_more"] is False
    assert len(everything["data"]) == len(MODELS)
    too_many = await http.get("/v1/models", params={"limit": 1001})
    assert too_many.status_code == 400


async def test_one_model_by_id_or_alias(sdk: anthropic.AsyncAnthropic) -> None:
    model = await sdk.models.retrieve("claude-sonnet-4-5")
    assert model.id == "claude-sonnet-4-5-20250929"
    assert model.display_name == "Claude Sonnet 4.5"
    with pytest.raises(anthropic.NotFoundError):
        await sdk.models.retrieve("claude-nope")


# ---------------------------------------------------------------------------------------------
# Stop reasons, cache usage, server tools and citations
# ---------------------------------------------------------------------------------------------


async def test_stop_reasons(sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    fake.enqueue(max_tokens_stop(), stop_sequence_stop(), stop_sequence_stop(sequence="END"))
    cut = await sdk.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    assert cut.stop_reason == "max_tokens"
    stopped = await sdk.messages.create(
        model=MODEL, max_tokens=100, messages=HELLO, stop_sequences=["three", "four"]
    )
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "three")
    async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        streamed = await stream.get_final_message()
    assert (streamed.stop_reason, streamed.stop_sequence) == ("stop_sequence", "END")


async def test_echo_is_cut_at_max_tokens(sdk: anthropic.AsyncAnthropic) -> None:
    message = await sdk.messages.create(
        model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "one two three"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: one"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


async def test_refusal_carries_stop_details(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    fake.enqueue(refusal(), refusal(category="bio"))
    message = await sdk.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    assert message.stop_reason == "refusal"
    assert message.stop_details is not None
    assert message.stop_details.category == "cyber"
    async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        streamed = await stream.get_final_message()
    assert streamed.stop_reason == "refusal"
    assert streamed.stop_details is not None
    assert streamed.stop_details.category == "bio"


async def test_cache_usage_fields(sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    cached = Answer(cache_read_input_tokens=1800, cache_creation_5m_tokens=300)
    fake.enqueue(cached, cached, Answer(cache_creation_1h_tokens=50, repeat_input_usage=False))
    message = await sdk.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (2, 1800)
    assert usage.cache_creation_input_tokens == 300
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_5m_input_tokens == 300
    assert usage.cache_creation.ephemeral_1h_input_tokens == 0
    async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        streamed = await stream.get_final_message()
    assert streamed.usage.model_dump() == usage.model_dump()
    events = dict(parse_event_stream(fake.sent[-1].body))
    assert events["message_delta"]["usage"] == {
        "input_tokens": 2,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 1800,
        "output_tokens": 3,
    }
    async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        plain = await stream.get_final_message()
    assert plain.usage.cache_creation_input_tokens == 50
    assert dict(parse_event_stream(fake.sent[-1].body))["message_delta"]["usage"] == {
        "output_tokens": 3
    }


async def test_web_search_and_citations_stream_whole(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    fake.enqueue(web_search_answer(), web_search_answer())
    message = await sdk.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        streamed = await stream.get_final_message()
    for answer in (message, streamed):
        assert [b.type for b in answer.content] == [
            "server_tool_use",
            "web_search_tool_result",
            "text",
        ]
        search, result, text = answer.content
        assert search.type == "server_tool_use"
        assert search.input == {"query": "weather in Paris today"}
        assert result.type == "web_search_tool_result"
        assert result.tool_use_id == search.id
        assert text.type == "text"
        assert text.citations is not None
        assert text.citations[0].type == "web_search_result_location"
        assert answer.usage.server_tool_use is not None
        assert answer.usage.server_tool_use.web_search_requests == 1
    deltas = [
        data["delta"]["type"]
        for name, data in parse_event_stream(fake.sent[-1].body)
        if name == "content_block_delta" and data["index"] == 2
    ]
    assert deltas[0] == "citations_delta"


async def test_novel_blocks_and_several_texts(http: httpx.AsyncClient, fake: FakeAnthropic) -> None:
    fake.enqueue(Answer((Thinking("Hmm."), Text("One."), Text("Two words.", pieces=2))))
    body = (await create(http, stream=True)).content
    events = parse_event_stream(body)
    texts = [
        data["delta"]["text"]
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "text_delta"
    ]
    assert texts == ["One.", "Two w", "ords."]
    stops = [data["index"] for name, data in events if name == "content_block_stop"]
    assert stops == [0, 1, 2]
    assert [name for name, _ in events].count("ping") == 1


# ---------------------------------------------------------------------------------------------
# Broken answers
# ---------------------------------------------------------------------------------------------


async def test_cut_stream_drops_the_connection_before_message_stop(
    http: httpx.AsyncClient, fake: FakeAnthropic
) -> None:
    fake.enqueue(CutMidStream(after_events=5))
    chunks: list[bytes] = []
    with pytest.raises(httpx.RemoteProtocolError):
        await read_stream(http, chunks)
    names = [name for name, _ in parse_event_stream(b"".join(chunks))]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
    ]


async def test_stream_ended_early_goes_unnoticed_by_the_sdk(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    fake.enqueue(CutMidStream(after_events=5, drop_connection=False))
    async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        message = await stream.get_final_message()
    assert message.stop_reason is None  # the only sign the answer is incomplete
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello"


async def test_cut_json_body(http: httpx.AsyncClient, fake: FakeAnthropic) -> None:
    fake.enqueue(CutMidStream())
    with pytest.raises(httpx.RemoteProtocolError):
        await create(http)


async def test_mid_stream_error_not_streamed_is_a_529(
    http: httpx.AsyncClient, fake: FakeAnthropic
) -> None:
    fake.enqueue(FailMidStream())
    response = await create(http)
    assert response.status_code == 529
    assert response.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}


async def test_garbage_and_raw_events(http: httpx.AsyncClient, fake: FakeAnthropic) -> None:
    fake.enqueue(garbage(), event_stream({"type": "message_stop"}, b"event: odd\ndata: {}\n\n"))
    response = await create(http)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"
    assert response.content == b"<html>oops</html>"
    raw = await create(http, stream=True)
    assert raw.content == (
        b'event: message_stop\ndata: {"type":"message_stop"}\n\nevent: odd\ndata: {}\n\n'
    )


async def test_echo_ends_at_a_stop_sequence(sdk: anthropic.AsyncAnthropic) -> None:
    message = await sdk.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": "one two STOP three"}],
        stop_sequences=["three", " STOP"],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: one two"
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", " STOP")


async def test_max_tokens_zero_says_nothing(http: httpx.AsyncClient) -> None:
    message = (await create(http, max_tokens=0)).json()
    assert message["content"] == []
    assert message["stop_reason"] == "max_tokens"


async def test_forced_tool_choice_calls_the_tool_by_default(
    sdk: anthropic.AsyncAnthropic,
) -> None:
    clock: ToolParam = {
        "name": "get_time",
        "input_schema": {
            "type": "object",
            "properties": {"zone": {"type": "string"}, "precise": {"type": "boolean"}},
            "required": ["zone"],
        },
    }
    message = await sdk.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=HELLO,
        tools=[WEATHER_TOOL, clock],
        tool_choice={"type": "tool", "name": "get_time"},
    )
    assert message.stop_reason == "tool_use"
    call = message.content[0]
    assert call.type == "tool_use"
    assert (call.name, call.input) == ("get_time", {"zone": "sample"})
    anything = await sdk.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=HELLO,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any"},
    )
    assert anything.content[0].type == "tool_use"
    assert anything.content[0].name == "get_weather"


async def test_novel_fields_and_events_are_tolerated_by_the_sdk(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    fake.enqueue(Answer(novel_fields=True), Answer(novel_fields=True))
    message = await sdk.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    assert message.model_dump()[NOVEL_FIELD] == NOVEL_VALUE
    body = msgspec.json.decode(fake.sent[-1].body)
    assert body["content"][0][NOVEL_FIELD] == NOVEL_VALUE
    async with sdk.messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content[0].type == "text"
    assert streamed.content[0].text == "echo: hello there"
    events = parse_event_stream(fake.sent[-1].body)
    assert events[1][0] == NOVEL_EVENT
    assert all(data[NOVEL_FIELD] == NOVEL_VALUE for _, data in events[2:])


async def test_client_leaving_mid_stream_is_counted(
    http: httpx.AsyncClient, fake: FakeAnthropic
) -> None:
    fake.enqueue(Answer((Text("many words " * 50),), interval_s=0.02))
    body = {"model": MODEL, "max_tokens": 1000, "messages": HELLO, "stream": True}
    async with http.stream("POST", "/v1/messages", json=body) as response:
        async for _ in response.aiter_bytes():
            break
    with trio.fail_after(5):
        while fake.disconnects == 0:
            await trio.sleep(0.01)
    assert b"message_stop" not in fake.sent[-1].body


async def test_hold_keeps_calls_in_flight(http: httpx.AsyncClient, fake: FakeAnthropic) -> None:
    fake.hold = trio.Event()
    answers: list[httpx.Response] = []

    async def call() -> None:
        answers.append(await create(http))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        with trio.fail_after(5):
            while not fake.received:
                await trio.sleep(0.01)
        assert answers == []
        fake.hold.set()
    assert answers[0].status_code == 200


async def test_beta_messages_through_the_sdk(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    message = await sdk.beta.messages.create(
        model=MODEL,
        max_tokens=100,
        messages=[{"role": "user", "content": "hello there"}],
        betas=["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"],
    )
    assert message.content[0].type == "text"
    request = fake.received[-1]
    # SDK 2.16 keeps its beta qualifier to itself: no ?beta=true on the wire (Claude Code and
    # SDK 0.x send it; test_betas_are_recorded_and_refused_ones_answered_400 covers that).
    assert (request.path, request.query) == ("/v1/messages", "")
    assert request.headers["anthropic-beta"] == (
        "interleaved-thinking-2025-05-14,context-1m-2025-08-07"
    )


async def test_bodies_over_the_size_limit_are_refused(nursery: trio.Nursery) -> None:
    fake = FakeAnthropic(max_body_bytes=1000)
    big: MessageParam = {"role": "user", "content": "x " * 600}
    await nursery.start(fake.run)
    client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=KEY, max_retries=0)
    try:
        with pytest.raises(anthropic.ContentTooLargeError) as caught:
            await client.messages.create(model=MODEL, max_tokens=10, messages=[big])
    finally:
        await client.close()
    assert caught.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]


async def test_stall_mid_stream(http: httpx.AsyncClient, fake: FakeAnthropic) -> None:
    fake.enqueue(StallMidStream(after_events=4, seconds=0.3))
    arrivals: list[tuple[float, bytes]] = []
    body = {"model": MODEL, "max_tokens": 100, "messages": HELLO, "stream": True}
    async with http.stream("POST", "/v1/messages", json=body) as response:
        async for chunk in response.aiter_bytes():
            arrivals.append((trio.current_time(), chunk))
    received = b"".join(chunk for _, chunk in arrivals)
    assert [name for name, _ in parse_event_stream(received)][-1] == "message_stop"
    before = [t for t, chunk in arrivals if b"content_block_delta" in chunk]
    # The wait comes after the 4th event (the first delta), so the deltas arrive apart.
    assert before[-1] - before[0] >= 0.3


async def test_count_tokens_matches_the_usage_of_the_same_request(
    sdk: anthropic.AsyncAnthropic,
) -> None:
    messages: list[MessageParam] = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"a": 1}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "sunny and warm"}],
                }
            ],
        },
    ]
    counted = await sdk.messages.count_tokens(
        model=MODEL, system="Be brief.", messages=messages, tools=[WEATHER_TOOL]
    )
    message = await sdk.messages.create(
        model=MODEL, max_tokens=100, system="Be brief.", messages=messages, tools=[WEATHER_TOOL]
    )
    # 2 system + 3 + 1 text + 1 tool input + 3 tool result + 6 tool name and description
    assert counted.input_tokens == message.usage.input_tokens == 16


async def test_a_revoked_upstream_key_is_scriptable(
    sdk: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    fake.enqueue(invalid_key(), permission_denied())
    with pytest.raises(anthropic.AuthenticationError):
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    with pytest.raises(anthropic.PermissionDeniedError):
        await sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO)


async def test_the_shared_fixture_serves(fake_anthropic: FakeAnthropic) -> None:
    assert not fake_anthropic.base_url.endswith("/v1")
    async with httpx.AsyncClient(base_url=fake_anthropic.base_url, headers=HEADERS) as client:
        response = await client.get("/v1/models/claude-haiku-4-5")
    assert response.json()["id"] == "claude-haiku-4-5-20251001"


async def test_temperature_and_top_p_together_only_on_older_models(
    http: httpx.AsyncClient,
) -> None:
    unset = await create(http, temperature=0.5, top_p=None)
    assert unset.status_code == 200
    older = await create(http, model="claude-sonnet-4-20250514", temperature=0.5, top_p=0.9)
    assert older.status_code == 200
    newer = await create(http, temperature=0.5, top_p=0.9)
    assert newer.status_code == 400
