"""End to end: the official openai SDK → the whole gateway → a fake OpenAI upstream on a socket."""

from __future__ import annotations

import json
import time
from contextlib import AbstractAsyncContextManager
from functools import partial

import httpx
import openai
import pytest
import trio

from proxy.service import RunningService
from storage import queries
from tests.conftest import CLIENT_KEY, StartGateway, http, logged, on_each_backend, sdk
from tests.fakes.openai_upstream import (
    DEFAULT_API_KEY,
    CutStream,
    FakeOpenAI,
    Garbage,
    MidStreamError,
    Stall,
    StallMidStream,
    ToolCalls,
    bad_key,
    rate_limited,
    server_error,
)

HELLO = [{"role": "user", "content": "hello there gateway"}]
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


def open_stream(client: httpx.AsyncClient) -> AbstractAsyncContextManager[httpx.Response]:
    """A streaming chat call sent raw, to see the SSE bytes the SDK would hide."""
    return client.stream(
        "POST",
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        json={"model": "gpt-4o", "messages": HELLO, "stream": True},
    )


async def raw_stream(gateway: RunningService) -> tuple[httpx.Response, str]:
    """The response and the whole body of a raw streaming call."""
    async with http(gateway) as client, open_stream(client) as response:
        return response, (await response.aread()).decode()


