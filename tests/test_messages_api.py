"""``/v1/messages`` end to end with the official ``anthropic`` SDK as the client: translated
through chat to providers that do not speak Messages (the OpenAI fake's chat endpoint playing
DeepSeek, the Gemini fake), with Anthropic-shaped errors, ``count_tokens`` and the model list in
Anthropic's paged shape. The passthrough to the Anthropic fake: ``test_messages_anthropic.py``.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
import trio

from proxy.service import RunningService
from tests.claude_code import HEADERS, PATH, claude_code_body
from tests.conftest import CLIENT_KEY, StartGateway, http, logged
from tests.conftest import sdk as sdk_openai
from tests.fakes.gemini_upstream import DEFAULT_API_KEY as GEMINI_KEY
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.gemini_upstream import Thinking as GeminiThinking
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI
from tests.fakes.openai_upstream import Echo as ChatEcho
from tests.fakes.openai_upstream import ToolCalls as ChatToolCalls
from tests.fakes.openai_wire import server_error

DEEPSEEK = "deepseek-chat"
GEMINI = "gemini-2.5-flash"
HELLO: list[Any] = [{"role": "user", "content": "hello there"}]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
PNG_HEAD = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5E"
)
PNG = PNG_HEAD + "rkJggg=="


@pytest.fixture
async def gateway(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, fake_gemini: FakeGemini
) -> RunningService:
    """The gateway with deepseek (the OpenAI fake's chat) and gemini, and Claude Code's model
    names as aliases of them."""
    return await start_gateway(
        {
            "providers": {
                "deepseek": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY},
                "gemini": {"base_url": fake_gemini.base_url, "api_key": GEMINI_KEY},
                "ollama": {"enabled": False},
            },
            "models": {
                "claude-sonnet-4-5": {"provider": "deepseek", "model": DEEPSEEK},
                "claude-haiku-4-5": {"provider": "gemini", "model": GEMINI},
            },
        }
    )


def client(gateway: RunningService, key: str = CLIENT_KEY) -> anthropic.AsyncAnthropic:
    """The official Anthropic SDK pointed at the gateway, without retries."""
    return anthropic.AsyncAnthropic(base_url=gateway.base_url, api_key=key, max_retries=0)


async def test_a_plain_message_is_translated_both_ways_and_logged(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(ChatEcho(text="Hi from DeepSeek."))
    message = await client(gateway).messages.create(
        model=DEEPSEEK,
        max_tokens=100,
        system="Be brief.",
        messages=HELLO,
        stop_sequences=["END"],
        metadata={"user_id": "user-42"},
        # SDK 2.x speaks 2026-10-21, which has no temperature; Claude Code's 2023-06-01 has.
        extra_headers={"anthropic-version": "2023-06-01"},
        extra_body={"temperature": 0.5},
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.model == DEEPSEEK
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hi from DeepSeek."  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0
    sent = fake_openai.received[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there"},
    ]
    assert (sent["max_tokens"], sent["stop"], sent["temperature"]) == (100, ["END"], 0.5)
    assert sent["user"] == "user-42"
    (row,) = await logged(gateway)
    assert (row["endpoint"], row["provider"], row["status"]) == ("messages", "deepseek", "ok")
    assert row["prompt_tokens"] == message.usage.input_tokens + (
        message.usage.cache_read_input_tokens or 0
    )


async def test_the_stream_helper_assembles_the_same_message(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(ChatEcho(text="one two three four", chunks=4))
    whole = await client(gateway).messages.create(model=DEEPSEEK, max_tokens=50, messages=HELLO)
    fake_openai.enqueue(ChatEcho(text="one two three four", chunks=4))
    async with client(gateway).messages.stream(
        model=DEEPSEEK, max_tokens=50, messages=HELLO
    ) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "one two three four"
    assert [b.model_dump() for b in final.content] == [b.model_dump() for b in whole.content]
    assert final.stop_reason == whole.stop_reason == "end_turn"
    assert final.usage.output_tokens == whole.usage.output_tokens
    rows = await logged(gateway, 2)
    assert {(r["endpoint"], r["stream"]) for r in rows} == {("messages", 1), ("messages", 0)}


async def test_every_streamed_event_is_named(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(ChatEcho(text="a b", chunks=2))
    async with http(gateway) as raw:
        answer = await raw.post(
            "/v1/messages",
            json={"model": DEEPSEEK, "max_tokens": 20, "messages": HELLO, "stream": True},
            headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
        )
    assert answer.status_code == 200
    blocks = [b for b in answer.content.split(b"\n\n") if b.strip()]
    names = []
    for block in blocks:
        name_line, data_line = block.split(b"\n")
        name = name_line.removeprefix(b"event: ").decode()
        assert json.loads(data_line.removeprefix(b"data: "))["type"] == name
        names.append(name)
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]


async def test_tools_over_two_turns(gateway: RunningService, fake_openai: FakeOpenAI) -> None:
    sdk = client(gateway)
    question = {"role": "user", "content": "Weather in Paris?"}
    fake_openai.enqueue(ChatToolCalls(name="get_weather", arguments='{"city":"Paris"}'))
    first = await sdk.messages.create(
        model=DEEPSEEK,
        max_tokens=100,
        messages=[question],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
    )
    assert first.stop_reason == "tool_use"
    (use,) = [block for block in first.content if block.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"})
    sent = fake_openai.received[-1].body
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert sent["parallel_tool_calls"] is False
    fake_openai.enqueue(ChatEcho(text="Sunny."))
    second = await sdk.messages.create(
        model=DEEPSEEK,
        max_tokens=100,
        messages=[
            question,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}],
            },
        ],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.content[0].text == "Sunny."  # type: ignore[union-attr]
    messages = fake_openai.received[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == use.id
    assert messages[2]["tool_call_id"] == use.id


async def test_a_streamed_tool_call_assembles_its_input(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(ChatToolCalls(name="get_weather", arguments='{"city":"Oslo"}', fragments=4))
    async with client(gateway).messages.stream(
        model=DEEPSEEK,
        max_tokens=100,
        messages=HELLO,
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        final = await stream.get_final_message()
    (use,) = [block for block in final.content if block.type == "tool_use"]
    assert use.input == {"city": "Oslo"}
    assert final.stop_reason == "tool_use"


async def test_thinking_and_images_through_gemini(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(GeminiThinking(thought_text="Let me look.", answer="A red pixel."))
    message = await client(gateway).messages.create(
        model="claude-haiku-4-5",
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    kinds = [block.type for block in message.content]
    assert kinds == ["thinking", "text"]
    assert message.content[0].thinking == "Let me look."  # type: ignore[union-attr]
    assert message.content[1].text == "A red pixel."  # type: ignore[union-attr]
    parts = fake_gemini.received[-1].body["contents"][0]["parts"]
    assert parts[0]["inlineData"] == {"mimeType": "image/png", "data": PNG}
    assert fake_gemini.received[-1].body["generationConfig"]["thinkingConfig"]
    (row,) = await logged(gateway)
    assert (row["endpoint"], row["provider"], row["has_images"]) == ("messages", "gemini", 1)


async def test_a_server_tool_on_a_translated_provider_is_refused_by_name(
    gateway: RunningService,
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client(gateway).messages.create(
            model=DEEPSEEK,
            max_tokens=100,
            messages=HELLO,
            tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        )
    assert caught.value.type == "invalid_request_error"  # type: ignore[attr-defined]
    assert "tools.0" in caught.value.message


async def test_errors_come_in_anthropics_shape_and_the_sdk_raises_its_classes(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await start_gateway(
        {
            "providers": {
                "deepseek": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY},
                "ollama": {"enabled": False},
            },
            "limits": {"default_client_requests_per_minute": 2},
        }
    )
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        await client(gateway, "sk-not-a-key").messages.create(
            model=DEEPSEEK, max_tokens=10, messages=HELLO
        )
    body = bad_key.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError):
        await client(gateway).messages.create(model="no-such-model", max_tokens=10, messages=HELLO)
    fake_openai.enqueue(server_error())
    with pytest.raises(anthropic.APIStatusError) as upstream:
        await client(gateway).messages.create(model=DEEPSEEK, max_tokens=10, messages=HELLO)
    assert upstream.value.status_code >= 500
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client(gateway).messages.create(model=DEEPSEEK, max_tokens=10, messages=HELLO)
    assert limited.value.response.headers.get("retry-after")
    async with http(gateway) as raw:
        missing = await raw.post(
            "/v1/messages",
            json={"model": DEEPSEEK, "messages": HELLO},
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )
    assert missing.status_code in (400, 429)
    assert missing.json()["type"] == "error"


async def test_a_stream_cut_after_it_began_ends_with_an_error_event(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    from tests.fakes.gemini_upstream import CutStream

    fake_gemini.enqueue(CutStream(after_chunks=2))
    async with http(gateway) as raw:
        answer = await raw.post(
            "/v1/messages",
            json={"model": GEMINI, "max_tokens": 50, "messages": HELLO, "stream": True},
            headers={"x-api-key": CLIENT_KEY},
        )
    names = [b.split(b"\n")[0] for b in answer.content.split(b"\n\n") if b.strip()]
    assert names[0] == b"event: message_start"
    assert names[-1] == b"event: error"
    assert b"event: message_stop" not in names
    (row,) = await logged(gateway)
    assert (row["endpoint"], row["status"]) == ("messages", "error")


async def test_count_tokens_estimates_for_a_translated_provider(gateway: RunningService) -> None:
    sdk = client(gateway)
    short = await sdk.messages.count_tokens(model=DEEPSEEK, messages=HELLO)
    longer = await sdk.messages.count_tokens(
        model=DEEPSEEK,
        system="You are a careful assistant. " * 20,
        messages=HELLO,
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert 0 < short.input_tokens < longer.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        await sdk.messages.count_tokens(model="no-such-model", messages=HELLO)


async def test_the_model_list_comes_in_anthropics_paged_shape(gateway: RunningService) -> None:
    sdk = client(gateway)
    ids = [model.id async for model in sdk.models.list(limit=2)]  # walked two at a time
    assert ids[:2] == ["claude-sonnet-4-5", "claude-haiku-4-5"]  # aliases first
    # The same models as the OpenAI-shaped list, in the same order.
    listed = await sdk_openai(gateway).models.list()
    assert ids == [model.id for model in listed.data]
    one = await sdk.models.retrieve("claude-sonnet-4-5")
    assert (one.type, one.id) == ("model", "claude-sonnet-4-5")
    with pytest.raises(anthropic.NotFoundError):
        await sdk.models.retrieve("no-such-model")


async def test_claude_codes_requests_reach_a_translated_provider(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    # As captured from Claude Code 2.x: ?beta=true, beta and version headers, system blocks with
    # cache_control, tools with $schema, metadata.user_id, thinking, a streamed answer.
    body = claude_code_body("claude-sonnet-4-5")
    headers = HEADERS
    fake_openai.enqueue(ChatToolCalls(name="Bash", arguments='{"command":"ls"}'))
    async with http(gateway) as raw:
        with trio.fail_after(10):
            answer = await raw.post(PATH, json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    events = [
        json.loads(block.split(b"data: ", 1)[1])
        for block in answer.content.split(b"\n\n")
        if block.strip()
    ]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [s["type"] for s in starts] == ["tool_use"]
    assert starts[0]["name"] == "Bash"
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    sent = fake_openai.received[-1].body
    assert sent["model"] == DEEPSEEK
    assert sent["messages"][0]["role"] == "system"
    assert "Claude Code" in json.dumps(sent["messages"][0])
    assert sent["tools"][0]["function"]["name"] == "Bash"
    assert "cache_control" not in json.dumps(sent)
