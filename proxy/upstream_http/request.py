"""The request as bytes: its origin, its head, and sending head and body on a connection.

A request whose body is known leaves in one write (one segment for a small call, which Nagle
never holds back); one streamed from an iterator goes chunked. The head is checked once for a CR
or LF smuggled into a header or the target, which would add a line to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Final

import httpx

from proxy.upstream_http.connection import Connection, Origin

__all__ = ["asks_close", "build_request", "request_origin", "send_request", "serialize"]

_DEFAULT_PORTS: Final = {b"http": 80, b"https": 443}


def build_request(
    method: str,
    url: httpx.URL,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None,
    extensions: dict[str, object],
) -> httpx.Request:
    """An ``httpx.Request`` for this transport, built without httpx's header normalisation
    passes (~10 µs a call): ``headers`` are sent as given, after Host and Content-Length."""
    framing = [(b"Host", url.netloc)]
    if body is not None:
        framing.append((b"Content-Length", b"%d" % len(body)))
    return httpx.Request(
        method,
        url,
        headers=framing + headers,
        stream=httpx.ByteStream(body or b""),
        extensions=extensions,
    )


def request_origin(url: httpx.URL) -> Origin:
    """The (scheme, host, port) a request goes to: the key of the connection pool."""
    scheme = url.raw_scheme
    if scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(f"Unsupported URL scheme {url.scheme!r}.")
    if not url.host:
        raise httpx.UnsupportedProtocol(f"No host in the URL {url}.")
    return scheme, url.host, url.port or _DEFAULT_PORTS[scheme]


def serialize(request: httpx.Request) -> tuple[bytes, bytes | AsyncIterable[bytes]]:
    """The request head, and its body: bytes when known, else the stream to send chunked."""
    raw = request.headers.raw
    stream: object = None
    try:
        body: bytes | AsyncIterable[bytes] = request.content
    except httpx.RequestNotRead:
        stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        body = request.read()  # a request made by build_request: its body is bytes
    elif stream is not None:
        assert isinstance(stream, AsyncIterable)
        body = stream
        if not any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in raw):
            raw = [*raw, (b"Transfer-Encoding", b"chunked")]
    parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in raw:
        if b":" in name:
            raise httpx.LocalProtocolError(f"Illegal header name {name!r} in an upstream request.")
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    # A CR or LF inside a name, a value or the target would add a line: one count checks them all.
    lines = len(raw) + 2
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise httpx.LocalProtocolError(
            "A header or the target of an upstream request holds a CR/LF."
        )
    return head, body


def asks_close(raw: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request's headers say ``connection: close``."""
    return any(n.lower() == b"connection" and b"close" in v.lower() for n, v in raw)


async def send_request(
    connection: Connection,
    head: bytes,
    body: bytes | AsyncIterable[bytes],
    timeout: float | None,
) -> None:
    """Write the head and the body (chunked when the head says so) on ``connection``."""
    if isinstance(body, bytes):
        # One write: a small request leaves in one segment, and Nagle never holds its body back.
        await connection.send(head + body if len(body) <= 256 * 1024 else head, timeout)
        if len(body) > 256 * 1024:
            await connection.send(body, timeout)
        return
    await connection.send(head, timeout)
    chunked = b"transfer-encoding: chunked\r\n" in head.lower()
    async for part in body:
        if part:
            await connection.send(b"%x\r\n%b\r\n" % (len(part), part) if chunked else part, timeout)
    if chunked:
        await connection.send(b"0\r\n\r\n", timeout)
