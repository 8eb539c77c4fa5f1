"""Upstream faults end to end: the circuit breaker per provider, and deadlines on streams."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import httpx
import pytest
import trio

from actors.provider import ProviderActor
from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, http, logged
from tests.fakes.openai_upstream import (
    DEFAULT_API_KEY,
    Echo,
    ErrorReply,
    FakeOpenAI,
    Raw,
    Stall,
    StallMidStream,
    rate_limited,
    server_error,
)
from tests.fakes.raw_http_server import RawConnection, RawHTTPServer, RawRequest, response

HELLO = [{"role": "user", "content": "hello there gateway"}]
TIMEOUT_S = 1.0
COOLDOWN_S = 0.5
SLACK_S = 1.0  # scheduling and thread noise on a loaded test machine
JSON = "application/json"
Handler = Callable[[RawConnection], Awaitable[None]]


@pytest.fixture
async def gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    """The gateway with a touchy breaker and a short deadline in front of the fake upstream."""
    return await start_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": fake_openai.base_url,
                    "api_key": DEFAULT_API_KEY,
                    "breaker_failures": 3,
                    "breaker_cooldown_s": COOLDOWN_S,
                    "timeout_s": TIMEOUT_S,
                }
            },
        }
    )


def provider(gateway: RunningService) -> ProviderActor:
    """The openai provider actor inside the running gateway."""
    return gateway.gateway.providers["openai"]


async def chat(gateway: RunningService, *, stream: bool = False) -> httpx.Response:
    """One raw chat call, its body read whole."""
    body = {"model": "gpt-4o", "messages": HELLO, "stream": stream}
    async with http(gateway) as client:
        return await client.post(
            "/v1/chat/completions", headers={"authorization": f"Bearer {CLIENT_KEY}"}, json=body
        )


def sse_payloads(body: str) -> list[str]:
    """The data of each event in an SSE body."""
    return [part.removeprefix("data: ") for part in body.split("\n\n") if part.strip()]


async def test_breaker_opens_after_consecutive_failures_then_a_probe_closes_it(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(server_error(), server_error(), server_error())
    for _ in range(3):
        assert (await chat(gateway)).status_code == 502
    assert provider(gateway).breaker_state == "open"
    sent = len(fake_openai.received)

    started = trio.current_time()
    refused = await chat(gateway)
    assert trio.current_time() - started < 0.5  # at once, no upstream deadline waited for
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("upstream_unavailable", "circuit_open")
    assert "openai" in error["message"]
    assert refused.headers["retry-after"] == "1"
    assert len(fake_openai.received) == sent  # the upstream never saw it

    stats = provider(gateway).statistics()
    assert (stats.breaker_state, stats.breaker_trips) == ("open", 1)
    refused_row = (await logged(gateway, 4))[0]  # newest first
    assert (refused_row["http_status"], refused_row["error_type"]) == (503, "upstream_unavailable")

    await trio.sleep(COOLDOWN_S + 0.05)
    probe = await chat(gateway)
    assert probe.status_code == 200
    assert len(fake_openai.received) == sent + 1  # the probe went through
    stats = provider(gateway).statistics()
    assert (stats.breaker_state, stats.breaker_trips) == ("closed", 1)
    assert (await chat(gateway)).status_code == 200


async def test_a_failed_probe_reopens_the_breaker(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(*[server_error()] * 4)
    for _ in range(3):
        await chat(gateway)
    await trio.sleep(COOLDOWN_S + 0.05)
    assert (await chat(gateway)).status_code == 502  # the probe, failing
    assert provider(gateway).statistics().breaker_trips == 2
    sent = len(fake_openai.received)
    assert (await chat(gateway)).status_code == 503
    assert len(fake_openai.received) == sent


async def test_only_one_probe_goes_through_while_it_runs(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(*[server_error()] * 3, Echo(delay_s=0.5))
    for _ in range(3):
        await chat(gateway)
    await trio.sleep(COOLDOWN_S + 0.05)
    sent = len(fake_openai.received)
    answers: list[httpx.Response] = []

    async def call() -> None:
        answers.append(await chat(gateway))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        with trio.fail_after(5):
            while len(fake_openai.received) == sent:
                await trio.sleep(0.01)
        assert provider(gateway).breaker_state == "half_open"
        during = await chat(gateway)
        assert during.status_code == 503
        assert during.json()["error"]["code"] == "circuit_open"
    assert [answer.status_code for answer in answers] == [200]
    assert len(fake_openai.received) == sent + 1
    assert provider(gateway).breaker_state == "closed"


@pytest.mark.parametrize(
    "reply",
    [ErrorReply(400, "Invalid request.", "invalid_request_error"), rate_limited()],
    ids=["400", "429"],
)
async def test_client_errors_and_rate_limits_do_not_open_the_breaker(
    gateway: RunningService, fake_openai: FakeOpenAI, reply: ErrorReply
) -> None:
    fake_openai.enqueue(*[reply] * 5)
    for _ in range(5):
        assert (await chat(gateway)).status_code == reply.status
    assert len(fake_openai.received) == 5
    assert provider(gateway).breaker_state == "closed"
    assert (await chat(gateway)).status_code == 200


async def test_a_clean_stream_resets_the_count_and_a_stalled_one_counts(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(server_error(), server_error())
    for _ in range(2):
        await chat(gateway)
    assert (await chat(gateway, stream=True)).text.endswith("data: [DONE]\n\n")
    fake_openai.enqueue(server_error(), server_error())
    for _ in range(2):
        await chat(gateway)
    assert provider(gateway).breaker_state == "closed"
    fake_openai.enqueue(StallMidStream(after_chunks=1, seconds=5))
    assert (await chat(gateway, stream=True)).status_code == 200  # cut after the first byte
    assert provider(gateway).breaker_state == "open"


async def test_stream_stalling_mid_way_ends_with_a_timeout_event(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(StallMidStream(after_chunks=1, seconds=5))
    started = trio.current_time()
    response = await chat(gateway, stream=True)
    elapsed = trio.current_time() - started
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + SLACK_S
    assert response.status_code == 200
    assert "[DONE]" not in response.text
    payloads = sse_payloads(response.text)
    assert len(payloads) >= 2  # the chunks that came before the stall reached the client
    error = json.loads(payloads[-1])["error"]
    assert error["type"] == "upstream_timeout"
    assert "openai" in error["message"]
    (row,) = await logged(gateway)
    assert (row["status"], row["error_type"]) == ("error", "upstream_timeout")


async def test_keep_alive_comments_do_not_extend_the_deadline(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    # DeepSeek's keep-alives, forever as far as the gateway can tell (10 s at this pace).
    fake_openai.enqueue(Raw((b": keep-alive\n\n",) * 50, interval_s=0.2))
    started = trio.current_time()
    response = await chat(gateway, stream=True)
    elapsed = trio.current_time() - started
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + SLACK_S
    assert response.status_code == 504  # no chunk ever came, so nothing was sent yet
    assert response.json()["error"]["type"] == "upstream_timeout"
    with trio.fail_after(5):
        while fake_openai.disconnects == 0:  # the gateway hung up on the upstream
            await trio.sleep(0.01)


async def test_blank_lines_between_chunks_do_not_extend_the_deadline(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}],
    }
    first = b"data: " + json.dumps(chunk).encode() + b"\n\n"
    fake_openai.enqueue(Raw((first, *[b"\n"] * 50), interval_s=0.2))
    started = trio.current_time()
    response = await chat(gateway, stream=True)
    elapsed = trio.current_time() - started
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 0.2 + SLACK_S
    assert response.status_code == 200
    assert "[DONE]" not in response.text
    assert json.loads(sse_payloads(response.text)[-1])["error"]["type"] == "upstream_timeout"


async def test_stream_whose_upstream_never_answers_is_504_before_the_first_byte(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Stall(seconds=5))
    started = trio.current_time()
    response = await chat(gateway, stream=True)
    assert trio.current_time() - started < TIMEOUT_S + SLACK_S
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"


async def test_non_streaming_stall_is_504(gateway: RunningService, fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Stall(seconds=5))
    started = trio.current_time()
    response = await chat(gateway)
    assert TIMEOUT_S <= trio.current_time() - started < TIMEOUT_S + SLACK_S
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"
    (row,) = await logged(gateway)
    assert row["http_status"] == 504


# -- a connection cut after the request left, and one closed while idle ------------------------

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()


async def raw_upstream(
    nursery: trio.Nursery, start_gateway: StartGateway, handler: Handler
) -> tuple[RunningService, RawHTTPServer]:
    """The gateway with its openai provider pointed at a raw server running ``handler``."""
    server = RawHTTPServer(handler)
    await nursery.start(server.run)
    gateway = await start_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": server.url + "/v1",
                    "api_key": DEFAULT_API_KEY,
                    "timeout_s": 5,
                }
            }
        }
    )
    return gateway, server


def chat_requests(server: RawHTTPServer) -> list[RawRequest]:
    """The chat calls that reached the raw upstream."""
    return [r for r in server.requests if r.target == "/v1/chat/completions"]


async def test_upstream_cutting_a_received_call_is_502_and_never_sent_twice(
    nursery: trio.Nursery, start_gateway: StartGateway
) -> None:
    # The upstream read the whole call on a kept-alive connection, then hung up without an
    # answer: it may have run and billed it, so the gateway must not send it again.
    async def answer_then_cut(connection: RawConnection) -> None:
        while await connection.read_request() is not None:
            if len(chat_requests(connection.server)) > 1:
                await connection.close()
                return
            await connection.send(response(COMPLETION, headers=[("Content-Type", JSON)]))

    gateway, server = await raw_upstream(nursery, start_gateway, answer_then_cut)
    assert (await chat(gateway)).status_code == 200
    cut = await chat(gateway)
    assert cut.status_code == 502
    error = cut.json()["error"]
    assert error["type"] == "upstream_error"
    assert "openai broke the connection" in error["message"]
    assert "without sending a response" in error["message"]
    assert len(chat_requests(server)) == 2  # one attempt per call, none repeated
    assert server.connections == 1


async def test_upstream_closing_an_idle_connection_costs_the_next_call_nothing(
    nursery: trio.Nursery, start_gateway: StartGateway
) -> None:
    closed = trio.Event()

    async def answer_then_close(connection: RawConnection) -> None:
        # Keep-alive promised, then the connection closed while idle (an idle timeout).
        request = await connection.read_request()
        assert request is not None
        await connection.send(response(COMPLETION, headers=[("Content-Type", JSON)]))
        await connection.close()
        closed.set()

    gateway, server = await raw_upstream(nursery, start_gateway, answer_then_close)
    assert (await chat(gateway)).status_code == 200
    await closed.wait()
    await trio.sleep(0.05)  # the FIN crosses loopback
    again = await chat(gateway)
    assert again.status_code == 200
    assert again.json()["choices"][0]["message"]["content"] == "hi"
    assert [r.connection for r in chat_requests(server)] == [0, 1]  # one request per call
