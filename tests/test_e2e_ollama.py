"""End to end: the official openai SDK → the whole gateway → a fake Ollama server on a socket."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, http, logged, sdk
from tests.fakes.ollama_upstream import (
    CutStream,
    ErrorReply,
    FakeOllama,
    Garbage,
    MidStreamError,
    Reply,
    StallMidStream,
    ToolCalls,
)

HELLO = [{"role": "user", "content": "hello there gateway"}]
MODEL = "ollama/llama3.2"
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/"
    "iZk9HQAAAABJRU5ErkJggg=="
)


@pytest.fixture
async def gateway(start_gateway: StartGateway, fake_ollama: FakeOllama) -> RunningService:
    """The gateway with its ollama provider pointed at the fake server."""
    return await start_gateway(
        {"providers": {"ollama": {"base_url": fake_ollama.base_url, "timeout_s": 5}}}
    )


def chat_requests(fake: FakeOllama) -> list[Any]:
    """Bodies of the chat calls the fake received (it is also asked for its model list)."""
    return [r.body for r in fake.received if r.path == "/api/chat"]


# -- text ---------------------------------------------------------------------------------------


async def test_non_streaming_text_is_translated_both_ways_and_logged_free(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    raw = await sdk(gateway).chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "developer", "content": "Be terse."}, *HELLO],
        max_tokens=50,
        temperature=0.5,
        stop=["END"],
        seed=7,
    )
    completion = raw.parse()
    assert raw.headers["x-llm-proxy-provider"] == "ollama"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "llama3.2"
    assert completion.object == "chat.completion"
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello there gateway"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 4)
    assert completion.usage.total_tokens == 9

    sent = fake_ollama.received[-1]
    assert (sent.method, sent.path) == ("POST", "/api/chat")
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert sent.body == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "hello there gateway"},
        ],
        "stream": False,
        "options": {"num_predict": 50, "stop": ["END"], "temperature": 0.5, "seed": 7},
    }

    (row,) = await logged(gateway)
    assert row["status"] == "ok"
    assert row["provider"] == "ollama"
    assert row["model"] == MODEL
    assert row["upstream_model"] == "llama3.2"
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (5, 4, 9)
    assert row["cost_usd"] == 0.0  # self-hosted is free


async def test_stream_without_usage_hides_the_usage_chunk_but_logs_it(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    stream = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there gateway"
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert fake_ollama.received[-1].body == {
        "model": "llama3.2",
        "messages": HELLO,
        "stream": True,
    }

    (row,) = await logged(gateway)
    assert row["stream"] == 1
    assert (row["prompt_tokens"], row["completion_tokens"]) == (3, 4)
    assert row["cost_usd"] == 0.0
    assert row["ttft_ms"] is not None


async def test_stream_with_usage_forwards_the_usage_chunk(gateway: RunningService) -> None:
    stream = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 4)


async def test_stream_is_sse_ending_with_done(gateway: RunningService) -> None:
    async with (
        http(gateway) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": MODEL, "messages": HELLO, "stream": True},
        ) as response,
    ):
        body = (await response.aread()).decode()
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [part for part in body.split("\n\n") if part]
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0].removeprefix("data: "))
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}


async def test_cached_prompt_without_prompt_eval_count_counts_zero(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.enqueue(Reply(text="hi again", prompt_cached=True))
    stream = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    usage = [chunk async for chunk in stream][-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (0, 2, 2)


async def test_length_and_json_format(gateway: RunningService, fake_ollama: FakeOllama) -> None:
    fake_ollama.enqueue(Reply(text='{"a": 1', done_reason="length"))
    completion = await sdk(gateway).chat.completions.create(
        model=MODEL,
        messages=HELLO,
        response_format={"type": "json_object"},
        max_completion_tokens=3,
    )
    assert completion.choices[0].finish_reason == "length"
    sent = chat_requests(fake_ollama)[-1]
    assert sent["format"] == "json"
    assert sent["options"] == {"num_predict": 3}


# -- thinking -----------------------------------------------------------------------------------


async def test_thinking_becomes_reasoning_content(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.enqueue(Reply(text="42.", thinking="Six times seven."))
    completion = await sdk(gateway).chat.completions.create(
        model="ollama/qwen3:8b", messages=HELLO, reasoning_effort="high"
    )
    message = completion.choices[0].message
    assert message.content == "42."
    assert (message.model_extra or {})["reasoning_content"] == "Six times seven."
    sent = chat_requests(fake_ollama)[-1]
    assert (sent["model"], sent["think"]) == ("qwen3:8b", "high")


async def test_streamed_thinking_becomes_reasoning_content_deltas(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.enqueue(Reply(text="42.", thinking="Six times seven."))
    stream = await sdk(gateway).chat.completions.create(
        model="ollama/qwen3:8b", messages=HELLO, stream=True, reasoning_effort="none"
    )
    reasoning, content = "", ""
    async for chunk in stream:
        for choice in chunk.choices:
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
            content += choice.delta.content or ""
    assert (reasoning, content) == ("Six times seven.", "42.")
    assert chat_requests(fake_ollama)[-1]["think"] is False


# -- tools --------------------------------------------------------------------------------------


async def test_tool_round_trip(gateway: RunningService, fake_ollama: FakeOllama) -> None:
    client = sdk(gateway)
    question = [{"role": "user", "content": "Weather in Paris?"}]
    fake_ollama.enqueue(ToolCalls())
    first = await client.chat.completions.create(
        model=MODEL, messages=question, tools=TOOLS, tool_choice="auto"
    )
    (choice,) = first.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert chat_requests(fake_ollama)[-1]["tools"] == TOOLS
    assert "tool_choice" not in chat_requests(fake_ollama)[-1]

    answer = await client.chat.completions.create(
        model=MODEL,
        messages=[
            *question,
            choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'},
        ],
        tools=TOOLS,
    )
    assert answer.choices[0].message.content == "echo: Weather in Paris?"
    sent = chat_requests(fake_ollama)[-1]
    assert sent["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {
            "role": "tool",
            "content": '{"temp_c": 18}',
            "tool_name": "get_weather",
            "tool_call_id": call.id,
        },
    ]


async def test_streamed_tool_calls_arrive_whole(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.enqueue(
        ToolCalls(calls=(("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})))
    )
    stream = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, tools=TOOLS, stream=True
    )
    calls: list[Any] = []
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            calls.extend(choice.delta.tool_calls or [])
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert [c.index for c in calls] == [0, 1]
    assert all(c.id and c.id.startswith("call_") for c in calls)
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]


async def test_tool_choice_none_sends_no_tools(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, tools=TOOLS, tool_choice="none"
    )
    assert "tools" not in chat_requests(fake_ollama)[-1]


# -- images -------------------------------------------------------------------------------------


async def test_image_data_url_becomes_raw_base64(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    await sdk(gateway).chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ],
    )
    assert chat_requests(fake_ollama)[-1]["messages"] == [
        {"role": "user", "content": "What is in this image?", "images": [PNG]}
    ]
    (row,) = await logged(gateway)
    assert row["has_images"] == 1


# -- errors -------------------------------------------------------------------------------------


async def test_unknown_model_is_not_found(gateway: RunningService) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk(gateway).chat.completions.create(model="ollama/nope", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert 'model "nope" not found, try pulling it first' in caught.value.message
    (row,) = await logged(gateway)
    assert row["http_status"] == 404


async def test_unknown_model_on_a_stream_is_not_found_too(gateway: RunningService) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk(gateway).chat.completions.create(
            model="ollama/nope:7b", messages=HELLO, stream=True
        )
    assert caught.value.code == "model_not_found"


async def test_n_above_one_is_rejected_before_the_upstream(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, n=2)
    assert caught.value.param == "n"
    assert chat_requests(fake_ollama) == []


async def test_mid_stream_error_line_reaches_the_client(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.enqueue(MidStreamError(after_chunks=2, message="model runner crashed"))
    stream = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    assert "model runner crashed" in str(caught.value)
    (row,) = await logged(gateway)
    assert row["status"] == "error"
    assert row["error_type"] == "upstream_error"


async def test_cut_stream_raises_in_the_sdk(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.enqueue(CutStream(after_chunks=2))
    stream = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    (row,) = await logged(gateway)
    assert row["status"] == "error"


async def test_cut_non_streaming_answer_is_502(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.enqueue(CutStream())
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.status_code == 502


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        (ErrorReply(500), 502),
        (ErrorReply(502), 502),
        (ErrorReply(400, "registry.ollama.ai/library/llama3.2:latest does not support tools"), 400),
        (Garbage(), 502),
    ],
)
async def test_upstream_errors_are_mapped(
    gateway: RunningService, fake_ollama: FakeOllama, behaviour: Any, status: int
) -> None:
    fake_ollama.enqueue(behaviour)
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.status_code == status
    assert "ollama" in caught.value.message
    (row,) = await logged(gateway)
    assert row["cost_usd"] is None


async def test_upstream_429_is_rate_limited(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.enqueue(ErrorReply(429))
    with pytest.raises(openai.RateLimitError):
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)


async def test_client_gone_mid_stream_cancels_the_upstream(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    fake_ollama.enqueue(StallMidStream(after_chunks=2, seconds=30))
    async with (
        http(gateway) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": MODEL, "messages": HELLO, "stream": True},
        ) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break
    (row,) = await logged(gateway)
    assert row["status"] == "cancelled"
    with trio.fail_after(5):
        while fake_ollama.disconnects == 0:
            await trio.sleep(0.01)


async def test_proxy_key_is_sent_as_bearer(
    start_gateway: StartGateway, nursery: trio.Nursery
) -> None:
    fake = FakeOllama(api_key="sk-ollama-proxy")
    await nursery.start(fake.run)
    gateway = await start_gateway(
        {"providers": {"ollama": {"base_url": fake.base_url, "api_key": "sk-ollama-proxy"}}}
    )
    completion = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.choices[0].message.content == "echo: hello there gateway"
    assert fake.received[-1].headers["authorization"] == "Bearer sk-ollama-proxy"


# -- models -------------------------------------------------------------------------------------


async def test_models_list_ollamas_tags(gateway: RunningService, fake_ollama: FakeOllama) -> None:
    page = await sdk(gateway).models.list()
    owners = {model.id: model.owned_by for model in page.data}
    assert owners["llama3.2:latest"] == "ollama"
    assert owners["qwen3:8b"] == "ollama"
    assert any(r.path == "/api/tags" for r in fake_ollama.received)
    # Ollama's modified_at ("2025-07-01T09:14:05.123456789+02:00") as a Unix time.
    created = {model.id: model.created for model in page.data}
    assert created["llama3.2:latest"] == 1751354045
    assert created["qwen3:8b"] == 1749742664


# -- the fake itself: Ollama's defaults the adapter must not rely on ----------------------------


async def test_fake_streams_ndjson_when_stream_is_missing(fake_ollama: FakeOllama) -> None:
    async with httpx.AsyncClient(base_url=fake_ollama.base_url) as client:
        response = await client.post("/api/chat", json={"model": "llama3.2", "messages": HELLO})
        tags = await client.get("/api/tags")
        wrong = await client.post("/v1/chat/completions", json={})
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert all(line["done"] is False for line in lines[:-1])
    assert lines[-1]["done"] is True
    assert lines[-1]["done_reason"] == "stop"
    assert isinstance(lines[-1]["total_duration"], int)
    (model, *_) = tags.json()["models"]
    assert set(model) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert (wrong.status_code, wrong.text) == (404, "404 page not found")


async def test_pulled_models_route_by_plain_name_and_tag(
    gateway: RunningService, fake_ollama: FakeOllama
) -> None:
    ollama = gateway.gateway.providers["ollama"]
    with trio.fail_after(5):
        while not ollama.known_models():
            await trio.sleep(0.01)
    client = sdk(gateway)
    for name in ("llama3.2", "llama3.2:latest", "qwen3:8b"):
        await client.chat.completions.create(model=name, messages=HELLO)
        assert chat_requests(fake_ollama)[-1]["model"] == name
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="qwen3", messages=HELLO)  # only :8b is pulled


async def test_content_read_with_an_error_line_reaches_the_client_before_it(
    start_gateway: StartGateway, fake_ollama: FakeOllama
) -> None:
    # The content lines and the error line arrive in one read: the content is not lost.
    gateway = await start_gateway(
        {
            "providers": {"ollama": {"base_url": fake_ollama.base_url, "timeout_s": 5}},
            "logging": {"store_bodies": True},
        }
    )
    fake_ollama.enqueue(
        MidStreamError(after_chunks=2, message="model runner crashed", one_write=True)
    )
    async with http(gateway) as client:
        response = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": MODEL, "messages": HELLO, "stream": True},
        )
    assert response.status_code == 200
    assert "[DONE]" not in response.text
    events = [json.loads(e.removeprefix("data: ")) for e in response.text.split("\n\n") if e]
    *chunks, last = events
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "echo: hello"
    assert "model runner crashed" in last["error"]["message"]
    (row,) = await logged(gateway)
    assert row["status"] == "error"
    assert row["response_body"] == "echo: hello"
