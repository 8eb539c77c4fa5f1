"""End to end: the official openai SDK → the whole gateway → a fake Anthropic upstream (issue 16).

Each test checks both sides: the exact Messages request the fake received (``x-api-key``, the
pinned ``anthropic-version``, only Messages fields) and what the OpenAI client got back.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
import trio

from proxy.pricing import Pricer, TokenCounts
from proxy.service import RunningService
from tests.conftest import StartGateway, logged, on_each_backend, sdk
from tests.fakes.anthropic_answers import (
    Answer,
    CutMidStream,
    FailMidStream,
    Text,
    ToolUse,
    max_tokens_stop,
    refusal,
    thinking_answer,
    tool_use,
)
from tests.fakes.anthropic_upstream import DEFAULT_API_KEY, MODELS, FakeAnthropic, ModelInfo
from tests.fakes.anthropic_wire import invalid_key, overloaded, rate_limited

MODEL = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "hello there claude"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PNG_DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def anthropic_config(fake: FakeAnthropic, api_key: str = DEFAULT_API_KEY) -> dict[str, Any]:
    return {
        "providers": {
            "anthropic": {"base_url": fake.base_url, "api_key": api_key, "timeout_s": 5},
            "ollama": {"enabled": False},
        }
    }


@pytest.fixture
async def gateway(start_gateway: StartGateway, fake_anthropic: FakeAnthropic) -> RunningService:
    """The gateway with only its anthropic provider, pointed at the fake."""
    return await start_gateway(anthropic_config(fake_anthropic))


def extra(model: Any, name: str) -> Any:
    """An extension field the SDK keeps but does not declare (reasoning_content, extra_content)."""
    return (model.model_extra or {}).get(name)


async def collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


def last_create(fake: FakeAnthropic) -> Any:
    return fake.requests_to("/v1/messages")[-1]


# -- text ------------------------------------------------------------------------------------


async def test_plain_call_is_a_messages_request_and_an_openai_answer(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    completion = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "system", "content": "Be brief."}, *HELLO], user="u-7"
    )
    sent = last_create(fake_anthropic)
    assert sent.headers["x-api-key"] == DEFAULT_API_KEY
    assert "authorization" not in sent.headers
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert DEFAULT_API_KEY not in sent.path + sent.query
    assert sent.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there claude"}]}],
        "system": [{"type": "text", "text": "Be brief."}],
        "max_tokens": 64_000,
        "metadata": {"user_id": "u-7"},
    }
    (choice,) = completion.choices
    assert choice.message.content == "echo: hello there claude"
    assert choice.finish_reason == "stop"
    assert completion.id.startswith("msg_")
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    (row,) = await logged(gateway)
    assert (row["provider"], row["status"], row["upstream_model"]) == ("anthropic", "ok", MODEL)
    assert row["prompt_tokens"] == completion.usage.prompt_tokens
    assert row["cost_usd"] is not None


@on_each_backend
async def test_streamed_call_with_usage(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    chunks = await collect(
        await sdk(gateway).chat.completions.create(
            model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    sent = last_create(fake_anthropic)
    assert sent.body["stream"] is True
    assert "stream_options" not in sent.body
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there claude"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    (row,) = await logged(gateway)
    assert row["completion_tokens"] == chunks[-1].usage.completion_tokens


@pytest.mark.parametrize(
    ("answer", "finish"), [(max_tokens_stop(), "length"), (refusal(), "content_filter")]
)
async def test_stop_reasons_become_finish_reasons(
    gateway: RunningService, fake_anthropic: FakeAnthropic, answer: Answer, finish: str
) -> None:
    fake_anthropic.enqueue(answer)
    completion = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.choices[0].finish_reason == finish


# -- thinking and tools ------------------------------------------------------------------------


async def test_reasoning_effort_thinks_and_answers_reasoning_content(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(thinking_answer("Pondering the greeting.", "Hi!"))
    completion = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, reasoning_effort="low", temperature=0.3
    )
    sent = last_create(fake_anthropic).body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert "temperature" not in sent
    message = completion.choices[0].message
    assert message.content == "Hi!"
    assert extra(message, "reasoning_content") == "Pondering the greeting."


@pytest.mark.parametrize("stream", [False, True])
async def test_tools_over_two_turns_with_thinking_signatures_carried(
    gateway: RunningService, fake_anthropic: FakeAnthropic, stream: bool
) -> None:
    client = sdk(gateway)
    question = {"role": "user", "content": "What is the weather in Paris?"}
    fake_anthropic.enqueue(tool_use(ToolUse(), thinking="I need the weather tool.", redacted=True))
    first: dict[str, Any] = {
        "model": MODEL,
        "messages": [question],
        "tools": [WEATHER_TOOL],
        "reasoning_effort": "medium",
    }
    if stream:
        chunks = await collect(await client.chat.completions.create(**first, stream=True))
        calls = [c for ch in chunks if ch.choices for c in ch.choices[0].delta.tool_calls or ()]
        head = calls[0]
        call_id, name = head.id, head.function.name
        arguments = "".join(c.function.arguments or "" for c in calls)
        carried = extra(head, "extra_content")
        reasoning = "".join(
            extra(ch.choices[0].delta, "reasoning_content") or "" for ch in chunks if ch.choices
        )
        assistant: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "reasoning_content": reasoning,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                    "extra_content": carried,
                }
            ],
        }
    else:
        completion = await client.chat.completions.create(**first)
        (choice,) = completion.choices
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls or []
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
        carried = extra(call, "extra_content")
        reasoning = extra(choice.message, "reasoning_content")
        assistant = choice.message.model_dump(exclude_none=True)
    assert call_id.startswith("toolu_")
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris"}
    assert reasoning == "I need the weather tool."
    blocks = carried["anthropic"]["thinking_blocks"]
    assert [b["type"] for b in blocks] == ["thinking", "redacted_thinking"]

    # The client sends the assistant message back with the tool result: the fake checks the
    # thinking blocks came back byte-identical before the tool_use, or it answers 400.
    result = {"role": "tool", "tool_call_id": call_id, "content": '{"temp_c": 18}'}
    second = await client.chat.completions.create(
        model=MODEL,
        messages=[question, assistant, result],
        tools=[WEATHER_TOOL],
        reasoning_effort="medium",
    )
    sent = last_create(fake_anthropic).body
    assert sent["messages"][1]["content"][:2] == blocks
    assert sent["messages"][1]["content"][2] == {
        "type": "tool_use",
        "id": call_id,
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert sent["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call_id, "content": '{"temp_c": 18}'}],
    }
    assert second.choices[0].finish_reason == "stop"


async def test_thinking_survives_a_client_that_drops_extra_content(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    client = sdk(gateway)
    question = {"role": "user", "content": "Weather in Oslo?"}
    fake_anthropic.enqueue(tool_use(ToolUse(input={"city": "Oslo"}), thinking="Use the tool."))
    first = await client.chat.completions.create(
        model=MODEL, messages=[question], tools=[WEATHER_TOOL], reasoning_effort="low"
    )
    (call,) = first.choices[0].message.tool_calls or []
    bare = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": call.function.arguments},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": call.id, "content": "-3 C"}
    second = await client.chat.completions.create(
        model=MODEL,
        messages=[question, bare, result],
        tools=[WEATHER_TOOL],
        reasoning_effort="low",
    )
    assert second.choices[0].finish_reason == "stop"
    assert last_create(fake_anthropic).body["messages"][1]["content"][0]["type"] == "thinking"


async def test_parallel_tool_calls_false_is_told_to_claude(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(tool_use(ToolUse(), ToolUse(input={"city": "Rome"})))
    completion = await sdk(gateway).chat.completions.create(
        model=MODEL,
        messages=HELLO,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert last_create(fake_anthropic).body["tool_choice"] == {
        "type": "any",
        "disable_parallel_tool_use": True,
    }
    # Claude was told, so the gateway hands on what it answered.
    assert len(completion.choices[0].message.tool_calls or []) == 2


# -- images, cache, errors ---------------------------------------------------------------------


async def test_images_go_inline_or_as_url_sources(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    await sdk(gateway).chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare these."},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                    {"type": "image_url", "image_url": {"url": "https://images.example/cat.jpg"}},
                ],
            }
        ],
    )
    content = last_create(fake_anthropic).body["messages"][0]["content"]
    assert content[1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": PNG_DATA_URL.split(",", 1)[1],
    }
    # Claude fetches addresses itself: the gateway does not.
    assert content[2]["source"] == {"type": "url", "url": "https://images.example/cat.jpg"}
    (row,) = await logged(gateway)
    assert row["has_images"] is True


@on_each_backend
async def test_cache_usage_is_reported_logged_and_priced_with_write_and_read_rates(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(
        Answer((Text("cached"),), cache_read_input_tokens=3000, cache_creation_5m_tokens=2000)
    )
    completion = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 3000
    assert extra(usage, "cache_creation_input_tokens") == 2000
    uncached = usage.prompt_tokens - 5000
    assert uncached > 0
    (row,) = await logged(gateway)
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (
        usage.prompt_tokens,
        3000,
        2000,
    )
    tokens = TokenCounts(usage.prompt_tokens, usage.completion_tokens, 3000, 2000)
    expected = Pricer().cost(provider="anthropic", upstream_model=MODEL, alias=None, tokens=tokens)
    assert row["cost_usd"] == pytest.approx(expected)
    # Sonnet 4.5: $3 per million input, $3.75 written, $0.30 read, $15 output.
    by_hand = (uncached * 3 + 2000 * 3.75 + 3000 * 0.3 + usage.completion_tokens * 15) / 1e6
    assert row["cost_usd"] == pytest.approx(by_hand)


async def test_rate_limit_passes_retry_after_on(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(rate_limited("17"))
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "17"
    (row,) = await logged(gateway)
    assert (row["status"], row["http_status"]) == ("error", 429)


async def test_overloaded_is_503_with_retry_after_and_counted_by_the_breaker(
    start_gateway: StartGateway, fake_anthropic: FakeAnthropic
) -> None:
    config = anthropic_config(fake_anthropic)
    config["providers"]["anthropic"]["breaker_failures"] = 2
    gateway = await start_gateway(config)
    fake_anthropic.enqueue(overloaded("3"), overloaded("3"))
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
        assert caught.value.status_code == 503
        assert caught.value.response.headers["retry-after"] == "3"
        assert "overloaded" in caught.value.message.lower()
    calls = len(fake_anthropic.requests_to("/v1/messages"))
    # Two overloads in a row opened the breaker: the next call is refused without asking.
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.status_code == 503
    assert "circuit breaker" in caught.value.message
    assert len(fake_anthropic.requests_to("/v1/messages")) == calls


async def test_bad_gateway_key_is_502_not_the_clients_problem(
    start_gateway: StartGateway, fake_anthropic: FakeAnthropic
) -> None:
    gateway = await start_gateway(anthropic_config(fake_anthropic, api_key="sk-ant-wrong-key"))
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert not isinstance(caught.value, openai.AuthenticationError)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_failed"
    assert "sk-ant-wrong-key" not in caught.value.message
    assert fake_anthropic.received[-1].headers["x-api-key"] == "sk-ant-wrong-key"
    fake_anthropic.enqueue(invalid_key())  # a key revoked mid-service: the same
    with pytest.raises(openai.InternalServerError):
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)


async def test_unknown_model_is_not_found_and_bad_input_is_claudes_400(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk(gateway).chat.completions.create(model="claude-does-not-exist", messages=HELLO)
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, temperature=1.7)
    assert bad.value.param == "temperature"


async def test_mid_stream_error_event_reaches_the_client_never_done(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(FailMidStream(after_deltas=2))
    stream = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    got: list[str] = []

    async def read() -> None:
        async for chunk in stream:
            got.extend(c.delta.content or "" for c in chunk.choices)

    with pytest.raises(openai.APIError) as caught:
        await read()
    assert "".join(got)  # the text before the error reached the client
    assert "Overloaded" in str(caught.value)
    (row,) = await logged(gateway)
    assert row["status"] == "error"


async def test_cut_stream_is_an_error_not_a_clean_end(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(CutMidStream(after_events=4))
    stream = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    (row,) = await logged(gateway)
    assert row["status"] == "error"


# -- models ------------------------------------------------------------------------------------


async def test_models_list_reads_every_page(
    start_gateway: StartGateway, nursery: trio.Nursery
) -> None:
    many = [
        ModelInfo(f"claude-test-{n:04d}", f"Test {n}", f"2025-01-01T00:{n // 60:02d}:{n % 60:02d}Z")
        for n in range(1003)
    ]
    fake = FakeAnthropic(models=[*MODELS, *many])
    await nursery.start(fake.run)
    gateway = await start_gateway(anthropic_config(fake))
    page = await sdk(gateway).models.list()
    ids = {model.id for model in page.data}
    assert {m.id for m in MODELS} <= ids
    assert {m.id for m in many} <= ids
    listings = fake.requests_to("/v1/models")
    assert [r.query.startswith("limit=1000") for r in listings] == [True, True]
    assert "after_id=" in listings[1].query
    assert all(r.headers["x-api-key"] == DEFAULT_API_KEY for r in listings)
    created = {model.id: model.created for model in page.data}
    assert created["claude-sonnet-4-5-20250929"] == 1759104000


async def test_models_list_falls_back_when_the_upstream_cannot_be_asked(
    start_gateway: StartGateway, fake_anthropic: FakeAnthropic
) -> None:
    gateway = await start_gateway(anthropic_config(fake_anthropic, api_key="sk-ant-wrong-key"))
    page = await sdk(gateway).models.list()
    ids = {model.id for model in page.data}
    assert {"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5"} <= ids


async def test_responses_api_reaches_claude_through_the_chat_path(
    gateway: RunningService, fake_anthropic: FakeAnthropic
) -> None:
    response = await sdk(gateway).responses.create(
        model=MODEL, input="hello from responses", instructions="Be brief.", store=False
    )
    sent = last_create(fake_anthropic).body
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["messages"][-1]["content"][-1] == {"type": "text", "text": "hello from responses"}
    assert response.output_text == "echo: hello from responses"
    assert response.status == "completed"