@on_each_backend
async def test_non_streaming_call_is_answered_priced_and_logged(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    client = sdk(gateway)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=50, temperature=0.5
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: hello there gateway"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 3
    assert raw.headers["x-llm-proxy-provider"] == "openai"
    assert raw.headers["x-request-id"].startswith("req_")
    assert float(raw.headers["x-llm-proxy-overhead-ms"]) >= 0

    sent = fake_openai.received[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-upstream-test-key"
    assert CLIENT_KEY not in json.dumps(sent.headers)
    # OpenAI wants the new name; the bound is the same.
    assert sent.body["max_completion_tokens"] == 50
    assert "max_tokens" not in sent.body
    assert sent.body["temperature"] == 0.5

    (row,) = await logged(gateway)
    assert row["status"] == "ok"
    assert row["http_status"] == 200
    assert row["request_id"] == raw.headers["x-request-id"]
    assert row["provider"] == "openai"
    assert row["model"] == "gpt-4o-mini"
    assert row["client_id"] == "static"
    assert row["prompt_tokens"] == 3
    assert row["completion_tokens"] == completion.usage.completion_tokens
    assert isinstance(row["cost_usd"], float)
    assert row["cost_usd"] > 0
    assert row["latency_ms"] >= row["overhead_ms"] >= 0
    assert row["request_body"] is None


@on_each_backend
async def test_stream_without_usage_hides_the_usage_chunk_but_logs_it(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    client = sdk(gateway)
    stream = await client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there gateway"
    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The gateway always asks for usage, so it can log and price the call.
    assert fake_openai.received[-1].body["stream_options"] == {"include_usage": True}

    (row,) = await logged(gateway)
    assert row["stream"] == 1
    assert row["status"] == "ok"
    assert row["prompt_tokens"] == 3
    assert row["ttft_ms"] is not None


async def test_stream_with_usage_forwards_the_usage_chunk(gateway: RunningService) -> None:
    client = sdk(gateway)
    stream = await client.chat.completions.create(
        model="gpt-4o",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 4


async def test_stream_sse_framing_ends_with_done(gateway: RunningService) -> None:
    response, body = await raw_stream(gateway)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [part for part in body.split("\n\n") if part]
    assert all(event.startswith("data: ") for event in events)
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0].removeprefix("data: "))
    # The upstream's first delta as it sent it (OpenAI's carries "refusal": null).
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert "obfuscation" in first  # OpenAI's per-chunk padding passes too


async def test_tool_call_fragments_pass_through(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(ToolCalls(arguments='{"city":"Paris"}', fragments=3))
    stream = await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    arguments = ""
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                arguments += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    assert json.loads(arguments) == {"city": "Paris"}
    assert finish == "tool_calls"


async def test_alias_routes_to_its_upstream_model(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    await sdk(gateway).chat.completions.create(model="fast", messages=HELLO)
    assert fake_openai.received[-1].body["model"] == "gpt-4o-mini"
    (row,) = await logged(gateway)
    assert row["model"] == "fast"
    assert row["upstream_model"] == "gpt-4o-mini"


async def test_provider_slash_model_routing(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    await sdk(gateway).chat.completions.create(model="openai/my-finetune", messages=HELLO)
    assert fake_openai.received[-1].body["model"] == "my-finetune"


async def test_models_lists_aliases_and_provider_models(gateway: RunningService) -> None:
    page = await sdk(gateway).models.list()
    owners = {model.id: model.owned_by for model in page.data}
    assert owners["fast"] == "openai"
    assert owners["gpt-4o-mini"] == "openai"
    one = await sdk(gateway).models.retrieve("gpt-4o")
    assert one.owned_by == "openai"


async def test_models_keep_the_upstreams_created_time(gateway: RunningService) -> None:
    started = int(time.time())  # the gateway started just before this
    page = await sdk(gateway).models.list()
    created = {model.id: model.created for model in page.data}
    # The upstream's own values, from its listing (the fake lists OpenAI's real ones).
    assert created["gpt-4o"] == 1715367049
    assert created["gpt-4o-mini"] == 1721172741
    # An alias is as old as the model it names; never the 1970 of created: 0.
    assert created["fast"] == 1721172741  # the alias of gpt-4o-mini
    assert (await sdk(gateway).models.retrieve("gpt-4o")).created == 1715367049
    assert (await sdk(gateway).models.retrieve("openai/gpt-4o")).created == 1715367049
    # A name that routes but is not listed (a fine-tune, say): the gateway's start, stable.
    unlisted = await sdk(gateway).models.retrieve("gpt-4o-my-finetune")
    assert started - 60 <= unlisted.created <= started
    again = await sdk(gateway).models.retrieve("gpt-4o-my-finetune")
    assert again.created == unlisted.created


# -- errors, each mapped to the SDK's exception class ----------------------------------------


async def test_bad_key_is_authentication_error(gateway: RunningService) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        await sdk(gateway, key="sk-nope-nope-nope-nope").chat.completions.create(
            model="gpt-4o", messages=HELLO
        )
    assert caught.value.code == "invalid_api_key"
    assert "sk-nope" not in str(caught.value)
    (row,) = await logged(gateway)
    assert row["status"] == "error"
    assert row["http_status"] == 401


async def test_missing_key_is_authentication_error(gateway: RunningService) -> None:
    async with http(gateway) as client:
        response = await client.post("/v1/chat/completions", json={"model": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"messages": []}', "model", "'model'"),
        (b'{"model": "gpt-4o"}', "messages", "'messages'"),
        (b'{"model": "gpt-4o", "messages": []}', "messages", "messages"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "model", "str"),
        (b'{"model": "gpt-4o", "messages": ["robot"]}', "messages[0]", "object"),
        (
            b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], '
            b'"max_tokens": "ten"}',
            "max_tokens",
            "int",
        ),
        (b'{"model": "gpt-4o", "messages": [{"role": "user"}], "stream": "yes"}', "stream", ""),
        (b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n", ""),
        (b"\xff\xfe\x00", None, "JSON"),
    ],
)
async def test_malformed_bodies_are_400_naming_the_field(
    gateway: RunningService, body: bytes, param: str | None, fragment: str
) -> None:
    async with http(gateway) as client:
        response = await client.post(
            "/v1/chat/completions",
            content=body,
            headers={"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"},
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]
    assert response.headers["x-request-id"].startswith("req_")


async def test_unknown_model_is_not_found(gateway: RunningService) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk(gateway).chat.completions.create(model="no-such-model-xyz", messages=HELLO)
    # Typed as OpenAI types its own answer for an unknown model.
    assert (caught.value.type, caught.value.code) == ("invalid_request_error", "model_not_found")
    with pytest.raises(openai.NotFoundError) as listed:
        await sdk(gateway).models.retrieve("no-such-model-xyz")
    assert (listed.value.type, listed.value.code) == ("invalid_request_error", "model_not_found")
    async with http(gateway) as client:
        wrong_path = await client.get("/v1/no-such-path", headers=AUTH)
    assert wrong_path.status_code == 404
    assert wrong_path.json()["error"]["type"] == "invalid_request_error"


async def test_model_of_a_disabled_provider_is_unavailable(gateway: RunningService) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(gateway).chat.completions.create(model="gemini-2.5-pro", messages=HELLO)
    assert caught.value.status_code == 503


async def test_oversized_body_is_413(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"server": {"max_body_bytes": 1000}})
    big = {"model": "mock", "messages": [{"role": "user", "content": "x" * 5000}]}
    async with http(gateway) as client:
        response = await client.post(
            "/v1/chat/completions", json=big, headers={"authorization": f"Bearer {CLIENT_KEY}"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_upstream_429_keeps_retry_after(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(rate_limited(retry_after="7"))
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"


async def test_upstream_500_is_502(gateway: RunningService, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(server_error())
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 502
    assert "openai" in caught.value.message
    (row,) = await logged(gateway)
    assert row["error_type"] == "upstream_error"
    assert row["cost_usd"] is None


async def test_upstream_rejecting_the_gateway_key_is_not_the_clients_fault(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(bad_key())
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_failed"
    assert "sk-upstream" not in caught.value.message


async def test_upstream_garbage_is_502(gateway: RunningService, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Garbage())
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 502


async def test_upstream_unknown_model_is_404(gateway: RunningService) -> None:
    with pytest.raises(openai.NotFoundError):
        await sdk(gateway).chat.completions.create(model="openai/does-not-exist", messages=HELLO)


async def test_upstream_timeout_is_504(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await start_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": fake_openai.base_url,
                    "api_key": "sk-upstream-test-key",
                    "timeout_s": 0.3,
                }
            }
        }
    )
    fake_openai.enqueue(Stall(seconds=5))
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert caught.value.status_code == 504
    (row,) = await logged(gateway)
    assert row["error_type"] == "upstream_timeout"


async def test_stream_cut_by_upstream_ends_with_an_error_event_not_done(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(CutStream(after_chunks=2))
    response, body = await raw_stream(gateway)
    assert response.status_code == 200
    events = [part for part in body.split("\n\n") if part]
    assert "[DONE]" not in body
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert error["type"] == "upstream_error"
    (row,) = await logged(gateway)
    assert row["status"] == "error"


async def test_cut_stream_raises_in_the_sdk(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(CutStream(after_chunks=1))
    stream = await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass


async def test_mid_stream_error_event_reaches_the_client(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(MidStreamError(after_chunks=2, message="boom upstream"))
    stream = await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    assert "boom upstream" in str(caught.value)


async def test_error_before_the_first_chunk_gets_a_real_status(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(server_error())
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk(gateway).chat.completions.create(model="gpt-4o", messages=HELLO, stream=True)
    assert caught.value.status_code == 502


# -- the mock provider and demo mode ----------------------------------------------------------


async def test_demo_mode_answers_without_a_key(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"auth": {"tokens": []}})
    assert "mock" in gateway.gateway.providers
    async with http(gateway) as raw:
        response = await raw.post("/v1/chat/completions", json={"model": "mock", "messages": HELLO})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: hello there gateway"
    (row,) = await logged(gateway)
    assert row["provider"] == "mock"
    assert row["client_id"] is None
    assert row["cost_usd"] == 0.0


async def test_mock_streams_with_configured_chunks(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"providers": {"mock": {"chunk_count": 2}}})
    stream = await sdk(gateway).chat.completions.create(
        model="mock", messages=[{"role": "user", "content": "a b c d e f"}], stream=True
    )
    contents = [c.choices[0].delta.content async for c in stream if c.choices]
    assert "".join(filter(None, contents)) == "echo: a b c d e f"
    assert len([c for c in contents if c]) == 2


async def test_static_key_required_when_configured(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    with pytest.raises(openai.AuthenticationError):
        await sdk(gateway, key="sk-wrong-wrong-wrong").chat.completions.create(
            model="mock", messages=HELLO
        )


@on_each_backend
async def test_store_bodies_keeps_request_and_response(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"logging": {"store_bodies": True}})
    await sdk(gateway).chat.completions.create(model="mock", messages=HELLO)
    (row,) = await logged(gateway)
    assert "hello there gateway" in str(row["request_body"])
    assert "echo: hello there gateway" in str(row["response_body"])


@on_each_backend
async def test_record_requests_off_keeps_only_hourly_totals(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"logging": {"record_requests": False}})
    for _ in range(3):
        await sdk(gateway).chat.completions.create(model="mock", messages=HELLO)
    reads = gateway.gateway.reads
    totals = partial(queries.usage_totals, since_ms=0, until_ms=2**62)
    with trio.fail_after(10):
        while (await reads.run(totals))["requests"] != 3:
            await trio.sleep(0.02)
    assert await reads.run(queries.count_requests) == 0


# -- health ------------------------------------------------------------------------------------


async def test_health_and_readiness(gateway: RunningService) -> None:
    async with http(gateway) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


@on_each_backend
async def test_graceful_stop_flushes_every_record(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    client = sdk(gateway)

    async def call() -> None:
        await client.chat.completions.create(model="mock", messages=HELLO)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(call)
    gateway.stop()
    with trio.fail_after(10):
        await gateway.stopped.wait()
    assert gateway.gateway.writer.statistics().rows_written == 20


@on_each_backend
async def test_client_gone_mid_stream_cancels_upstream_and_logs_cancelled(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(StallMidStream(after_chunks=2, seconds=30))
    async with http(gateway) as client, open_stream(client) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break  # the first chunk arrived; now hang up
    (row,) = await logged(gateway)
    assert row["status"] == "cancelled"
    assert row["stream"] == 1
    assert row["ttft_ms"] is not None
    with trio.fail_after(5):
        while fake_openai.disconnects == 0:
            await trio.sleep(0.01)


async def test_tool_call_round_trip_non_streaming(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(ToolCalls(arguments='{"city":"Paris"}'))
    client = sdk(gateway)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    first = await client.chat.completions.create(model="gpt-4o", messages=HELLO, tools=tools)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    follow_up = [
        *HELLO,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'},
    ]
    await client.chat.completions.create(model="gpt-4o", messages=follow_up, tools=tools)
    sent = fake_openai.received[-1].body
    assert sent["tools"] == tools
    assert sent["messages"][1]["tool_calls"][0]["id"] == call.id
    assert sent["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.id,
        "content": '{"temp_c": 18}',
    }


async def test_models_fall_back_to_a_static_list_when_the_upstream_is_down(
    start_gateway: StartGateway,
) -> None:
    with trio.socket.socket() as closed:
        await closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    gateway = await start_gateway(
        {
            "providers": {
                "deepseek": {
                    "base_url": f"http://127.0.0.1:{port}",
                    "api_key": "sk-x-000000000000",
                    "connect_timeout_s": 1,
                }
            }
        }
    )
    page = await sdk(gateway).models.list()
    owners = {model.id: model.owned_by for model in page.data}
    assert owners["deepseek-chat"] == "deepseek"


async def test_stop_waits_for_calls_in_flight_but_not_for_idle_connections(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway({"providers": {"mock": {"latency_ms": 300}}})
    client = sdk(gateway)
    await client.chat.completions.create(model="mock", messages=HELLO)  # leaves a kept-alive socket
    await gateway.gateway.in_flight.wait_idle()  # that call's handler has finished logging
    answers: list[str] = []

    async def slow_call() -> None:
        stream = await client.chat.completions.create(model="mock", messages=HELLO, stream=True)
        answers.append(
            "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_call)
        with trio.fail_after(5):
            while gateway.gateway.in_flight.count == 0:
                await trio.sleep(0.005)
        stopping = trio.current_time()
        gateway.stop()
        with trio.fail_after(4):  # well under the 5 s grace period of the test config
            await gateway.stopped.wait()
    assert answers == ["echo: hello there gateway"]
    assert trio.current_time() - stopping < 2


async def test_content_read_with_an_error_event_reaches_the_client_before_it(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    # The content and the error arrive in one read: the content is not lost for the error.
    gateway = await start_gateway(
        {
            "providers": {"openai": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY}},
            "logging": {"store_bodies": True},
        }
    )
    fake_openai.enqueue(MidStreamError(after_chunks=3, message="boom upstream", one_write=True))
    response, body = await raw_stream(gateway)
    assert response.status_code == 200
    assert "[DONE]" not in body
    *chunks, last = [json.loads(e.removeprefix("data: ")) for e in body.split("\n\n") if e]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "echo: hello there"
    assert "boom upstream" in last["error"]["message"]
    (row,) = await logged(gateway)
    assert (row["status"], row["error_type"]) == ("error", "upstream_error")
    assert row["response_body"] == "echo: hello there"
