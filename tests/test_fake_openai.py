"""Tests of the fake OpenAI upstream, checked with the official openai SDK and raw httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import openai
import pytest
import trio
from openai.types.chat import ChatCompletionMessageParam

from tests.fakes.openai_upstream import (
    CutStream,
    Echo,
    ErrorReply,
    FakeOpenAI,
    Garbage,
    MidStreamError,
    Stall,
    StallMidStream,
    ToolCalls,
    bad_key,
    insufficient_quota,
    overloaded,
    rate_limited,
    server_error,
    unsupported_max_tokens,
)

KEY = "sk-upstream-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeOpenAI:
    """A running fake; the pytest-trio nursery cancels it at the end of the test."""
    upstream = FakeOpenAI(api_key=KEY)
    url = await nursery.start(upstream.run)
    assert url == upstream.base_url
    return upstream


@pytest.fixture
async def http(fake: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    """A raw httpx client pointed at the fake."""
    async with httpx.AsyncClient(base_url=fake.base_url, headers=AUTH, timeout=5.0) as client:
        yield client


@pytest.fixture
async def sdk(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official openai SDK pointed at the fake (anyio runs it on the trio backend)."""
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=5.0)
    try:
        yield client
    finally:
        await client.close()


async def read_events(response: httpx.Response) -> tuple[str, list[Any]]:
    """The raw SSE text and its events: parsed JSON, or the string "[DONE]"."""
    raw = (await response.aread()).decode()
    events: list[Any] = []
    for block in raw.split("\n\n")[:-1]:
        assert block.startswith("data: ")
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else msgspec.json.decode(data))
    return raw, events


async def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll until `predicate` holds (the server sees a disconnect shortly after the client)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


async def collect_lines(
    http: httpx.AsyncClient, body: Any, lines: list[str], timeout: httpx.Timeout | None = None
) -> None:
    """Stream a chat completion into `lines` (kept even if reading fails part way)."""
    wait = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout
    async with http.stream("POST", "/chat/completions", json=body, timeout=wait) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            lines.append(line)


def stream_body(**extra: Any) -> dict[str, Any]:
    """A streaming request body."""
    return {"model": "gpt-4o", "messages": HELLO, "stream": True, **extra}


# -- non-streaming ----------------------------------------------------------------------------


async def test_sdk_non_stream_echo(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert completion.choices[0].message.content == "echo: hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-4o-mini"
    assert completion.id.startswith("chatcmpl-")
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (2, 3)
    assert completion.usage.total_tokens == 5


async def test_raw_non_stream_body_and_headers(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    fake.enqueue(Echo(text="Hello!", cached_tokens=1, reasoning_tokens=4))
    response = await http.post("/chat/completions", json={"model": "o3-mini", "messages": HELLO})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["openai-version"] == "2020-10-01"
    assert int(response.headers["openai-processing-ms"]) >= 0
    assert response.headers["x-ratelimit-remaining-requests"]
    assert response.headers["x-ratelimit-reset-tokens"]
    body = response.json()
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "o3-mini"
    assert body["service_tier"] == "default"
    assert body["system_fingerprint"].startswith("fp_")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello!",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 2,
        "completion_tokens": 5,  # 1 word + 4 reasoning tokens
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 1, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 4,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


async def test_prompt_tokens_count_words_of_all_messages(http: httpx.AsyncClient) -> None:
    messages = [
        {"role": "system", "content": "be terse"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "one two"}, {"type": "text", "text": "three"}],
        },
    ]
    response = await http.post("/chat/completions", json={"model": "gpt-4o", "messages": messages})
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "echo: one two three"
    assert body["usage"]["prompt_tokens"] == 5
    assert body["usage"]["completion_tokens"] == 4


# -- streaming --------------------------------------------------------------------------------


async def test_stream_without_usage_exact_sequence(http: httpx.AsyncClient) -> None:
    async with http.stream("POST", "/chat/completions", json=stream_body()) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"].startswith("req_")
        raw, events = await read_events(response)
    assert raw.endswith("data: [DONE]\n\n")
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas == [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "echo:"},
        {"content": " hello"},
        {"content": " there"},
        {},
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [None] * 4 + ["stop"]
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert len({chunk["created"] for chunk in chunks}) == 1
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "gpt-4o"
        assert chunk["usage"] is None
        assert chunk["system_fingerprint"].startswith("fp_")
        assert isinstance(chunk["obfuscation"], str)


