"""proxy.upstream_http against real servers on loopback: framing, keep-alive, errors, TLS.

Most servers here are raw (``tests.fakes.raw_http_server``): they answer with scripted bytes,
split wherever a test wants, so every framing and every failure is byte-exact. The server counts
the connections it accepted, which is how a test proves a connection was (or was not) reused.
"""

from __future__ import annotations

import itertools
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.upstream_http import UpstreamTransport, close_response, raw_stream
from proxy.upstream_http.connection import Connection
from tests.fakes.asgi_server import Receive, Scope, Send, serve_asgi
from tests.fakes.raw_http_server import (
    RawConnection,
    RawHTTPServer,
    RawRequest,
    answer_each,
    response,
)

WATCHDOG_S = 10.0  # no test here may hang: each one fails after this long
Handler = Callable[[RawConnection], Awaitable[None]]
Serve = Callable[..., Awaitable[RawHTTPServer]]


@pytest.fixture(autouse=True)
async def watchdog(nursery: trio.Nursery) -> None:
    """Fail a test that runs longer than WATCHDOG_S rather than hanging the suite."""

    async def bark() -> None:
        await trio.sleep(WATCHDOG_S)
        raise TimeoutError(f"the test ran for more than {WATCHDOG_S} s")

    nursery.start_soon(bark)


@pytest.fixture
async def serve(nursery: trio.Nursery) -> Serve:
    """Start a raw server for a handler (TLS with ``ssl_context=``); stopped with the test."""

    async def start(
        handler: Handler, *, ssl_context: ssl.SSLContext | None = None
    ) -> RawHTTPServer:
        server = RawHTTPServer(handler, ssl_context)
        await nursery.start(server.run)
        return server

    return start


@pytest.fixture
async def transport() -> AsyncIterator[UpstreamTransport]:
    """A roomy transport: ten connections, all of which may stay idle."""
    pool = UpstreamTransport(max_connections=10, max_keepalive_connections=10, keepalive_expiry=30)
    yield pool
    await pool.aclose()


@pytest.fixture
async def single() -> AsyncIterator[UpstreamTransport]:
    """A transport with one connection: a leaked slot shows as a PoolTimeout on the next call."""
    pool = UpstreamTransport(max_connections=1, max_keepalive_connections=1, keepalive_expiry=30)
    yield pool
    await pool.aclose()


def build(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | AsyncIterator[bytes] | None = None,
    timeout: httpx.Timeout | None = None,
) -> httpx.Request:
    """A request as the gateway builds it: httpx's timeouts in its extensions."""
    timeouts = timeout if timeout is not None else httpx.Timeout(5.0)
    return httpx.Request(
        method, url, headers=headers, content=content, extensions={"timeout": timeouts.as_dict()}
    )


async def read_all(answer: httpx.Response) -> bytes:
    """The raw body through httpx's ``aiter_raw``; the response is closed afterwards."""
    try:
        return b"".join([piece async for piece in answer.aiter_raw()])
    finally:
        await answer.aclose()


async def fetch(
    pool: UpstreamTransport, method: str, url: str, **kwargs: Any
) -> tuple[httpx.Response, bytes]:
    """Send one request and read its answer to the end."""
    answer = await pool.handle_async_request(build(method, url, **kwargs))
    return answer, await read_all(answer)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """A streaming request body."""
    for part in parts:
        await trio.lowlevel.checkpoint()
        yield part


def split(data: bytes, points: Sequence[int]) -> list[bytes]:
    """``data`` cut at each of ``points`` (sorted, unique, inside the data)."""
    edges = [0, *sorted(set(points)), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(edges)]


# -- answers used by several tests -----------------------------------------------------------

JSON_BODY = b'{"id": "chatcmpl-1", "choices": [{"message": {"content": "hello there"}}]}'
CHUNKED_ANSWER = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
    b"5;name=value\r\nhello\r\n"
    b'7 ; quoted="a;b"\r\n, world\r\n'
    b"0000A\r\n0123456789\r\n"
    b'1c\r\ndata: {"delta": "x\\r\\n"}\r\n\r\n\r\n'
    b"0\r\nX-Trailer: yes\r\nX-Other-Trailer: 1\r\n\r\n"
)
CHUNKED_BODY = b'hello, world0123456789data: {"delta": "x\\r\\n"}\r\n\r\n'


@dataclass(frozen=True)
class Framing:
    """One way of ending a body: the answer's bytes, its body, and whether it keeps-alive."""

    name: str
    answer: bytes
    body: bytes
    keep_alive: bool


FRAMINGS = [
    Framing(
        "content-length",
        response(JSON_BODY, headers=[("Content-Type", "application/json")]),
        JSON_BODY,
        keep_alive=True,
    ),
    Framing("chunked", CHUNKED_ANSWER, CHUNKED_BODY, keep_alive=True),
    Framing(
        "until-close",
        response(JSON_BODY, headers=[("Content-Type", "application/json")], length=False),
        JSON_BODY,
        keep_alive=False,
    ),
    Framing(
        "informational-first",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        + response(JSON_BODY),
        JSON_BODY,
        keep_alive=True,
    ),
]
FRAMING_IDS = [framing.name for framing in FRAMINGS]


async def exchange_in_fragments(
    pool: UpstreamTransport, server: RawHTTPServer, framing: Framing, rounds: int
) -> None:
    """``rounds`` requests, each answer intact, on one connection when the framing allows it."""
    for number in range(rounds):
        answer, body = await fetch(pool, "GET", f"{server.url}/r/{number}")
        assert answer.status_code == 200
        assert body == framing.body
    assert server.connections == (1 if framing.keep_alive else rounds)
    assert [request.target for request in server.requests] == [f"/r/{n}" for n in range(rounds)]


