"""A hand-driven HTTP/1.1 client connection for tests of how the server treats its sockets.

Requests go out as raw bytes, in whatever pieces and at whatever moments a test needs (a head
now, its body later, a second request pipelined behind it); responses are parsed by h11, one at
a time, and a closed connection is reported as such rather than as an error.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from urllib.parse import urlsplit

import h11
import trio

RECEIVE_BYTES = 65536


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """One response: status, headers (names lower-case), body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        """Whether the server said it closes the connection after this response."""
        return "close" in self.headers.get("connection", "").lower()


def head(
    method: str, path: str, *, length: int | None = None, headers: dict[str, str] | None = None
) -> bytes:
    """A request head; ``length`` adds ``Content-Length`` (the body is sent separately)."""
    # A Host the gateway answers to on loopback (server.allowed_hosts refuses other names).
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if length is not None:
        lines.append(f"content-length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawConnection:
    """One TCP connection to the server under test."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._pending = b""

    @classmethod
    async def open(cls, base_url: str) -> RawConnection:
        """Connect to the host and port of ``base_url``."""
        parts = urlsplit(base_url)
        assert parts.hostname is not None
        assert parts.port is not None
        return cls(await trio.open_tcp_stream(parts.hostname, parts.port))

    async def send(self, data: bytes) -> None:
        """Write ``data`` as it is."""
        await self.stream.send_all(data)

    async def response(self, timeout: float = 10.0) -> Answer | None:
        """The next response, or None when the server closes the connection instead.

        Raises ``trio.TooSlowError`` when neither happens within ``timeout`` (a hang); the bytes
        received so far are kept, so the call can be repeated.
        """
        parser = h11.Connection(h11.CLIENT)
        # h11 frames a response by the request it answers; the bytes it would send are ours.
        parser.send(h11.Request(method="GET", target="/", headers=[("host", "test")]))
        parser.send(h11.EndOfMessage())
        received = self._pending
        if received:  # (an empty receive_data means EOF to h11)
            parser.receive_data(received)
        status, headers, body = 0, {}, b""
        try:
            with trio.fail_after(timeout):
                while True:
                    try:
                        event = parser.next_event()
                    except h11.RemoteProtocolError:
                        return None  # cut in the middle of a response
                    if event is h11.NEED_DATA:
                        data = await self._receive()
                        received += data
                        parser.receive_data(data)
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                        headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        received = parser.trailing_data[0]
                        return Answer(status, headers, body)
                    elif isinstance(event, h11.ConnectionClosed):
                        received = b""
                        return None
        finally:
            self._pending = received

    async def closed_by_server(self, timeout: float = 10.0) -> bool:
        """Whether the server closes the connection within ``timeout`` (unread data skipped)."""
        with trio.move_on_after(timeout):
            while await self._receive():
                pass
            return True
        return False

    async def _receive(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(RECEIVE_BYTES))
        except trio.BrokenResourceError:  # ECONNRESET: closed, abruptly
            return b""

    async def aclose(self) -> None:
        """Close our end."""
        await self.stream.aclose()

    def reset_on_close(self) -> None:
        """Make our close an RST, as a client that vanishes does."""
        self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
