"""Streamed response bodies written straight to the client's socket, framed here.

hypercorn passes every ``http.response.body`` message through ``HTTPStream.app_send``,
``H11Protocol.stream_send``, h11's ``Connection.send``, ``TCPServer.protocol_send`` (a lock, a
shielded cancel scope) and trio's ``SocketStream.send_all``: two trips through the scheduler and
about fifty microseconds of Python per streamed event, more than all the gateway's own work on
it. Between the head and the end of a chunked body none of that changes any state: h11 stays in
``SEND_BODY`` and its chunked writer keeps nothing between chunks. So a middle piece of such a
body is framed here exactly as h11 frames it (``<size hex>\\r\\n<data>\\r\\n``) and written with
one system call when the socket takes it all at once, without a checkpoint. Everything else —
the head, the body's end, a HEAD answer, HTTP/1.0 (no chunking), a connection closing, a write
already queued — goes the way it always went, so h11's view of the connection stays true and
keep-alive works after a stream. When the socket does not take the whole chunk (a slow client),
the rest goes through hypercorn's locked ``send_all``, which waits for the client: a slow reader
holds the stream back instead of making us buffer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol, final

import h11
import trio
from h11._writers import ChunkedWriter
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

MAX_JOINED_BODY_BYTES = 64 * 1024  # a first body piece up to this goes in one write with the head
UNCORK_DEADLINE_S = 1.0  # writing a held head from a failed or cancelled send, at most


class ChunkedConnection(Protocol):
    """What the writer needs of its connection: its socket, h11 and hypercorn's send path."""

    def h11_connection(self) -> object:
        """The connection's h11 state machine (something else once upgraded)."""

    async def write(self, data: bytes) -> None:
        """Write ``data`` at once when the socket takes it all, else through hypercorn's path
        (locked, waiting for the client); held while corked."""

    def cork(self) -> None:
        """Hold what hypercorn writes from now on, to go out in one write at :meth:`uncork`."""

    async def uncork(self) -> None:
        """Write what was held, in order, and stop holding."""


@final
class ChunkedBodyWriter:
    """The ASGI ``send`` of one HTTP/1.1 request: middle body chunks go straight out."""

    __slots__ = ("_connection", "_h11", "_send", "_start", "_stream")

    def __init__(self, connection: ChunkedConnection, stream: HTTPStream, send: Send) -> None:
        self._connection = connection
        self._stream = stream
        self._send = send
        self._start: Message | None = None
        self._h11: h11.Connection | None = None  # once the answer is known to be chunked

    async def send(self, message: Message) -> None:
        """Send one ASGI message; a body piece with more to come may skip hypercorn."""
        kind = message["type"]
        if kind == "http.response.start" and self._start is None:
            # Held until the first body message (ASGI lets a server wait for it), so the head
            # and the first piece of the body, or the whole of a small answer, leave together.
            self._start = message
            return
        if kind != "http.response.body":
            await self._send(message)
            return
        start, self._start = self._start, None
        if start is not None:
            if len(message.get("body", b"")) <= MAX_JOINED_BODY_BYTES:
                await self._send_with_head(start, message)
                return
            await self._send(start)  # a large body is not copied to save a write
        await self._send_body(message)

    async def _send_body(self, message: Message) -> None:
        """A middle piece of a chunked body framed and written here; any other body message
        through hypercorn."""
        body = message.get("body", b"")
        if body and message.get("more_body", False) and self._sending_chunks():
            await self._connection.write(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            await self._send(message)

    async def _send_with_head(self, start: Message, message: Message) -> None:
        """The held head and the first body message, in one write when the socket takes it."""
        connection = self._connection
        connection.cork()
        try:
            await self._send(start)
            await self._send_body(message)  # held with the head while corked
        except BaseException:
            # h11 counts what was held as sent: it goes, even from a cancelled call.
            with trio.move_on_after(UNCORK_DEADLINE_S, shield=True):
                await connection.uncork()
            raise
        await connection.uncork()

    def _sending_chunks(self) -> bool:
        """Whether the answer is in its chunked body, as h11 and hypercorn both see it."""
        stream = self._stream
        if stream.closed or stream.state is not ASGIHTTPState.RESPONSE:
            return False
        h11_connection = self._h11
        if h11_connection is None:
            # Looked up once per answer: h11's connection and its writer stay the same until
            # the answer ends; only its state is read for every chunk.
            found = self._connection.h11_connection()
            if not isinstance(found, h11.Connection) or not isinstance(
                found._writer, ChunkedWriter
            ):
                return False
            self._h11 = h11_connection = found
        return h11_connection.our_state is h11.SEND_BODY


def lean_send(connection: ChunkedConnection, send: Any) -> Any:
    """``send`` of one request wrapped by a :class:`ChunkedBodyWriter` when it is hypercorn's
    HTTP/1.1 stream's (the only kind whose framing this knows); else ``send`` itself."""
    stream = getattr(send, "__self__", None)
    if isinstance(stream, HTTPStream) and isinstance(connection.h11_connection(), h11.Connection):
        return ChunkedBodyWriter(connection, stream, send).send
    return send