def fragments_handler(framing: Framing, cuts: Callable[[int], Sequence[bytes]]) -> Handler:
    """Answer request number n with ``cuts(n)``; close after each answer when the framing needs."""
    answered = 0

    def answer(_: RawRequest) -> Sequence[bytes]:
        nonlocal answered
        answered += 1
        return cuts(answered - 1)

    return answer_each(answer, close_after=not framing.keep_alive)


# -- 1. framing --------------------------------------------------------------------------------


async def test_content_length_body(serve: Serve, transport: UpstreamTransport) -> None:
    server = await serve(
        answer_each(lambda _: response(JSON_BODY, headers=[("Content-Type", "application/json")]))
    )
    answer, body = await fetch(transport, "GET", f"{server.url}/v1/models")
    assert answer.status_code == 200
    assert answer.reason_phrase == "OK"
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["content-length"] == str(len(JSON_BODY))
    assert body == JSON_BODY


async def test_chunked_body_with_extensions_and_trailers(
    serve: Serve, transport: UpstreamTransport
) -> None:
    server = await serve(answer_each(lambda _: CHUNKED_ANSWER))
    answer, body = await fetch(transport, "GET", f"{server.url}/stream")
    assert answer.headers["transfer-encoding"] == "chunked"
    assert body == CHUNKED_BODY
    # The trailers were consumed: the connection carries the next request cleanly.
    _, again = await fetch(transport, "GET", f"{server.url}/stream")
    assert again == CHUNKED_BODY
    assert server.connections == 1


async def test_body_until_close(serve: Serve, transport: UpstreamTransport) -> None:
    big = os.urandom(300_000)
    server = await serve(answer_each(lambda _: response(big, length=False), close_after=True))
    answer, body = await fetch(transport, "GET", f"{server.url}/download")
    assert "content-length" not in answer.headers
    assert body == big


@pytest.mark.parametrize("framing", FRAMINGS, ids=FRAMING_IDS)
async def test_framing_survives_byte_by_byte_delivery(
    serve: Serve, transport: UpstreamTransport, framing: Framing
) -> None:
    one_byte_each = [framing.answer[i : i + 1] for i in range(len(framing.answer))]
    server = await serve(fragments_handler(framing, lambda _: one_byte_each))
    await exchange_in_fragments(transport, server, framing, rounds=2)


@pytest.mark.parametrize("framing", FRAMINGS, ids=FRAMING_IDS)
async def test_framing_survives_every_single_split_point(
    serve: Serve, transport: UpstreamTransport, framing: Framing
) -> None:
    # Request n gets its answer in two sends, cut after byte n + 1: every boundary is tried once.
    rounds = len(framing.answer) - 1
    server = await serve(fragments_handler(framing, lambda n: split(framing.answer, [n + 1])))
    await exchange_in_fragments(transport, server, framing, rounds=rounds)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
@pytest.mark.parametrize("framing", FRAMINGS, ids=FRAMING_IDS)
async def test_framing_survives_random_splits(
    nursery: trio.Nursery, framing: Framing, data: st.DataObject
) -> None:
    points = st.lists(st.integers(1, len(framing.answer) - 1), max_size=12)
    cuts = [split(framing.answer, data.draw(points)) for _ in range(3)]
    server = RawHTTPServer(fragments_handler(framing, lambda n: cuts[n]))
    await nursery.start(server.run)
    pool = UpstreamTransport(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30)
    try:
        await exchange_in_fragments(pool, server, framing, rounds=3)
    finally:
        await pool.aclose()


async def test_no_body_for_204_304_and_head(serve: Serve, transport: UpstreamTransport) -> None:
    answers = {
        "/204": b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
        # A 304 states the length of the representation it does not send.
        "/304": b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nContent-Length: 1000\r\n\r\n',
        "/head": response(b"", headers=[("Content-Length", "50")], length=False),
        "/after": response(JSON_BODY),
    }
    server = await serve(answer_each(lambda request: answers[request.target]))
    for method, path, status in [
        ("DELETE", "/204", 204),
        ("GET", "/304", 304),
        ("HEAD", "/head", 200),
        ("GET", "/after", 200),
    ]:
        with trio.fail_after(5):
            answer, body = await fetch(transport, method, server.url + path)
        assert answer.status_code == status
        assert body == (JSON_BODY if path == "/after" else b"")
    # Nothing was taken for a body: the one connection stayed in step for every answer.
    assert server.connections == 1


async def test_informational_answers_are_skipped(
    serve: Serve, transport: UpstreamTransport
) -> None:
    informational = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    )
    server = await serve(
        answer_each(lambda _: informational + response(b"final", status="201 Created"))
    )
    answer, body = await fetch(transport, "POST", f"{server.url}/x", content=b"payload")
    assert answer.status_code == 201
    assert "link" not in answer.headers
    assert body == b"final"


async def test_obs_folded_header_is_joined(serve: Serve, transport: UpstreamTransport) -> None:
    folded = (
        b"HTTP/1.1 200 OK\r\nX-Folded: first\r\n   second\r\n\tthird\r\n"
        b"X-Plain: plain\r\nContent-Length: 2\r\n\r\nok"
    )
    server = await serve(answer_each(lambda _: folded))
    answer, body = await fetch(transport, "GET", f"{server.url}/")
    assert answer.headers["x-folded"] == "first second third"
    assert answer.headers["x-plain"] == "plain"
    assert body == b"ok"


# -- 2. keep-alive -----------------------------------------------------------------------------


