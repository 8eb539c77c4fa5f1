"""The answer's head: its status line and headers, read and parsed with ``bytes`` methods.

Informational answers (100 Continue, 103 Early Hints) are skipped; a switch of protocols is an
error. An HTTP/1.0 answer or one saying ``connection: close`` marks its connection as not to be
kept. A connection that ends before the first byte of an answer raises :class:`NothingReceived`,
which the exchange in :mod:`proxy.upstream_http.transport` tells apart from every other failure.
"""

from __future__ import annotations

from typing import Final

import httpx

from proxy.upstream_http.connection import Connection

__all__ = ["MAX_HEAD_BYTES", "HeaderList", "NothingReceived", "read_head"]

MAX_HEAD_BYTES: Final = 64 * 1024  # status line + headers; h11's default limit is 16 KiB

HeaderList = list[tuple[bytes, bytes]]


class NothingReceived(Exception):
    """The connection ended before the first byte of an answer."""


async def read_head(
    connection: Connection, timeout: float | None, method: str
) -> tuple[int, bytes, HeaderList, bool]:
    """Status, reason, headers and whether the connection may be kept, skipping 1xx answers."""
    buffer = connection.buffer
    received = False
    while True:
        searched = 0
        while (end := buffer.find(b"\r\n\r\n", searched)) < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError("The answer's headers are too large.")
            searched = max(len(buffer) - 3, 0)
            try:
                data = await connection.receive(timeout)
            except httpx.ReadError:
                if received:
                    raise
                raise NothingReceived from None
            if not data:
                if received:
                    raise httpx.RemoteProtocolError(
                        "Server disconnected in the middle of the answer's headers."
                    )
                raise NothingReceived
            received = True
            buffer += data
        if end > MAX_HEAD_BYTES:
            raise httpx.RemoteProtocolError("The answer's headers are too large.")
        block = bytes(buffer[:end])
        del buffer[: end + 4]
        status, reason, headers, keep_alive = _parse_head(block)
        if status == 101:
            raise httpx.RemoteProtocolError("The upstream switched protocols, which is not HTTP.")
        if status >= 200:
            return status, reason, headers, keep_alive
        # An informational answer (100 Continue, 103 Early Hints): the real one follows.


def _parse_head(block: bytes) -> tuple[int, bytes, HeaderList, bool]:
    lines = block.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"Not an HTTP/1.1 status line: {lines[0][:80]!r}.")
    headers: HeaderList = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            # Obsolete line folding: the line continues the previous header's value.
            if not headers:
                raise httpx.RemoteProtocolError("The answer's headers start with a continuation.")
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip())
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or b" " in name:
            raise httpx.RemoteProtocolError(f"Malformed header line in the answer: {line[:80]!r}.")
        headers.append((name, value.strip(b" \t")))
    keep_alive = version == b"HTTP/1.1" and not any(
        name.lower() == b"connection" and b"close" in value.lower() for name, value in headers
    )
    return int(code), reason, headers, keep_alive
