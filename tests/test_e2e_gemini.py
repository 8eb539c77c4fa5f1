"""End to end: the official openai SDK → the whole gateway → a fake Gemini upstream on a socket.

Each test checks both sides: the exact request the fake received (native Gemini, key in a header)
and what the OpenAI client got back.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import openai
import pytest

from proxy.pricing import Pricer, TokenCounts
from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, http, logged, sdk
from tests.fakes.gemini_upstream import (
    DEFAULT_API_KEY,
    IMAGE_TOKENS,
    CutStream,
    Echo,
    FakeGemini,
    FunctionCall,
    Garbage,
    MidStreamError,
    PromptBlocked,
    RpcError,
    SafetyStop,
    Thinking,
    bad_key,
    overloaded,
    rate_limited,
)
from tests.fakes.image_server import CAT_PNG, FakeImageServer

MODEL = "gemini-2.5-flash"
HELLO = [{"role": "user", "content": "hello there gemini"}]
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


def gemini_config(fake: FakeGemini, api_key: str = DEFAULT_API_KEY) -> dict[str, Any]:
    return {
        "providers": {
            "gemini": {"base_url": fake.base_url, "api_key": api_key, "timeout_s": 5},
            "ollama": {"enabled": False},
        }
    }


@pytest.fixture
async def gateway(start_gateway: StartGateway, fake_gemini: FakeGemini) -> RunningService:
    """The gateway with only its gemini provider, pointed at the fake."""
    return await start_gateway(gemini_config(fake_gemini))


def expected_cost(row: dict[str, object]) -> float | None:
    tokens = TokenCounts(
        int(row["prompt_tokens"]),  # type: ignore[call-overload]
        int(row["completion_tokens"]),  # type: ignore[call-overload]
        int(row["cached_tokens"]),  # type: ignore[call-overload]
    )
    return Pricer().cost(provider="gemini", upstream_model=MODEL, alias=None, tokens=tokens)


def extra(model: Any, name: str) -> Any:
    """An extension field the SDK keeps but does not declare (reasoning_content, extra_content)."""
    return (model.model_extra or {}).get(name)


async def collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


def content_of(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finish_of(chunks: list[Any]) -> str | None:
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    return next((r for r in reversed(reasons) if r), None)


async def raw_stream(gateway: RunningService, model: str = MODEL) -> tuple[int, str]:
    """Status and whole body of a raw streaming call, to see the SSE bytes the SDK hides."""
    async with (
        http(gateway) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": model, "messages": HELLO, "stream": True},
        ) as response,
    ):
        return response.status_code, (await response.aread()).decode()


# -- text ------------------------------------------------------------------------------------


async def test_non_streaming_text_call(gateway: RunningService, fake_gemini: FakeGemini) -> None:
    raw = await sdk(gateway).chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be terse."}, *HELLO],
        max_tokens=50,
        temperature=0.5,
        stop="END",
    )
    completion = raw.parse()
    assert raw.headers["x-llm-proxy-provider"] == "gemini"

    sent = fake_gemini.received[-1]
    assert (sent.method, sent.path) == ("POST", "/v1beta/models/gemini-2.5-flash:generateContent")
    assert sent.query == ""
    assert sent.headers["x-goog-api-key"] == DEFAULT_API_KEY
    assert DEFAULT_API_KEY not in sent.path + sent.query
    assert sent.body == {
        "contents": [{"role": "user", "parts": [{"text": "hello there gemini"}]}],
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 50, "stopSequences": ["END"]},
    }

    (choice,) = completion.choices
    assert choice.message.content == "echo: hello there gemini"
    assert choice.finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == MODEL
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 4)
    assert completion.usage.total_tokens == 9

    (row,) = await logged(gateway)
    assert (row["provider"], row["upstream_model"], row["status"]) == ("gemini", MODEL, "ok")
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (5, 4, 9)
    assert row["cost_usd"] == pytest.approx(expected_cost(row))
    assert row["cost_usd"] > 0  # type: ignore[operator]


async def test_stream_without_usage(gateway: RunningService, fake_gemini: FakeGemini) -> None:
    stream = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    chunks = await collect(stream)

    sent = fake_gemini.received[-1]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.query == "alt=sse"
    assert sent.headers["x-goog-api-key"] == DEFAULT_API_KEY
    assert sent.body == {"contents": [{"role": "user", "parts": [{"text": "hello there gemini"}]}]}

    assert chunks[0].choices[0].delta.role == "assistant"
    assert content_of(chunks) == "echo: hello there gemini"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 4
    assert finish_of(chunks) == "stop"
    assert all(chunk.usage is None for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1

    # The client did not ask for usage, but the gateway still logs and prices it.
    (row,) = await logged(gateway)
    assert row["stream"] == 1
    assert (row["prompt_tokens"], row["completion_tokens"]) == (3, 4)
    assert row["ttft_ms"] is not None
    assert row["cost_usd"] == pytest.approx(expected_cost(row))


async def test_stream_with_usage_ends_with_the_last_usage(gateway: RunningService) -> None:
    stream = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = await collect(stream)
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    # Early Gemini chunks carry prompt-only usage; the last one is authoritative.
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (3, 4, 7)
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_stream_framing_ends_with_done(gateway: RunningService) -> None:
    status, body = await raw_stream(gateway)
    assert status == 200
    events = [part for part in body.split("\n\n") if part]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0].removeprefix("data: "))
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert first["object"] == "chat.completion.chunk"


# -- reasoning -------------------------------------------------------------------------------


async def test_thoughts_are_reasoning_content_never_content(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(Thinking("Let me think about it.", "The answer is 42.", 120))
    completion = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, reasoning_effort="low"
    )
    assert fake_gemini.received[-1].body["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}
    }
    message = completion.choices[0].message
    assert message.content == "The answer is 42."
    assert extra(message, "reasoning_content") == "Let me think about it."
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4 + 120
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 120

    (row,) = await logged(gateway)
    assert (row["completion_tokens"], row["reasoning_tokens"]) == (124, 120)
    assert row["cost_usd"] == pytest.approx(expected_cost(row))
    without_reasoning = Pricer().cost(
        provider="gemini", upstream_model=MODEL, alias=None, tokens=TokenCounts(3, 4)
    )
    assert row["cost_usd"] > without_reasoning  # type: ignore[operator]


async def test_streamed_thoughts_stay_out_of_content(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(Thinking("Pondering deeply.", "Forty two.", 50))
    stream = await sdk(gateway).chat.completions.create(
        model="gemini-3-flash-preview", messages=HELLO, stream=True, reasoning_effort="high"
    )
    chunks = await collect(stream)
    assert fake_gemini.received[-1].body["generationConfig"]["thinkingConfig"] == {
        "thinkingLevel": "HIGH",
        "includeThoughts": True,
    }
    reasoning = "".join(extra(c.choices[0].delta, "reasoning_content") or "" for c in chunks)
    assert reasoning == "Pondering deeply."
    assert content_of(chunks) == "Forty two."
    (row,) = await logged(gateway)
    assert row["reasoning_tokens"] == 50


# -- tools -----------------------------------------------------------------------------------


async def test_tool_round_trip_sends_signature_and_named_result_back(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    client = sdk(gateway)
    question = {"role": "user", "content": "What is the weather in Paris?"}
    fake_gemini.enqueue(FunctionCall("get_weather", {"city": "Paris"}, signature="sig-round-1"))
    first = await client.chat.completions.create(
        model=MODEL, messages=[question], tools=[WEATHER_TOOL], tool_choice="auto"
    )
    sent = fake_gemini.received[-1].body
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
                }
            ]
        }
    ]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}

    (choice,) = first.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert extra(call, "extra_content") == {"google": {"thought_signature": "sig-round-1"}}

    # The client sends the assistant message back as it got it, plus the tool result.
    assistant = choice.message.model_dump(exclude_none=True)
    result = {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'}
    second = await client.chat.completions.create(
        model=MODEL, messages=[question, assistant, result], tools=[WEATHER_TOOL]
    )
    assert fake_gemini.received[-1].body["contents"] == [
        {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "sig-round-1",
                }
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}}],
        },
    ]
    assert second.choices[0].message.content == "echo: What is the weather in Paris?"
    assert second.choices[0].finish_reason == "stop"


async def test_streamed_tool_call_signature_survives_a_client_that_drops_it(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    client = sdk(gateway)
    question = {"role": "user", "content": "Weather in Oslo?"}
    fake_gemini.enqueue(FunctionCall("get_weather", {"city": "Oslo"}, signature="sig-stream-2"))
    chunks = await collect(
        await client.chat.completions.create(
            model="gemini-3-flash-preview",
            messages=[question],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )
    assert fake_gemini.received[-1].body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    (delta,) = deltas
    assert (delta.index, delta.type) == (0, "function")
    assert delta.function is not None
    assert (delta.function.name, delta.function.arguments) == ("get_weather", '{"city":"Oslo"}')
    assert extra(delta, "extra_content") == {"google": {"thought_signature": "sig-stream-2"}}
    assert finish_of(chunks) == "tool_calls"

    # A client that rebuilds the message from known fields only: no extra_content.
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": delta.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
            }
        ],
    }
    result = {"role": "tool", "tool_call_id": delta.id, "content": "rainy"}
    await client.chat.completions.create(
        model="gemini-3-flash-preview", messages=[question, assistant, result]
    )
    contents = fake_gemini.received[-1].body["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == "sig-stream-2"
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": "rainy"}}}
    ]


async def test_non_streamed_tool_call_has_its_type(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(FunctionCall())
    completion = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, tools=[WEATHER_TOOL]
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.type == "function"


# -- images ----------------------------------------------------------------------------------


async def test_image_data_url_is_sent_inline(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    completion = await sdk(gateway).chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": PNG_DATA_URL}},
                ],
            }
        ],
    )
    parts = fake_gemini.received[-1].body["contents"][0]["parts"]
    assert parts == [
        {"text": "What is in this image?"},
        {"inlineData": {"mimeType": "image/png", "data": PNG_DATA_URL.split(",", 1)[1]}},
    ]
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 5 + IMAGE_TOKENS
    (row,) = await logged(gateway)
    assert row["has_images"] == 1


async def test_remote_image_url_is_fetched_by_the_gateway_and_sent_inline(
    start_gateway: StartGateway, fake_gemini: FakeGemini, image_host: FakeImageServer
) -> None:
    images = image_host
    config = gemini_config(fake_gemini)
    config["images"] = {"allow_private_networks": True}  # the image host is on loopback
    gateway = await start_gateway(config)
    image = {"type": "image_url", "image_url": {"url": images.base_url + "/cat.png"}}
    await sdk(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [image]}]
    )
    assert images.hits["/cat.png"] == 1
    (part,) = fake_gemini.received[-1].body["contents"][0]["parts"]
    assert part == {
        "inlineData": {"mimeType": "image/png", "data": base64.b64encode(CAT_PNG).decode()}
    }


# -- filtered answers ------------------------------------------------------------------------


async def test_blocked_prompt_is_content_filter(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(PromptBlocked())
    completion = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    (choice,) = completion.choices
    assert choice.finish_reason == "content_filter"
    assert not choice.message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3

    fake_gemini.enqueue(PromptBlocked("PROHIBITED_CONTENT"))
    chunks = await collect(
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    )
    assert finish_of(chunks) == "content_filter"
    assert content_of(chunks) == ""


async def test_safety_stop_is_content_filter(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(SafetyStop(), SafetyStop())
    completion = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.choices[0].finish_reason == "content_filter"
    chunks = await collect(
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    )
    assert finish_of(chunks) == "content_filter"


async def test_max_tokens_is_length(gateway: RunningService, fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(Echo("cut sh", finish_reason="MAX_TOKENS"))
    completion = await sdk(gateway).chat.completions.create(
        model=MODEL, messages=HELLO, max_completion_tokens=2
    )
    assert completion.choices[0].finish_reason == "length"


# -- errors ----------------------------------------------------------------------------------


async def test_rate_limit_carries_retry_after(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(rate_limited(retry_delay="37s"))
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "37"
    assert caught.value.code == "rate_limit_exceeded"
    assert "quota" in caught.value.message
    (row,) = await logged(gateway)
    assert (row["status"], row["http_status"]) == ("error", 429)


async def test_bad_gateway_key_is_502_not_authentication_error(
    start_gateway: StartGateway, fake_gemini: FakeGemini
) -> None:
    gateway = await start_gateway(gemini_config(fake_gemini, api_key="gemini-wrong-key"))
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert not isinstance(caught.value, openai.AuthenticationError)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_failed"
    assert "gemini-wrong-key" not in caught.value.message
    assert fake_gemini.received[-1].headers["x-goog-api-key"] == "gemini-wrong-key"


async def test_bad_key_answer_mid_service_is_502(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(bad_key())
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    assert caught.value.status_code == 502


async def test_unknown_model_is_not_found(gateway: RunningService, fake_gemini: FakeGemini) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk(gateway).chat.completions.create(model="gemini/does-not-exist", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert fake_gemini.received[-1].path == "/v1beta/models/does-not-exist:generateContent"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (overloaded(), 503),
        (RpcError(500, "INTERNAL", "An internal error has occurred."), 502),
        (RpcError(504, "DEADLINE_EXCEEDED", "Deadline expired."), 504),
        (RpcError(400, "INVALID_ARGUMENT", "Bad thing in request."), 400),
    ],
)
async def test_upstream_errors_get_their_status(
    gateway: RunningService, fake_gemini: FakeGemini, error: RpcError, status: int
) -> None:
    fake_gemini.enqueue(error)
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.status_code == status
    assert error.message in caught.value.message


async def test_garbage_is_502(gateway: RunningService, fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(Garbage())
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.status_code == 502


async def test_cut_stream_ends_with_an_error_event_not_done(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(CutStream(after_chunks=2))
    status, body = await raw_stream(gateway)
    assert status == 200
    assert "[DONE]" not in body
    events = [part for part in body.split("\n\n") if part]
    assert json.loads(events[0].removeprefix("data: "))["choices"][0]["delta"]["content"]
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert error["type"] == "upstream_error"
    (row,) = await logged(gateway)
    assert row["status"] == "error"


async def test_cut_stream_raises_in_the_sdk(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(CutStream(after_chunks=1))
    stream = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_mid_stream_error_event_reaches_the_client(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(MidStreamError(after_chunks=2, error=overloaded()))
    stream = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    assert "overloaded" in str(caught.value)


# -- models ----------------------------------------------------------------------------------


async def test_models_list_shows_chat_and_embedding_models_without_prefix(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    page = await sdk(gateway).models.list()
    owners = {model.id: model.owned_by for model in page.data}
    listing = next(r for r in fake_gemini.received if r.path == "/v1beta/models")
    assert listing.query == "pageSize=1000"
    assert listing.headers["x-goog-api-key"] == DEFAULT_API_KEY
    assert owners["gemini-2.5-flash"] == "gemini"
    assert owners["gemini-3-flash-preview"] == "gemini"
    # Names without the gemini- prefix are listed in the form that routes back here.
    assert owners["gemini/gemma-3-27b-it"] == "gemini"
    assert owners["gemini-embedding-001"] == "gemini"  # served by /v1/embeddings
    assert not any("imagen" in name for name in owners)
    assert not any(name.startswith("models/") for name in owners)
    # Google's list has no creation time: every model gets the gateway's start, never 0.
    times = {model.created for model in page.data}
    assert len(times) == 1
    assert 0 < time.time() - times.pop() < 600

    for model in ("gemini-2.5-pro", "gemini/gemma-3-27b-it"):
        await sdk(gateway).chat.completions.create(model=model, messages=HELLO)
        upstream = model.removeprefix("gemini/")
        assert fake_gemini.received[-1].path == f"/v1beta/models/{upstream}:generateContent"


# -- the fake itself (checklist §7 item 2), spoken to directly -------------------------------

GENERATE_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]}


async def test_fake_streams_crlf_sse_without_done(fake_gemini: FakeGemini) -> None:
    async with httpx.AsyncClient(base_url=fake_gemini.base_url) as client:
        response = await client.post(
            f"/models/{MODEL}:streamGenerateContent?alt=sse",
            headers={"x-goog-api-key": DEFAULT_API_KEY},
            json=GENERATE_BODY,
        )
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.endswith("\r\n\r\n")
    events = [json.loads(e.removeprefix("data: ")) for e in response.text.split("\r\n\r\n") if e]
    assert "[DONE]" not in response.text
    assert "finishReason" not in events[0]["candidates"][0]
    assert "index" not in events[0]["candidates"][0]  # zero values are omitted
    assert events[0]["usageMetadata"] == {
        "promptTokenCount": 2,
        "totalTokenCount": 2,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2}],
    }
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == 3


async def test_fake_streams_a_json_array_without_alt_sse(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(Echo("one two"), MidStreamError(after_chunks=1))
    async with httpx.AsyncClient(base_url=fake_gemini.base_url) as client:
        headers = {"x-goog-api-key": DEFAULT_API_KEY}
        path = f"/models/{MODEL}:streamGenerateContent"
        plain = await client.post(path, headers=headers, json=GENERATE_BODY)
        failing = await client.post(path, headers=headers, json=GENERATE_BODY)
    assert plain.text.startswith("[{")
    assert [e["candidates"][0]["content"]["parts"][0]["text"] for e in plain.json()] == [
        "one ",
        "two",
    ]
    assert failing.json()[-1]["error"]["status"] == "INTERNAL"


async def test_fake_refuses_bad_keys_and_bodies_like_google(fake_gemini: FakeGemini) -> None:
    path = f"/models/{MODEL}:generateContent"
    async with httpx.AsyncClient(base_url=fake_gemini.base_url) as client:
        missing = await client.post(path, json=GENERATE_BODY)
        in_query = await client.post(f"{path}?key={DEFAULT_API_KEY}", json=GENERATE_BODY)
        unknown = await client.post(
            path, headers={"x-goog-api-key": DEFAULT_API_KEY}, json={**GENERATE_BODY, "model": "x"}
        )
        unsigned = await client.post(
            "/models/gemini-3-flash-preview:generateContent",
            headers={"x-goog-api-key": DEFAULT_API_KEY},
            json={
                "contents": [
                    *GENERATE_BODY["contents"],
                    {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                    {
                        "role": "user",
                        "parts": [{"functionResponse": {"name": "f", "response": {}}}],
                    },
                ]
            },
        )
    assert missing.status_code == 400
    error = missing.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    assert in_query.status_code == 200
    assert unknown.status_code == 400
    assert 'Unknown name "model"' in unknown.json()["error"]["message"]
    assert unsigned.status_code == 400
    assert "thought_signature" in unsigned.json()["error"]["message"]


async def test_cut_non_streaming_answer_is_502(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(CutStream())
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert caught.value.status_code == 502


async def test_cached_prompt_tokens_are_logged_and_priced(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(Echo(cached_tokens=2))
    completion = await sdk(gateway).chat.completions.create(model=MODEL, messages=HELLO)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 2
    (row,) = await logged(gateway)
    assert (row["prompt_tokens"], row["cached_tokens"]) == (3, 2)
    assert row["cost_usd"] == pytest.approx(expected_cost(row))


async def test_content_read_with_an_error_event_reaches_the_client_before_it(
    start_gateway: StartGateway, fake_gemini: FakeGemini
) -> None:
    # The text events and Google's error object arrive in one read: the text is not lost.
    gateway = await start_gateway({**gemini_config(fake_gemini), "logging": {"store_bodies": True}})
    fake_gemini.enqueue(MidStreamError(after_chunks=2, error=overloaded(), one_write=True))
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
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: hello "
    assert "overloaded" in last["error"]["message"]
    (row,) = await logged(gateway)
    assert row["status"] == "error"
    assert row["response_body"] == "echo: hello "
    assert row["prompt_tokens"] == 3  # Gemini's usage seen before the error is kept


async def test_stream_ending_without_a_finish_reason_is_an_error_with_its_usage(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    # The body ends cleanly but the answer did not (no finishReason): an error, not [DONE], and
    # the usage seen so far still reaches the log.
    start = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}],
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    }
    body = b"data: " + json.dumps(start).encode() + b"\r\n\r\n"
    fake_gemini.enqueue(Garbage(body=body, content_type="text/event-stream"))
    async with http(gateway) as client:
        response = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": MODEL, "messages": HELLO, "stream": True},
        )
    assert response.status_code == 200
    assert "[DONE]" not in response.text
    *chunks, last = [json.loads(e.removeprefix("data: ")) for e in response.text.split("\n\n") if e]
    assert chunks[0]["choices"][0]["delta"]["content"] == "Hel"
    assert last["error"]["code"] == "upstream_stream_cut"
    (row,) = await logged(gateway)
    assert (row["status"], row["prompt_tokens"]) == ("error", 8)