async def test_sequential_requests_share_one_connection(
    serve: Serve, transport: UpstreamTransport
) -> None:
    server = await serve(answer_each(lambda request: response(request.target.encode())))
    for number in range(8):
        _, body = await fetch(transport, "GET", f"{server.url}/n/{number}")
        assert body == f"/n/{number}".encode()
    assert server.connections == 1
    assert transport.idle_connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        response(b"bye", headers=[("Connection", "close")]),
        response(b"bye", headers=[("Connection", "Keep-Alive, Close")]),
        response(b"old", version="HTTP/1.0"),
        response(b"old", version="HTTP/1.0", headers=[("Connection", "keep-alive")]),
    ],
    ids=["connection-close", "connection-close-in-list", "http-1.0", "http-1.0-keep-alive"],
)
async def test_answer_that_ends_keep_alive_is_not_reused(
    serve: Serve, transport: UpstreamTransport, answer: bytes
) -> None:
    # The server keeps the connection open anyway: only the transport's decision is tested.
    server = await serve(answer_each(lambda _: answer))
    for _ in range(3):
        _, body = await fetch(transport, "GET", f"{server.url}/")
        assert body == answer.rpartition(b"\r\n\r\n")[2]
    assert server.connections == 3
    assert transport.idle_connections == 0


async def test_close_delimited_body_is_not_reused(
    serve: Serve, transport: UpstreamTransport
) -> None:
    server = await serve(
        answer_each(lambda _: response(b"all of it", length=False), close_after=True)
    )
    for _ in range(3):
        _, body = await fetch(transport, "GET", f"{server.url}/")
        assert body == b"all of it"
    assert server.connections == 3


async def test_request_asking_close_is_not_reused(
    serve: Serve, transport: UpstreamTransport
) -> None:
    server = await serve(answer_each(lambda _: response(b"x")))
    for _ in range(2):
        await fetch(transport, "GET", f"{server.url}/", headers={"Connection": "close"})
    assert server.connections == 2


async def test_response_closed_half_read_is_not_reused(
    serve: Serve, transport: UpstreamTransport
) -> None:
    big = os.urandom(2_000_000)
    server = await serve(
        answer_each(lambda r: response(big if r.target == "/big" else b"the small answer"))
    )
    answer = await transport.handle_async_request(build("GET", f"{server.url}/big"))
    pieces = answer.aiter_raw()
    first = await pieces.__anext__()
    assert big.startswith(first)
    assert len(first) < len(big)
    await answer.aclose()
    # The next answer is its own, never the tail of the big one.
    _, body = await fetch(transport, "GET", f"{server.url}/small")
    assert body == b"the small answer"
    assert server.connections == 2


async def test_response_closed_unread_is_not_reused(
    serve: Serve, transport: UpstreamTransport
) -> None:
    server = await serve(answer_each(lambda r: response(r.target.encode() * 3)))
    answer = await transport.handle_async_request(build("GET", f"{server.url}/first"))
    await answer.aclose()
    _, body = await fetch(transport, "GET", f"{server.url}/second")
    assert body == b"/second/second/second"
    assert server.connections == 2


async def test_keepalive_expiry_is_honoured(serve: Serve) -> None:
    server = await serve(answer_each(lambda _: response(b"x")))
    never = UpstreamTransport(max_connections=4, max_keepalive_connections=4, keepalive_expiry=0)
    try:
        for _ in range(3):
            await fetch(never, "GET", f"{server.url}/")
        assert server.connections == 3
    finally:
        await never.aclose()
    brief = UpstreamTransport(max_connections=4, max_keepalive_connections=4, keepalive_expiry=0.05)
    try:
        await fetch(brief, "GET", f"{server.url}/")
        await trio.sleep(0.2)  # longer than the expiry: the idle connection is not used
        await fetch(brief, "GET", f"{server.url}/")
        assert server.connections == 5
    finally:
        await brief.aclose()


async def test_max_keepalive_connections_is_honoured(serve: Serve) -> None:
    server = await serve(answer_each(lambda r: response(r.target.encode())))
    pool = UpstreamTransport(max_connections=3, max_keepalive_connections=1, keepalive_expiry=30)
    try:
        # Three answers held open at once take three connections...
        held = [
            await pool.handle_async_request(build("GET", f"{server.url}/{n}")) for n in range(3)
        ]
        assert server.connections == 3
        for number, answer in enumerate(held):
            assert await read_all(answer) == f"/{number}".encode()
        # ...of which only one is kept, and reused.
        assert pool.idle_connections == 1
        for _ in range(3):
            await fetch(pool, "GET", f"{server.url}/again")
        assert server.connections == 3
    finally:
        await pool.aclose()
    none_kept = UpstreamTransport(
        max_connections=3, max_keepalive_connections=0, keepalive_expiry=30
    )
    try:
        for _ in range(2):
            await fetch(none_kept, "GET", f"{server.url}/")
        assert none_kept.idle_connections == 0
        assert server.connections == 5
    finally:
        await none_kept.aclose()


@contextmanager
def descriptors_above(limit: int) -> Iterator[None]:
    """Hold open file descriptors until the next one the process gets is above ``limit``."""
    held: list[int] = []
    try:
        first = os.open(os.devnull, os.O_RDONLY)
        held.append(first)
        while held[-1] <= limit:
            held.append(os.dup(first))
        yield
    finally:
        for fd in held:
            os.close(fd)


async def test_idle_check_works_with_descriptors_above_1024(
    serve: Serve, transport: UpstreamTransport
) -> None:
    # A busy gateway has well over 1024 descriptors open; select() cannot watch those, and a
    # live idle connection must not be taken for a dead one because of it.
    server = await serve(answer_each(lambda _: response(b"x")))
    with descriptors_above(1100):
        for _ in range(2):  # the second call checks the idle connection before using it
            _, body = await fetch(transport, "GET", f"{server.url}/")
            assert body == b"x"
    assert server.connections == 1


# -- 3. stale connections ----------------------------------------------------------------------


def answer_then_close(closed: trio.Event) -> Handler:
    """Answer one request as if keeping the connection, close it (an idle timeout), set ``closed``.

    Later connections are answered the same way, and set nothing.
    """

    async def handler(connection: RawConnection) -> None:
        request = await connection.read_request()
        assert request is not None
        await connection.send(response(b"answer to " + request.body))
        await connection.close()
        if connection.index == 0:
            closed.set()

    return handler


