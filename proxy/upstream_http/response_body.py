"""The answer's body, read from its connection as it is asked for, with its framing.

Bodies are framed by ``content-length``, ``chunked`` or the end of the connection; HEAD, 204 and
304 answers have none. A connection goes back to the pool only after its answer was read to the
end, and never after ``connection: close`` or an HTTP/1.0 answer. A response not read to the end,
or a call cancelled half-way, closes its connection: the next request never reads the tail of an
old answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Final

import httpx
import trio

from proxy.upstream_http.connection import Connection
from proxy.upstream_http.response_head import HeaderList

__all__ = ["MAX_CHUNK_LINE_BYTES", "Release", "ResponseBody", "close_response", "raw_stream"]

MAX_CHUNK_LINE_BYTES: Final = 4096  # a chunk-size line, extensions included
_CHUNKED: Final = -1
_UNTIL_CLOSE: Final = -2
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"
_CUT_SHORT: Final = "Server disconnected before the end of the answer (incomplete body)."

# Gives a connection back to its transport: to the pool when the flag says it may be reused.
Release = Callable[[Connection, bool], None]


class ResponseBody(httpx.AsyncByteStream):
    """The answer's body, read from the connection as it is asked for."""

    def __init__(
        self,
        release: Release,
        connection: Connection,
        status: int,
        headers: HeaderList,
        *,
        keep_alive: bool,
        head_only: bool,
        read_timeout: float | None,
    ) -> None:
        self._release = release
        self._connection: Connection | None = connection
        self._timeout = read_timeout
        self._keep_alive = keep_alive
        self._remaining = 0  # bytes left of a content-length body or of the current chunk
        self._chunked = False
        self._chunk_state = _CHUNK_SIZE
        self._until_close = False
        self._done = False
        if head_only or status in _NO_BODY_STATUSES or status < 200:
            self._finish()
            return
        framing = _framing(headers)
        if framing == _CHUNKED:
            self._chunked = True
        elif framing == _UNTIL_CLOSE:
            # No length and no chunking: the body is everything until the server closes.
            self._until_close = True
            self._keep_alive = False
        else:
            self._remaining = framing
            if framing == 0:
                self._finish()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            connection = self._connection
            if (
                self._chunk_state == _CHUNK_SIZE
                and self._chunked
                and connection is not None
                and not connection.buffer
            ):
                # A stream's next event, nearly always: whole chunks in one read, taken here
                # without a frame per framing state (the states below read anything else).
                received = await connection.receive(self._timeout)
                if not received:
                    raise httpx.RemoteProtocolError(_CUT_SHORT)
                data, end = _whole_chunks(received)
                if end < len(received):
                    connection.buffer.extend(received[end:])
                if data:
                    return data
            while not self._done:
                data = await self._next_piece()
                if data:
                    return data
        except BaseException:
            # Cancelled or failed half-way: the connection's state is unknown, so it goes.
            self._discard()
            raise
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.close()

    def abort(self) -> None:
        """End a read under way at once (it fails as a read error); the connection then goes."""
        connection = self._connection
        if connection is not None and not connection.closed:
            # Wakes the task waiting for the socket with ClosedResourceError; the read's
            # failure discards the connection (see __anext__).
            trio.lowlevel.notify_closing(connection.socket)

    def close(self) -> None:
        """Done with the answer. One left unread closes its connection rather than draining an
        unknown amount. Synchronous, so it needs no shield in a ``finally``."""
        self._discard()

    # -- framing ---------------------------------------------------------------------------------

    async def _next_piece(self) -> bytes:
        connection = self._connection
        assert connection is not None
        buffer = connection.buffer
        if self._until_close:
            if buffer:
                return _take(buffer, len(buffer))
            data = await connection.receive(self._timeout)
            if not data:
                self._finish()
            return data
        if not self._chunked:
            if not buffer:
                buffer += await self._receive_more(connection)
            data = _take(buffer, min(len(buffer), self._remaining))
            self._remaining -= len(data)
            if self._remaining == 0:
                self._finish()
            return data
        return await self._next_chunk_piece(connection, buffer)

    async def _next_chunk_piece(self, connection: Connection, buffer: bytearray) -> bytes:
        state = self._chunk_state
        if state == _CHUNK_SIZE:
            # Whole chunks in one go (see __anext__); a chunk split across reads goes through
            # the states below.
            if not buffer:
                buffer += await self._receive_more(connection)
            data, end = _whole_chunks(buffer)
            if data:
                del buffer[:end]
                return data
        elif state == _CHUNK_DATA:
            if not buffer:
                buffer += await self._receive_more(connection)
            data = _take(buffer, min(len(buffer), self._remaining))
            self._remaining -= len(data)
            if self._remaining == 0:
                self._chunk_state = _CHUNK_DATA_END
            return data
        line = await self._line(connection, buffer)
        if state == _CHUNK_SIZE:
            self._remaining = _chunk_size(line)
            self._chunk_state = _CHUNK_DATA if self._remaining else _CHUNK_TRAILERS
        elif state == _CHUNK_DATA_END:
            if line:
                raise httpx.RemoteProtocolError("A chunk of the answer overran its declared size.")
            self._chunk_state = _CHUNK_SIZE
        elif not line:  # the blank line that ends the trailers ends the body
            self._finish()
        return b""

    async def _line(self, connection: Connection, buffer: bytearray) -> bytes:
        while True:
            end = buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 2]
                return line
            if len(buffer) > MAX_CHUNK_LINE_BYTES:
                raise httpx.RemoteProtocolError("A chunk line of the answer is too long.")
            buffer += await self._receive_more(connection)

    async def _receive_more(self, connection: Connection) -> bytes:
        data = await connection.receive(self._timeout)
        if not data:
            raise httpx.RemoteProtocolError(_CUT_SHORT)
        return data

    def _finish(self) -> None:
        """The body was read to its end: the connection may carry the next request."""
        self._done = True
        connection, self._connection = self._connection, None
        if connection is not None:
            self._release(connection, self._keep_alive and not connection.buffer)

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._done = True
            self._release(connection, False)


