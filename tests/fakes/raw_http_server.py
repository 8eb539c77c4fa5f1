"""A raw HTTP/1.1 server on 127.0.0.1 whose answers are byte-exact scripts, for transport tests.

Nothing here speaks HTTP for the test: a handler gets each accepted connection as a
:class:`RawConnection`, reads requests off it (parsed just enough to find where they end) and
writes whatever bytes it likes, in fragments, with pauses, then closes or not. The server counts
accepted connections and records every request it read, so a test can prove keep-alive (one
connection for many requests) or its absence, and what exactly went over the wire.
"""

from __future__ import annotations

import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import trio

__all__ = ["RawConnection", "RawHTTPServer", "RawRequest", "answer_each", "response"]


@dataclass(frozen=True, slots=True)
class RawRequest:
    """One request as it arrived: the head's bytes, its parts, and the (de-chunked) body."""

    head: bytes  # request line and header lines, without the blank line that ends them
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int  # index of the connection it came on, 0 for the first accepted

    def header_values(self, name: str) -> list[str]:
        """Every value of the header ``name`` (case-insensitive), in order."""
        return [value for key, value in self.headers if key.lower() == name.lower()]


class RawConnection:
    """One accepted connection, with the bytes read from it but not consumed yet."""

    def __init__(self, server: RawHTTPServer, stream: trio.abc.Stream, index: int) -> None:
        self.server = server
        self.stream = stream
        self.index = index
        self.requests = 0  # requests read on this connection so far
        self._buffer = bytearray()

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self._buffer += data
        return bool(data)

    async def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if not await self._fill():
                raise EOFError
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not await self._fill():
                raise EOFError
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def read_request(self) -> RawRequest | None:
        """The next request, read to its end; None if the client closed (or broke) first."""
        try:
            while (end := self._buffer.find(b"\r\n\r\n")) < 0:
                if not await self._fill():
                    return None
        except trio.BrokenResourceError:
            return None
        head = bytes(self._buffer[:end])
        del self._buffer[: end + 4]
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        headers = [
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines)
        ]
        lowered = {name.lower(): value.lower() for name, value in headers}
        body = b""
        if "chunked" in lowered.get("transfer-encoding", ""):
            parts: list[bytes] = []
            while size := int((await self._line()).split(b";")[0], 16):
                parts.append(await self._exactly(size))
                assert await self._line() == b"", "chunk data overran its size"
            while await self._line():  # trailers
                pass
            body = b"".join(parts)
        elif "content-length" in lowered:
            body = await self._exactly(int(lowered["content-length"]))
        request = RawRequest(head, method, target, version, headers, body, self.index)
        self.requests += 1
        self.server.requests.append(request)
        return request

    async def send(self, data: bytes) -> None:
        """Write these bytes at once."""
        await self.stream.send_all(data)

    async def send_fragments(self, fragments: Sequence[bytes], pause: float = 0.0) -> None:
        """Write each fragment with its own send, sleeping ``pause`` seconds between them.

        Even with no pause the client runs between two fragments (both ends share one trio run),
        so on loopback each fragment normally arrives by a read of its own.
        """
        for number, fragment in enumerate(fragments):
            if number:
                await trio.sleep(pause)
            await self.stream.send_all(fragment)

    async def wait_for_close(self) -> None:
        """Read (and drop) whatever comes until the client closes the connection."""
        try:
            while await self.stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass

    async def close(self) -> None:
        """Close the connection (over TLS, with a close_notify when the client still listens)."""
        await self.stream.aclose()

    async def reset(self) -> None:
        """Abort the connection with a TCP reset (RST) instead of an orderly close (FIN)."""
        tcp = (
            self.stream.transport_stream if isinstance(self.stream, trio.SSLStream) else self.stream
        )
        assert isinstance(tcp, trio.SocketStream)
        # A zero linger time makes close() send RST and drop what was not yet sent.
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await trio.aclose_forcefully(tcp)


Handler = Callable[[RawConnection], Awaitable[None]]


@dataclass(slots=True)
class RawHTTPServer:
    """Serves ``handler`` on 127.0.0.1 (TLS when ``ssl_context`` is given) until cancelled."""

    handler: Handler
    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    connections: int = 0  # connections accepted so far
    requests: list[RawRequest] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:43117``."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on a free port; ``started()`` reports it."""
        async with trio.open_nursery() as nursery:
            listeners: list[trio.SocketListener] = await nursery.start(
                partial(trio.serve_tcp, self._serve, 0, host="127.0.0.1")
            )
            self.port = listeners[0].socket.getsockname()[1]
            task_status.started(self.port)

    async def _serve(self, tcp: trio.SocketStream) -> None:
        index = self.connections
        self.connections += 1
        # Every fragment leaves in its own segment, so the client's reads see the split points.
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        stream: trio.abc.Stream = tcp
        if self.ssl_context is not None:
            stream = trio.SSLStream(tcp, self.ssl_context, server_side=True, https_compatible=True)
        try:
            await self.handler(RawConnection(self, stream, index))
        except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError):
            pass  # the client went away: the scripts do not care
        finally:
            await trio.aclose_forcefully(stream)


def response(
    body: bytes = b"",
    *,
    status: str = "200 OK",
    headers: Sequence[tuple[str, str]] = (),
    version: str = "HTTP/1.1",
    length: bool = True,
) -> bytes:
    """A complete answer's bytes, with a content-length unless ``length`` is False."""
    lines = [f"{version} {status}", *(f"{name}: {value}" for name, value in headers)]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answer_each(
    answer: Callable[[RawRequest], bytes | Sequence[bytes]],
    *,
    pause: float = 0.0,
    close_after: bool = False,
) -> Handler:
    """A handler answering every request on a connection with ``answer(request)``'s bytes.

    A sequence of fragments is sent piece by piece with ``pause`` between them. With
    ``close_after`` the connection is closed after the first answer.
    """

    async def handler(connection: RawConnection) -> None:
        while (request := await connection.read_request()) is not None:
            reply = answer(request)
            await connection.send_fragments([reply] if isinstance(reply, bytes) else reply, pause)
            if close_after:
                await connection.close()
                return

    return handler