async def test_idle_connections_are_checked_before_reuse(
    serve: Serve, transport: UpstreamTransport
) -> None:
    closed = trio.Event()
    live = await serve(answer_each(lambda r: response(b"live " + r.body)))
    closing = await serve(answer_then_close(closed))
    await fetch(transport, "POST", f"{live.url}/", content=b"one")
    await fetch(transport, "POST", f"{closing.url}/", content=b"one")
    await closed.wait()
    await trio.sleep(0.05)  # the FIN crosses loopback
    # A request that left is never retried: these succeed only because each connection was
    # judged right before it was used: the live one kept, the closed one replaced.
    _, body = await fetch(transport, "POST", f"{live.url}/", content=chunks(b"two"))
    assert body == b"live two"
    _, body = await fetch(transport, "POST", f"{closing.url}/", content=chunks(b"two"))
    assert body == b"answer to two"
    assert live.connections == 1
    assert closing.connections == 2


async def test_idle_connection_closed_by_server_moments_ago_is_not_used(
    serve: Serve, transport: UpstreamTransport
) -> None:
    closed = trio.Event()
    server = await serve(answer_then_close(closed))
    await fetch(transport, "POST", f"{server.url}/", content=b"one")
    await closed.wait()
    await trio.sleep(0.05)  # the FIN crosses loopback
    _, body = await fetch(transport, "POST", f"{server.url}/", content=b"two")
    assert body == b"answer to two"
    assert server.connections == 2
    assert [(r.connection, r.body) for r in server.requests] == [(0, b"one"), (1, b"two")]


async def test_streamed_body_on_connection_closed_by_server_moments_ago(
    serve: Serve, transport: UpstreamTransport
) -> None:
    # A streamed body cannot be retried, so a connection the server has closed must be noticed
    # before it is used, however briefly it was idle.
    closed = trio.Event()
    server = await serve(answer_then_close(closed))
    await fetch(transport, "POST", f"{server.url}/", content=b"one")
    await closed.wait()
    await trio.sleep(0.05)
    _, body = await fetch(transport, "POST", f"{server.url}/", content=chunks(b"two"))
    assert body == b"answer to two"
    assert server.connections == 2


async def test_server_closing_all_idle_connections_at_once(serve: Serve) -> None:
    # A server restarting, or timing out a burst's connections together: every idle connection
    # is dead, and the next request must still get through.
    closed = [trio.Event(), trio.Event()]

    async def answer_then_close_all(connection: RawConnection) -> None:
        request = await connection.read_request()
        assert request is not None
        await connection.send(response(b"answer to " + request.body))
        if connection.index < 2:
            await connection.close()
            closed[connection.index].set()
        else:
            await answer_each(lambda r: response(b"answer to " + r.body))(connection)

    server = await serve(answer_then_close_all)
    pool = UpstreamTransport(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30)
    try:
        await open_two_idle_connections(pool, server.url, b"burst")
        for event in closed:
            await event.wait()
        await trio.sleep(0.05)
        _, body = await fetch(pool, "POST", f"{server.url}/", content=b"after")
        assert body == b"answer to after"
    finally:
        await pool.aclose()


async def open_two_idle_connections(pool: UpstreamTransport, url: str, body: bytes) -> None:
    """Two requests held open at once, then read: two connections left idle in the pool."""
    held = [
        await pool.handle_async_request(build("POST", f"{url}/", content=body)) for _ in range(2)
    ]
    for answer in held:
        assert await read_all(answer) == b"answer to " + body
    assert pool.idle_connections == 2