_CHUNK_SIZE, _CHUNK_DATA, _CHUNK_DATA_END, _CHUNK_TRAILERS = range(4)


def _take(buffer: bytearray, size: int) -> bytes:
    data = bytes(buffer[:size])
    del buffer[:size]
    return data


def _whole_chunks(data: bytes | bytearray) -> tuple[bytes, int]:
    """The data of the complete chunks at the start of ``data`` and where they end; ``(b"", 0)``
    when the first is incomplete or is the last (size 0, which the states read with its
    trailers)."""
    parts: list[bytes | bytearray] = []
    start = 0
    while True:
        end = data.find(b"\r\n", start, start + MAX_CHUNK_LINE_BYTES)
        if end < 0:
            break
        size = _chunk_size(data[start:end])
        data_end = end + 2 + size
        if size == 0 or len(data) < data_end + 2:
            break
        if data[data_end : data_end + 2] != b"\r\n":
            raise httpx.RemoteProtocolError("A chunk of the answer overran its declared size.")
        parts.append(data[end + 2 : data_end])
        start = data_end + 2
    if not parts:
        return b"", 0
    # bytes() of a slice of bytes is that slice, not a copy.
    return (bytes(parts[0]) if len(parts) == 1 else b"".join(parts)), start


def _chunk_size(line: bytes | bytearray) -> int:
    if 0 < len(line) <= 16 and not line.strip(_HEX_DIGITS):
        return int(line, 16)  # digits alone, how servers write it
    digits = line.split(b";", 1)[0].strip()
    if not digits or len(digits) > 16 or digits.strip(_HEX_DIGITS):
        raise httpx.RemoteProtocolError(f"Bad chunk size line in the answer: {line[:40]!r}.")
    return int(digits, 16)


def _framing(headers: HeaderList) -> int:
    """The content length, else ``_CHUNKED`` or ``_UNTIL_CLOSE`` (body ends with the connection)."""
    lengths: set[bytes] = set()
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            if value.lower().rsplit(b",", 1)[-1].strip() == b"chunked":
                return _CHUNKED
            return _UNTIL_CLOSE
        if lowered == b"content-length":
            lengths.update(part.strip() for part in value.split(b","))
    if not lengths:
        return _UNTIL_CLOSE
    if len(lengths) > 1 or not all(length.isdigit() for length in lengths):
        raise httpx.RemoteProtocolError("The answer's content-length is invalid.")
    return int(lengths.pop())


def close_response(response: httpx.Response) -> None:
    """Release a response of this transport at once (its connection goes back or is closed)."""
    stream = response.stream
    if isinstance(stream, ResponseBody):
        stream.close()
    response.is_closed = True


def raw_stream(response: httpx.Response) -> ResponseBody:
    """The body's bytes as they arrive, without httpx's wrapping async generator (whose
    cleanup needs an await) — for responses of this transport."""
    stream = response.stream
    assert isinstance(stream, ResponseBody), "not a response of UpstreamTransport"
    return stream
