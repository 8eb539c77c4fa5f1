"""Streamed bodies go straight to the socket (web.chunk_writer), and HTTP stays HTTP.

The server under test is the gateway's own (:func:`web.http_server.serve`) with a small ASGI app
whose answers each test picks, on loopback port 0; clients are raw sockets parsed by h11
(:mod:`tests.raw_http`), so the framing on the wire is what is checked.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import hypercorn.config
import pytest
import trio
import trio.testing

from tests.raw_http import RawConnection, head
from web.connections import Connections
from web.http_server import serve

Message = dict[str, Any]
Handler = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

PIECES = [b"data: one\n\n", b"data: two\n\n", b"data: three\n\n"]


class Probe:
    """What the app saw while answering: whether a send checkpointed, how far it got."""

    def __init__(self) -> None:
        self.checkpoint_free_sends = 0
        self.bytes_sent = 0


async def _read_all(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _app(handler: Handler) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        await _read_all(receive)
        await handler(scope, receive, send)

    return app


async def _stream_pieces(probe: Probe, send: Any) -> None:
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": PIECES[0], "more_body": True})
    for piece in PIECES[1:]:
        # The socket has room: the piece leaves with one write, no trip through the scheduler.
        with trio.testing.assert_no_checkpoints():
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        probe.checkpoint_free_sends += 1
    await send({"type": "http.response.body", "body": b"", "more_body": False})


@pytest.fixture
async def serving(nursery: trio.Nursery) -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start the server with an app made of a handler; gives its base URL."""
    stop = trio.Event()

    async def start(handler: Handler) -> str:
        config = hypercorn.config.Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        binds = await nursery.start(
            lambda task_status: serve(
                _app(handler),
                config,
                Connections(64),
                header_timeout_s=10,
                shutdown_trigger=stop.wait,
                task_status=task_status,
            )
        )
        return str(binds[0])

    try:
        yield start
    finally:
        stop.set()


async def test_body_pieces_of_a_stream_are_written_without_a_checkpoint_and_keep_alive_holds(
    serving: Callable[[Handler], Awaitable[str]],
) -> None:
    probe = Probe()
    url = await serving(lambda scope, receive, send: _stream_pieces(probe, send))
    connection = await RawConnection.open(url)
    for _ in range(2):  # the second answer on the same connection: h11's state stayed true
        await connection.send(head("GET", "/events"))
        answer = await connection.response()
        assert answer is not None
        assert answer.status == 200
        assert answer.headers["transfer-encoding"] == "chunked"
        assert answer.body == b"".join(PIECES)
    assert probe.checkpoint_free_sends == 2 * (len(PIECES) - 1)


async def test_http_1_0_gets_the_stream_unframed_then_the_connection_closes(
    serving: Callable[[Handler], Awaitable[str]],
) -> None:
    probe = Probe()

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for piece in PIECES:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            probe.bytes_sent += len(piece)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    url = await serving(handler)
    host, port = url.removeprefix("http://").split(":")
    raw = await trio.open_tcp_stream(host, int(port))
    await raw.send_all(b"GET /events HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n")
    received = b""
    with trio.fail_after(10):
        while chunk := await raw.receive_some(65536):
            received += chunk
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    assert head_bytes.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head_bytes.lower()
    assert body == b"".join(PIECES)  # no chunk framing, the end is the connection's close


async def test_a_client_that_does_not_read_holds_the_stream_back(
    serving: Callable[[Handler], Awaitable[str]],
) -> None:
    piece = bytes(range(256)) * 1024  # 256 KiB
    pieces = 64  # 16 MiB in all: far more than the socket buffers hold
    probe = Probe()
    done = trio.Event()

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(pieces):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            probe.bytes_sent += len(piece)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        done.set()

    url = await serving(handler)
    connection = await RawConnection.open(url)
    connection.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    await connection.send(head("GET", "/big"))
    with trio.move_on_after(0.5):
        await done.wait()
    # Nothing is read yet: the app waits for the client, it does not queue the answer.
    assert not done.is_set()
    assert probe.bytes_sent < pieces * len(piece) // 2
    answer = await connection.response(timeout=30)
    assert answer is not None
    assert answer.body == piece * pieces
    with trio.fail_after(5):
        await done.wait()


async def test_the_head_waits_for_the_first_body_message_and_leaves_with_it(
    serving: Callable[[Handler], Awaitable[str]],
) -> None:
    release = trio.Event()
    body = b'{"object":"chat.completion"}'

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await release.wait()
        await send({"type": "http.response.body", "body": body, "more_body": False})

    url = await serving(handler)
    connection = await RawConnection.open(url)
    await connection.send(head("GET", "/answer"))
    with trio.move_on_after(0.3) as waited:
        await connection.stream.receive_some(65536)
    assert waited.cancelled_caught  # nothing yet: the head is held for the body
    release.set()
    with trio.fail_after(10):
        first_read = await connection.stream.receive_some(65536)
    # One write: a single read holds the head and the whole body.
    assert first_read.startswith(b"HTTP/1.1 200")
    assert first_read.endswith(b"\r\n\r\n" + body)
    await connection.send(head("GET", "/answer"))  # and the connection serves the next one
    answer = await connection.response()
    assert answer is not None
    assert answer.body == body