def drop_after(answered: int, *, connections: int) -> Handler:
    """Answer ``answered`` requests per connection, then read one and close without a word.

    From connection number ``connections`` on, every request is answered normally.
    """

    async def handler(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            if connection.index < connections and connection.requests > answered:
                await connection.close()
                return
            await connection.send(response(b"answer to " + request.body))

    return handler


async def test_request_read_then_dropped_on_a_reused_connection_is_not_retried(
    serve: Serve, transport: UpstreamTransport
) -> None:
    # The server read the whole request, then closed without answering: it may have run it (and
    # billed it). Sending it again could run it twice, so the failure is the caller's to see.
    server = await serve(drop_after(1, connections=1))
    _, body = await fetch(transport, "POST", f"{server.url}/", content=b"one")
    assert body == b"answer to one"
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await fetch(transport, "POST", f"{server.url}/", content=b"two")
    assert [(r.connection, r.body) for r in server.requests] == [(0, b"one"), (0, b"two")]
    assert server.connections == 1


async def test_fresh_connection_dropped_is_not_retried(
    serve: Serve, transport: UpstreamTransport
) -> None:
    server = await serve(drop_after(0, connections=1))
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await fetch(transport, "POST", f"{server.url}/", content=b"one")
    assert server.connections == 1
    assert len(server.requests) == 1


async def test_streamed_body_on_dropped_connection_is_not_retried(
    serve: Serve, transport: UpstreamTransport
) -> None:
    server = await serve(drop_after(1, connections=1))
    await fetch(transport, "POST", f"{server.url}/", content=b"one")
    with pytest.raises(httpx.RemoteProtocolError):
        await fetch(transport, "POST", f"{server.url}/", content=chunks(b"two"))
    assert server.connections == 1


@pytest.fixture
def check_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle connections pass the check before reuse, as in the race where the server's close
    lands just after the check and before the write: too narrow a window to hit on purpose."""
    monkeypatch.setattr(Connection, "dead_while_idle", lambda self: False)


def answer_once_then_end(ended: list[trio.Event], *, reset: bool) -> Handler:
    """The first ``len(ended)`` connections answer one request, then end (an RST with ``reset``,
    else a FIN) and set their event; later connections answer every request."""

    async def handler(connection: RawConnection) -> None:
        if connection.index >= len(ended):
            await answer_each(lambda r: response(b"answer to " + r.body))(connection)
            return
        request = await connection.read_request()
        assert request is not None
        await connection.send(response(b"answer to " + request.body))
        await (connection.reset() if reset else connection.close())
        ended[connection.index].set()

    return handler


async def wait_ended(ended: list[trio.Event]) -> None:
    """Until the server ended those connections, and the RST or FIN crossed loopback."""
    for event in ended:
        await event.wait()
    await trio.sleep(0.05)


@pytest.mark.usefixtures("check_missed")
async def test_write_refused_by_a_reset_connection_is_retried_on_a_fresh_one(
    serve: Serve, transport: UpstreamTransport
) -> None:
    # The kernel refused the very first byte (the server had reset the idle connection): the
    # request provably never left, so it goes again, once, on a new connection.
    ended = [trio.Event()]
    server = await serve(answer_once_then_end(ended, reset=True))
    await fetch(transport, "POST", f"{server.url}/", content=b"one")
    await wait_ended(ended)
    _, body = await fetch(transport, "POST", f"{server.url}/", content=b"two")
    assert body == b"answer to two"
    assert [(r.connection, r.body) for r in server.requests] == [(0, b"one"), (1, b"two")]


@pytest.mark.usefixtures("check_missed")
async def test_streamed_body_refused_at_its_first_byte_is_retried(
    serve: Serve, transport: UpstreamTransport
) -> None:
    # Nothing of the body was taken from its iterator before the head failed: it can go again.
    ended = [trio.Event()]
    server = await serve(answer_once_then_end(ended, reset=True))
    await fetch(transport, "POST", f"{server.url}/", content=b"one")
    await wait_ended(ended)
    _, body = await fetch(transport, "POST", f"{server.url}/", content=chunks(b"t", b"wo"))
    assert body == b"answer to two"
    assert server.connections == 2


@pytest.mark.usefixtures("check_missed")
async def test_close_racing_the_write_is_not_retried(
    serve: Serve, transport: UpstreamTransport
) -> None:
    # The server's FIN was not seen before the write, and the kernel took the request: from
    # here the transport cannot know whether the server read it, so it does not send it again.
    ended = [trio.Event()]
    server = await serve(answer_once_then_end(ended, reset=False))
    await fetch(transport, "POST", f"{server.url}/", content=b"one")
    await wait_ended(ended)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await fetch(transport, "POST", f"{server.url}/", content=b"two")
    assert server.connections == 1


@pytest.mark.usefixtures("check_missed")
async def test_retry_happens_only_once(serve: Serve, transport: UpstreamTransport) -> None:
    async def reset_first_then_drop(connection: RawConnection) -> None:
        if connection.index == 0:
            await answer_once_then_end([ended], reset=True)(connection)
        else:
            await connection.read_request()
            await connection.close()

    ended = trio.Event()
    server = await serve(reset_first_then_drop)
    await fetch(transport, "POST", f"{server.url}/", content=b"one")
    await wait_ended([ended])
    with pytest.raises(httpx.RemoteProtocolError):
        await fetch(transport, "POST", f"{server.url}/", content=b"two")
    # The retry's request was read, then dropped: no third try.
    assert server.connections == 2
    assert [(r.connection, r.body) for r in server.requests] == [(0, b"one"), (1, b"two")]


@pytest.mark.usefixtures("check_missed")
async def test_retry_goes_to_a_fresh_connection_not_another_idle_one(serve: Serve) -> None:
    # Two idle connections die at once (a server restart racing two reuses): the one retry
    # must not be spent on the other dead connection from the pool.
    ended = [trio.Event(), trio.Event()]
    server = await serve(answer_once_then_end(ended, reset=True))
    pool = UpstreamTransport(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30)
    try:
        await open_two_idle_connections(pool, server.url, b"warm")
        await wait_ended(ended)
        _, body = await fetch(pool, "POST", f"{server.url}/", content=b"after")
        assert body == b"answer to after"
        assert server.requests[-1].connection == 2
    finally:
        await pool.aclose()


@pytest.mark.usefixtures("check_missed")
async def test_tls_write_failure_is_not_retried(
    serve: Serve, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    # Over TLS the ciphertext goes through trio's SSLStream, which cannot say how much of it the
    # kernel took before a failure: the strict rule sends nothing again.
    ended = [trio.Event()]
    server = await serve(answer_once_then_end(ended, reset=True), ssl_context=server_tls)
    pool = UpstreamTransport(
        max_connections=2, max_keepalive_connections=2, keepalive_expiry=30, ssl_context=client_tls
    )
    try:
        await fetch(pool, "POST", f"{server.url}/", content=b"one")
        await wait_ended(ended)
        with pytest.raises(httpx.WriteError):
            await fetch(pool, "POST", f"{server.url}/", content=b"two")
        assert server.connections == 1
    finally:
        await pool.aclose()


# -- 4. errors ---------------------------------------------------------------------------------


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_connection_refused_is_connect_error(transport: UpstreamTransport) -> None:
    with pytest.raises(httpx.ConnectError, match=r"127\.0\.0\.1"):
        await fetch(transport, "GET", f"http://127.0.0.1:{free_port()}/")


async def never_answer(connection: RawConnection) -> None:
    """Read the request, then wait for the client to give up."""
    await connection.read_request()
    await connection.wait_for_close()


async def test_read_timeout_waiting_for_the_answer(serve: Serve, single: UpstreamTransport) -> None:
    server = await serve(never_answer)
    with trio.fail_after(5), pytest.raises(httpx.ReadTimeout):
        await fetch(single, "GET", f"{server.url}/", timeout=httpx.Timeout(5.0, read=0.2))
    server.handler = answer_each(lambda _: response(b"fine"))
    _, body = await fetch(single, "GET", f"{server.url}/", timeout=httpx.Timeout(5, pool=1))
    assert body == b"fine"


async def test_read_timeout_in_the_middle_of_the_body(
    serve: Serve, single: UpstreamTransport
) -> None:
    async def stall_mid_body(connection: RawConnection) -> None:
        await connection.read_request()
        await connection.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some")
        await connection.wait_for_close()

    server = await serve(stall_mid_body)
    answer = await single.handle_async_request(
        build("GET", f"{server.url}/", timeout=httpx.Timeout(5.0, read=0.2))
    )
    with trio.fail_after(5), pytest.raises(httpx.ReadTimeout):
        await read_all(answer)
    assert single.idle_connections == 0


async def test_write_timeout(serve: Serve, single: UpstreamTransport) -> None:
    async def never_read_the_body(connection: RawConnection) -> None:
        await trio.sleep_forever()

    async def endless() -> AsyncIterator[bytes]:
        block = b"x" * 1_000_000
        while True:
            await trio.lowlevel.checkpoint()
            yield block

    server = await serve(never_read_the_body)
    with trio.fail_after(5), pytest.raises(httpx.WriteTimeout):
        await fetch(
            single, "POST", f"{server.url}/", content=endless(), timeout=httpx.Timeout(5, write=0.2)
        )


async def test_pool_timeout(serve: Serve, single: UpstreamTransport) -> None:
    server = await serve(answer_each(lambda _: response(b"x")))
    held = await single.handle_async_request(build("GET", f"{server.url}/"))
    with trio.fail_after(5), pytest.raises(httpx.PoolTimeout):
        await fetch(single, "GET", f"{server.url}/", timeout=httpx.Timeout(5.0, pool=0.1))
    assert await read_all(held) == b"x"
    _, body = await fetch(single, "GET", f"{server.url}/", timeout=httpx.Timeout(5.0, pool=0.1))
    assert body == b"x"


BAD_ANSWERS = {
    "status-not-a-number": b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
    "status-four-digits": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "http-2-status-line": b"HTTP/2 200\r\n\r\n",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n",
    "header-name-with-space": b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
    "header-empty-name": b"HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 0\r\n\r\n",
    "fold-before-any-header": b"HTTP/1.1 200 OK\r\n  folded\r\nContent-Length: 0\r\n\r\n",
    "head-never-ends": b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 200_000,
    "head-over-64-KiB": b"HTTP/1.1 200 OK\r\nX-Big: "
    + b"a" * 80_000
    + b"\r\nContent-Length: 0\r\n\r\n",
    "head-cut-short": b"HTTP/1.1 200 OK\r\nContent-Le",
    "switching-protocols": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhello\r\n0\r\n\r\n",
    "negative-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n",
    "chunk-size-line-too-long": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;"
    + b"x" * 10_000,
    "chunk-overruns": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello world\r\n0\r\n\r\n",
    "chunked-cut-short": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    "body-shorter-than-length": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some",
    "conflicting-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
    b"Content-Length: 6\r\n\r\nhello!",
    "conflicting-content-length-list": b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
    "content-length-not-a-number": b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello",
}


@pytest.mark.parametrize("bad", BAD_ANSWERS.values(), ids=BAD_ANSWERS.keys())
async def test_malformed_answer_is_remote_protocol_error(
    serve: Serve, single: UpstreamTransport, bad: bytes
) -> None:
    async def bad_then_good(connection: RawConnection) -> None:
        request = await connection.read_request()
        assert request is not None
        if request.target == "/good":
            await connection.send(response(b"good"))
        else:
            await connection.send(bad)
        await connection.close()

    server = await serve(bad_then_good)
    with trio.fail_after(5), pytest.raises(httpx.RemoteProtocolError):
        await fetch(single, "GET", f"{server.url}/bad")
    # The failure gave back its connection slot: the only one there is.
    _, body = await fetch(single, "GET", f"{server.url}/good", timeout=httpx.Timeout(5, pool=1))
    assert body == b"good"


async def test_unsupported_scheme(transport: UpstreamTransport) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await fetch(transport, "GET", "ftp://127.0.0.1/file")
    with pytest.raises(httpx.UnsupportedProtocol):
        await fetch(transport, "GET", "http:///no-host")


@pytest.mark.parametrize(
    "headers",
    [
        {"x-injected": "a\r\nX-Evil: 1"},
        {"x-injected": "a\nX-Evil: 1"},
        {"x-injected": "a\rX-Evil: 1"},
        {"x-evil\r\nx-more": "1"},
    ],
    ids=["crlf-in-value", "lf-in-value", "cr-in-value", "crlf-in-name"],
)
async def test_header_with_line_break_is_local_protocol_error(
    serve: Serve, single: UpstreamTransport, headers: dict[str, str]
) -> None:
    server = await serve(answer_each(lambda _: response(b"fine")))
    with pytest.raises(httpx.LocalProtocolError):
        await fetch(single, "POST", f"{server.url}/bad", headers=headers, content=b"body")
    _, body = await fetch(single, "GET", f"{server.url}/good", timeout=httpx.Timeout(5, pool=1))
    assert body == b"fine"
    # Nothing of the bad request went out: the good one came first, on the first connection.
    assert server.connections == 1
    assert [request.target for request in server.requests] == ["/good"]


# -- 5. cancellation ---------------------------------------------------------------------------


async def test_cancel_while_waiting_for_the_answer_frees_the_slot(
    serve: Serve, single: UpstreamTransport
) -> None:
    closed_by_client = trio.Event()

    async def first_never_answers(connection: RawConnection) -> None:
        if connection.index == 0:
            await never_answer(connection)
            closed_by_client.set()
        else:
            await answer_each(lambda _: response(b"second"))(connection)

    server = await serve(first_never_answers)
    with trio.move_on_after(0.2) as scope:
        await fetch(single, "GET", f"{server.url}/first")
    assert scope.cancelled_caught
    with trio.fail_after(5):
        _, body = await fetch(
            single, "GET", f"{server.url}/second", timeout=httpx.Timeout(5, pool=1)
        )
        await closed_by_client.wait()  # the abandoned connection was closed, not pooled
    assert body == b"second"
    assert server.connections == 2


async def test_cancel_in_the_middle_of_the_body_frees_the_slot(
    serve: Serve, single: UpstreamTransport
) -> None:
    closed_by_client = trio.Event()

    async def first_stalls(connection: RawConnection) -> None:
        if connection.index == 0:
            await connection.read_request()
            await connection.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nstart")
            await connection.wait_for_close()
            closed_by_client.set()
        else:
            await answer_each(lambda _: response(b"second"))(connection)

    server = await serve(first_stalls)
    answer = await single.handle_async_request(build("GET", f"{server.url}/first"))
    received: list[bytes] = []
    with trio.move_on_after(0.2) as scope:
        async for piece in answer.aiter_raw():
            received.append(piece)
    assert scope.cancelled_caught
    assert received == [b"start"]
    await answer.aclose()
    with trio.fail_after(5):
        _, body = await fetch(
            single, "GET", f"{server.url}/second", timeout=httpx.Timeout(5, pool=1)
        )
        await closed_by_client.wait()
    assert body == b"second"
    assert server.connections == 2


# -- 6. the request on the wire ----------------------------------------------------------------


async def test_request_on_the_wire(serve: Serve, transport: UpstreamTransport) -> None:
    server = await serve(answer_each(lambda _: response(b"ok")))
    payload = b'{"model": "gpt-4o", "messages": []}'
    await fetch(
        transport,
        "POST",
        f"{server.url}/v1/chat/completions?stream=true&q=a%20b",
        headers={"Authorization": "Bearer sk-test", "Content-Type": "application/json"},
        content=payload,
    )
    await fetch(transport, "GET", f"{server.url}/v1/models")
    post, get = server.requests
    lines = post.head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions?stream=true&q=a%20b HTTP/1.1"
    assert post.header_values("host") == [f"127.0.0.1:{server.port}"]
    assert post.header_values("content-length") == [str(len(payload))]
    assert post.header_values("authorization") == ["Bearer sk-test"]
    assert post.header_values("content-type") == ["application/json"]
    assert post.header_values("transfer-encoding") == []
    assert post.body == payload
    assert get.head.split(b"\r\n")[0] == b"GET /v1/models HTTP/1.1"
    assert get.body == b""


async def test_large_body_on_the_wire(serve: Serve, transport: UpstreamTransport) -> None:
    server = await serve(answer_each(lambda request: response(str(len(request.body)).encode())))
    for size in (256 * 1024, 256 * 1024 + 1, 3_000_000):
        payload = os.urandom(size)
        _, body = await fetch(transport, "PUT", f"{server.url}/upload", content=payload)
        assert body == str(size).encode()
        assert server.requests[-1].body == payload
    assert server.connections == 1


async def test_streamed_body_is_sent_chunked(serve: Serve, transport: UpstreamTransport) -> None:
    server = await serve(answer_each(lambda request: response(request.body[::-1])))
    parts = [b"first ", b"", b"second ", os.urandom(100_000)]
    _, body = await fetch(transport, "POST", f"{server.url}/s", content=chunks(*parts))
    received = server.requests[0]
    assert "chunked" in ",".join(received.header_values("transfer-encoding"))
    assert received.header_values("content-length") == []
    assert received.body == b"".join(parts)
    assert body == b"".join(parts)[::-1]
    # The terminating chunk was sent: the connection is still in step.
    _, body = await fetch(transport, "POST", f"{server.url}/s", content=b"abc")
    assert body == b"cba"
    assert server.connections == 1


async def test_streamed_body_has_one_transfer_encoding_header(
    serve: Serve, transport: UpstreamTransport
) -> None:
    # httpx already adds "Transfer-Encoding: chunked" to a request with a streamed body; a
    # second copy makes "chunked, chunked", which RFC 9112 forbids and h11 answers with 501.
    server = await serve(answer_each(lambda _: response(b"ok")))
    await fetch(transport, "POST", f"{server.url}/s", content=chunks(b"a", b"b"))
    assert server.requests[0].header_values("transfer-encoding") == ["chunked"]


async def test_streamed_body_with_content_length_is_sent_as_is(
    serve: Serve, transport: UpstreamTransport
) -> None:
    server = await serve(answer_each(lambda request: response(request.body)))
    _, body = await fetch(
        transport,
        "POST",
        f"{server.url}/s",
        headers={"Content-Length": "11"},
        content=chunks(b"hello", b" ", b"world"),
    )
    assert body == b"hello world"
    assert server.requests[0].header_values("transfer-encoding") == []


# -- 7. HTTPS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_https_request_and_keep_alive(
    serve: Serve, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    server = await serve(
        answer_each(lambda request: response(b"secret " + request.body)), ssl_context=server_tls
    )
    pool = UpstreamTransport(
        max_connections=2, max_keepalive_connections=2, keepalive_expiry=30, ssl_context=client_tls
    )
    try:
        for number in range(4):
            answer, body = await fetch(
                pool, "POST", f"{server.url}/tls", content=str(number).encode()
            )
            assert answer.status_code == 200
            assert body == f"secret {number}".encode()
        assert server.connections == 1
        assert server.requests[0].head.startswith(b"POST /tls HTTP/1.1\r\n")
    finally:
        await pool.aclose()


async def test_https_chunked_and_close_delimited_bodies(
    serve: Serve, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    async def answer(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            if request.target == "/chunked":
                await connection.send_fragments(split(CHUNKED_ANSWER, [7, 40, 60]))
            else:
                await connection.send(response(JSON_BODY, length=False))
                await connection.close()
                return

    server = await serve(answer, ssl_context=server_tls)
    pool = UpstreamTransport(
        max_connections=2, max_keepalive_connections=2, keepalive_expiry=30, ssl_context=client_tls
    )
    try:
        for path, expected in [("/chunked", CHUNKED_BODY), ("/close", JSON_BODY)] * 2:
            _, body = await fetch(pool, "GET", server.url + path)
            assert body == expected
        assert server.connections == 2
    finally:
        await pool.aclose()


async def test_https_idle_connections_checked_before_reuse(
    serve: Serve, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    closed = trio.Event()

    async def two_then_close(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            await connection.send(response(b"answer to " + request.body))
            if connection.index == 0 and connection.requests == 2:
                await connection.close()  # with a TLS close_notify, as servers do
                closed.set()
                return

    server = await serve(two_then_close, ssl_context=server_tls)
    pool = UpstreamTransport(
        max_connections=2, max_keepalive_connections=2, keepalive_expiry=30, ssl_context=client_tls
    )
    try:
        await fetch(pool, "POST", f"{server.url}/", content=b"one")
        # Checked before reuse: nothing left unread on a TLS connection (session tickets, say)
        # may make a live one look closed.
        _, body = await fetch(pool, "POST", f"{server.url}/", content=b"two")
        assert body == b"answer to two"
        assert server.connections == 1
        await closed.wait()
        await trio.sleep(0.05)
        _, body = await fetch(pool, "POST", f"{server.url}/", content=b"three")
        assert body == b"answer to three"
        assert server.connections == 2
    finally:
        await pool.aclose()


async def test_https_unknown_ca_is_connect_error(
    serve: Serve, server_tls: ssl.SSLContext, transport: UpstreamTransport
) -> None:
    server = await serve(answer_each(lambda _: response(b"x")), ssl_context=server_tls)
    with pytest.raises(httpx.ConnectError, match=r"(?i)certificate.verify.failed"):
        await fetch(transport, "GET", f"{server.url}/")


# -- the helpers the provider uses: raw_stream and close_response -----------------------------


async def test_raw_stream_reads_the_body_and_frees_the_connection(
    serve: Serve, single: UpstreamTransport
) -> None:
    server = await serve(fragments_handler(FRAMINGS[1], lambda _: split(CHUNKED_ANSWER, [50])))
    for _ in range(2):
        answer = await single.handle_async_request(build("GET", f"{server.url}/"))
        assert b"".join([piece async for piece in raw_stream(answer)]) == CHUNKED_BODY
        close_response(answer)
        assert answer.is_closed
    assert server.connections == 1
    assert single.idle_connections == 1


async def test_close_response_unread_closes_the_connection(
    serve: Serve, single: UpstreamTransport
) -> None:
    closed_by_client = trio.Event()

    async def answer(connection: RawConnection) -> None:
        await answer_each(lambda r: response(r.target.encode() * 2))(connection)
        if connection.index == 0:
            closed_by_client.set()

    server = await serve(answer)
    first = await single.handle_async_request(build("GET", f"{server.url}/first"))
    close_response(first)  # synchronous: safe in a finally of a cancelled call
    assert first.is_closed
    assert single.idle_connections == 0
    with trio.fail_after(5):
        await closed_by_client.wait()
        _, body = await fetch(single, "GET", f"{server.url}/next", timeout=httpx.Timeout(5, pool=1))
    assert body == b"/next/next"
    assert server.connections == 2


# -- 8. behind httpx.AsyncClient ---------------------------------------------------------------


async def test_async_client_get_and_post(serve: Serve) -> None:
    def answer(request: RawRequest) -> bytes:
        return response(
            f"{request.method} {request.target} {request.body.decode()}".encode(),
            headers=[("Content-Type", "text/plain")],
        )

    server = await serve(answer_each(answer))
    pool = UpstreamTransport(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30)
    async with httpx.AsyncClient(transport=pool, base_url=server.url, timeout=5) as client:
        got = await client.get("/models", params={"page": "2"})
        assert got.status_code == 200
        assert got.text == "GET /models?page=2 "
        posted = await client.post("/chat", json={"q": 1})
        assert posted.text == 'POST /chat {"q":1}'
        assert posted.headers["content-type"] == "text/plain"
        async with client.stream("POST", "/chat", content=b"streamed") as streamed:
            assert await streamed.aread() == b"POST /chat streamed"
    assert server.connections == 1


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app answering ``METHOD PATH BODY`` as text."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    text = f"{scope['method']} {scope['path']} ".encode() + body
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": text})


async def test_async_client_against_hypercorn(nursery: trio.Nursery) -> None:
    url: str = await nursery.start(serve_asgi, echo_app)
    pool = UpstreamTransport(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30)
    async with httpx.AsyncClient(transport=pool, base_url=url, timeout=5) as client:
        got = await client.get("/v1/models")
        assert (got.status_code, got.text) == (200, "GET /v1/models ")
        posted = await client.post("/v1/chat", content=b"x" * 100_000)
        assert posted.text == "POST /v1/chat " + "x" * 100_000
        assert (await client.head("/v1/models")).status_code == 200
        got = await client.get("/after-head")
        assert got.text == "GET /after-head "


async def test_async_client_streamed_post_against_hypercorn(nursery: trio.Nursery) -> None:
    url: str = await nursery.start(serve_asgi, echo_app)
    pool = UpstreamTransport(max_connections=4, max_keepalive_connections=4, keepalive_expiry=30)
    async with httpx.AsyncClient(transport=pool, base_url=url, timeout=5) as client:
        posted = await client.post("/v1/chat", content=chunks(b"streamed ", b"body"))
        assert (posted.status_code, posted.text) == (200, "POST /v1/chat streamed body")