async def test_stream_with_usage_chunk_before_done(http: httpx.AsyncClient) -> None:
    body = stream_body(stream_options={"include_usage": True, "include_obfuscation": False})
    async with http.stream("POST", "/chat/completions", json=body) as response:
        _, events = await read_events(response)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == 2
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert usage_chunk["usage"]["total_tokens"] == 5
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert all(event["usage"] is None for event in events[:-2])
    assert all("obfuscation" not in event for event in events[:-1])


async def test_sdk_stream_with_usage(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    fake.enqueue(Echo(text="abcdef", chunks=3))
    stream = await sdk.chat.completions.create(
        model="gpt-4o",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    usage = None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert pieces == ["ab", "cd", "ef"]
    assert usage is not None
    assert usage.total_tokens == 3


async def test_stream_reasoning_content_comes_before_content(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.enqueue(Echo(text="42", reasoning="let me think", reasoning_tokens=3))
    async with http.stream("POST", "/chat/completions", json=stream_body()) as response:
        _, events = await read_events(response)
    deltas = [event["choices"][0]["delta"] for event in events[1:-2]]
    assert deltas == [
        {"content": None, "reasoning_content": "let"},
        {"content": None, "reasoning_content": " me"},
        {"content": None, "reasoning_content": " think"},
        {"content": "42"},
    ]

    fake.enqueue(Echo(text="42", reasoning="let me think", reasoning_tokens=3))
    response = await http.post("/chat/completions", json={"model": "gpt-4o", "messages": HELLO})
    message = response.json()["choices"][0]["message"]
    assert message["reasoning_content"] == "let me think"
    assert response.json()["usage"]["completion_tokens"] == 4


# -- tool calls -------------------------------------------------------------------------------


async def test_tool_call_fragments_reassemble(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    arguments = '{"city":"Paris","unit":"celsius"}'
    fake.enqueue(ToolCalls(arguments=arguments, fragments=4))
    async with http.stream("POST", "/chat/completions", json=stream_body()) as response:
        _, events = await read_events(response)
    assert events[-1] == "[DONE]"
    first = events[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert first["content"] is None
    header = first["tool_calls"][0]
    assert header["index"] == 0
    assert header["id"].startswith("call_")
    assert header["type"] == "function"
    assert header["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [
        event["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
        for event in events[1:-2]
    ]
    assert len(fragments) == 4
    assert "".join(fragments) == arguments
    assert events[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }


async def test_sdk_tool_calls(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    fake.enqueue(ToolCalls(), ToolCalls(name="lookup", arguments='{"q":"x"}', fragments=2))
    completion = await sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    function = choice.message.tool_calls[0].function  # type: ignore[union-attr]
    assert (function.name, function.arguments) == ("get_weather", '{"city":"Paris"}')

    stream = await sdk.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    arguments = ""
    async for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            arguments += call.function.arguments or ""  # type: ignore[union-attr]
    assert arguments == '{"q":"x"}'


# -- errors -----------------------------------------------------------------------------------


RATE_LIMIT, AUTH_ERR, SERVER = (
    openai.RateLimitError,
    openai.AuthenticationError,
    openai.InternalServerError,
)
ERROR_CASES = [
    (rate_limited(), 429, "requests", "rate_limit_exceeded", None, RATE_LIMIT),
    (insufficient_quota(), 429, "insufficient_quota", "insufficient_quota", None, RATE_LIMIT),
    (server_error(), 500, "server_error", None, None, SERVER),
    (overloaded(), 503, "service_unavailable_error", "server_is_overloaded", None, SERVER),
    (bad_key(), 401, "invalid_request_error", "invalid_api_key", None, AUTH_ERR),
    (
        unsupported_max_tokens(),
        400,
        "invalid_request_error",
        "unsupported_parameter",
        "max_tokens",
        openai.BadRequestError,
    ),
]


@pytest.mark.parametrize(
    ("reply", "status", "type_", "code", "param", "exception"),
    ERROR_CASES,
    ids=[
        "rate_limited",
        "insufficient_quota",
        "server_error",
        "overloaded",
        "bad_key",
        "max_tokens",
    ],
)
async def test_error_helpers(
    fake: FakeOpenAI,
    http: httpx.AsyncClient,
    sdk: openai.AsyncOpenAI,
    reply: ErrorReply,
    status: int,
    type_: str,
    code: str | None,
    param: str | None,
    exception: type[openai.APIStatusError],
) -> None:
    fake.enqueue(reply, reply)
    response = await http.post("/chat/completions", json={"model": "gpt-4o", "messages": HELLO})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (type_, code, param)
    assert error["message"]

    with pytest.raises(exception) as caught:
        await sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == status
    assert caught.value.code == code


async def test_rate_limited_headers(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    fake.enqueue(rate_limited(retry_after="7"))
    response = await http.post("/chat/completions", json={"model": "gpt-4o", "messages": HELLO})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-reset-requests"] == "7s"
    assert response.headers["x-ratelimit-limit-tokens"] == "150000"

    fake.enqueue(overloaded(retry_after="2"))
    response = await http.post("/chat/completions", json={"model": "gpt-4o", "messages": HELLO})
    assert (response.status_code, response.headers["retry-after"]) == (503, "2")


async def test_error_reply_raw_body_and_custom_fields(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.enqueue(
        ErrorReply(502, raw_body=b"Bad Gateway", content_type="text/plain"),
        ErrorReply(418, message="teapot", type="odd", code="x", headers={"x-extra": "1"}),
    )
    response = await http.post("/chat/completions", json={"model": "gpt-4o", "messages": HELLO})
    assert (response.status_code, response.text) == (502, "Bad Gateway")
    assert response.headers["content-type"] == "text/plain"
    response = await http.post("/chat/completions", json={"model": "gpt-4o", "messages": HELLO})
    assert response.status_code == 418
    assert response.headers["x-extra"] == "1"
    assert response.json() == {
        "error": {"message": "teapot", "type": "odd", "param": None, "code": "x"}
    }


async def test_unknown_model_is_404(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    fake.enqueue(Echo(text="kept for the next call"))
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.chat.completions.create(model="does-not-exist", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert "`does-not-exist` does not exist" in caught.value.message
    # The 404 did not consume the queued behaviour.
    completion = await sdk.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert completion.choices[0].message.content == "kept for the next call"


async def test_auth_missing_or_wrong_key(fake: FakeOpenAI) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        body = {"model": "gpt-4o", "messages": HELLO}
        response = await client.post("/chat/completions", json=body)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.json()["error"]["message"].startswith("You didn't provide an API key.")

        wrong = {"authorization": "Bearer sk-not-the-right-key"}
        response = await client.post("/chat/completions", json=body, headers=wrong)
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == "invalid_api_key"
        assert error["type"] == "invalid_request_error"
        assert error["message"].startswith("Incorrect API key provided: sk-*")
        assert "not-the-right" not in error["message"]

        response = await client.get("/models")
        assert response.status_code == 401

    bad = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-nope-nope-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.models.list()
    await bad.close()


async def test_unknown_path_and_bad_json(http: httpx.AsyncClient) -> None:
    response = await http.post("/completions", json={})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /v1/completions)"

    response = await http.post("/chat/completions", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"

    response = await http.post("/chat/completions", json={"model": "gpt-4o"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"


# -- broken upstreams -------------------------------------------------------------------------


async def test_cut_stream_raises_remote_protocol_error(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.enqueue(CutStream(after_chunks=2))
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        await collect_lines(http, stream_body(), lines)
    data = [line for line in lines if line]
    assert len(data) == 3  # the role chunk and two content chunks
    assert "[DONE]" not in "".join(lines)
    assert fake.disconnects == 0  # the server cut it, the client did not leave

    # The server survives and keeps serving.
    response = await http.post("/chat/completions", json={"model": "gpt-4o", "messages": HELLO})
    assert response.status_code == 200


async def test_cut_non_stream_raises_remote_protocol_error(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.enqueue(CutStream())
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        await http.post("/chat/completions", json={"model": "gpt-4o", "messages": HELLO})


async def test_sdk_sees_cut_stream_as_connection_error(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI
) -> None:
    fake.enqueue(CutStream(after_chunks=1))
    stream = await sdk.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    with pytest.raises((openai.APIConnectionError, httpx.RemoteProtocolError)) as caught:
        async for _ in stream:
            pass

    # openai 3.x runs on httpx2 and wraps its RemoteProtocolError; 2.x lets httpx's through.
    error = caught.value
    cause = error.__cause__ if isinstance(error, openai.APIConnectionError) else error
    assert type(cause).__name__ == "RemoteProtocolError"


async def test_mid_stream_error(
    fake: FakeOpenAI, http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    fake.enqueue(MidStreamError(after_chunks=2, message="boom"))
    async with http.stream("POST", "/chat/completions", json=stream_body()) as response:
        assert response.status_code == 200
        raw, events = await read_events(response)
    assert "[DONE]" not in raw
    assert len(events) == 4
    assert events[-1] == {
        "error": {"message": "boom", "type": "server_error", "param": None, "code": None}
    }

    fake.enqueue(MidStreamError())
    stream = await sdk.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError, match="error while processing"):
        async for _ in stream:
            pass


async def test_garbage(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    fake.enqueue(Garbage(), Garbage(body=b"nope", status=502, content_type="text/plain"))
    response = await http.post("/chat/completions", json={"model": "gpt-4o", "messages": HELLO})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"
    assert response.content == b"<html>oops</html>"
    response = await http.post("/chat/completions", json=stream_body())
    assert (response.status_code, response.content) == (502, b"nope")


async def test_stall_times_out_and_counts_disconnect(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.enqueue(Stall(5.0))
    body = {"model": "gpt-4o", "messages": HELLO}
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/chat/completions", json=body, timeout=httpx.Timeout(5.0, read=0.2))
    await wait_for(lambda: fake.disconnects == 1)

    fake.enqueue(Stall(0.05))
    response = await http.post("/chat/completions", json=body)
    assert response.json()["choices"][0]["message"]["content"] == "echo: hello there"


async def test_stall_mid_stream(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    fake.enqueue(StallMidStream(after_chunks=1, seconds=5.0))
    lines: list[str] = []
    with pytest.raises(httpx.ReadTimeout):
        await collect_lines(http, stream_body(), lines, timeout=httpx.Timeout(5.0, read=0.3))
    assert len([line for line in lines if line]) == 2  # role chunk + one content chunk
    await wait_for(lambda: fake.disconnects == 1)

    fake.enqueue(StallMidStream(after_chunks=1, seconds=0.05))
    async with http.stream("POST", "/chat/completions", json=stream_body()) as response:
        _, events = await read_events(response)
    assert events[-1] == "[DONE]"
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert content == "echo: hello there"


async def test_client_going_away_mid_stream_is_counted(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    fake.enqueue(Echo(text="a b c d e f g h", chunk_interval_s=0.05))
    async with http.stream("POST", "/chat/completions", json=stream_body()) as response:
        async for line in response.aiter_lines():
            if '"content":"a"' in line:
                break  # leaving the block closes the connection mid-stream
    await wait_for(lambda: fake.disconnects == 1)

    # Complete responses are never counted, and the server keeps working.
    for _ in range(3):
        async with http.stream("POST", "/chat/completions", json=stream_body()) as response:
            await read_events(response)
    response = await http.post("/chat/completions", json={"model": "gpt-4o", "messages": HELLO})
    assert response.status_code == 200
    await trio.sleep(0.05)
    assert fake.disconnects == 1


# -- models and recording ---------------------------------------------------------------------


async def test_models_list(http: httpx.AsyncClient, sdk: openai.AsyncOpenAI) -> None:
    response = await http.get("/models")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    listed = [
        "gpt-4o",
        "gpt-4o-mini",
        "o3-mini",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "text-embedding-ada-002",
    ]
    assert [model["id"] for model in body["data"]] == listed
    for model in body["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model"

    page = await sdk.models.list()
    assert [model.id for model in page.data] == listed
    assert (await sdk.models.retrieve("o3-mini")).id == "o3-mini"


async def test_received_records_every_request(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4o", "messages": HELLO, "temperature": 0.5}
    await http.post("/chat/completions?trace=1", json=body, headers={"X-Custom": "yes"})
    await http.get("/models")
    async with httpx.AsyncClient(base_url=fake.base_url) as anonymous:
        await anonymous.get("/models")
    assert len(fake.received) == 3
    first, second, third = fake.received
    assert (first.method, first.path, first.query) == ("POST", "/v1/chat/completions", "trace=1")
    assert first.body == body
    assert msgspec.json.decode(first.raw) == body
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.headers["x-custom"] == "yes"
    assert first.headers["content-type"] == "application/json"
    assert (second.method, second.path, second.body, second.raw) == ("GET", "/v1/models", None, b"")
    assert "authorization" not in third.headers


async def test_enqueue_order_then_default(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    fake.enqueue(Echo(text="one"), server_error())
    fake.enqueue(Echo(text="three"))
    body = {"model": "gpt-4o", "messages": HELLO}
    results = []
    for _ in range(4):
        response = await http.post("/chat/completions", json=body)
        results.append(
            response.json()["choices"][0]["message"]["content"]
            if response.status_code == 200
            else response.status_code
        )
    assert results == ["one", 500, "three", "echo: hello there"]
