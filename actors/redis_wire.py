"""RedisWire: one lean Redis connection (RESP2 on a trio stream) for the hot path of a call.

coredis spends ~250 µs of CPU per round trip on its own machinery (a writer task, request
objects, an anyio stream between them); a command written and its reply parsed here, in the
caller's task, cost ~50 µs. The fleet limiter makes one round trip per batch of admissions, in
front of every call, so it speaks to Redis through this; everything else uses the link's coredis
client. Its round trips go through :meth:`actors.redis_link.RedisLink.call` like any other (the
deadline, up and down), so it raises what that expects: :class:`ConnectionError` (an OSError)
when the connection is lost, :class:`coredis.exceptions.ResponseError` for Redis' error replies.

Only its owner's one task uses it, one round trip at a time.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import coredis.exceptions
import trio

__all__ = ["RedisWire", "Reply"]

# An error reply inside an array (a script's error table) stays a value; at the top it raises.
Reply = str | int | None | coredis.exceptions.ResponseError | list["Reply"]
Argument = str | int

_DEFAULT_PORT = 6379
_READ_SIZE = 65536


class RedisWire:
    """A connection made at the first command and again after any failure."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self._unix = parts.scheme == "unix"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or _DEFAULT_PORT
        self._path = parts.path
        self._tls = parts.scheme == "rediss"
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        db = query.get("db", [""])[0] or ("" if self._unix else parts.path.strip("/"))
        self._db = int(db or 0)
        self._stream: trio.abc.Stream | None = None
        self._socket: trio.SocketStream | None = None
        self._buffer = bytearray()

    async def execute(self, *commands: Sequence[Argument]) -> list[Reply]:
        """Send ``commands`` in one write, return their replies (an error reply raises)."""
        try:
            if self._stream is None:
                await self._connect()
            replies = await self._round_trip(commands)
        except BaseException:
            # Cancelled or failed mid-way: what the stream holds next is unknown.
            self.drop()
            raise
        for reply in replies:
            if isinstance(reply, coredis.exceptions.ResponseError):
                raise reply
        return replies

    def drop(self) -> None:
        """Close the connection at once (no await: callable from a ``finally``); the next
        command connects again."""
        if self._socket is not None:
            self._socket.socket.close()
        self._stream = self._socket = None
        self._buffer.clear()

    async def _connect(self) -> None:
        if self._unix:
            self._socket = await trio.open_unix_socket(self._path)
        else:
            self._socket = await trio.open_tcp_stream(self._host, self._port)
        self._stream = self._socket
        if self._tls:
            tls = trio.SSLStream(
                self._socket, ssl.create_default_context(), server_hostname=self._host
            )
            await tls.do_handshake()
            self._stream = tls
        setup: list[Sequence[Argument]] = []
        if self._password is not None:
            user = [self._username] if self._username else []
            setup.append(["AUTH", *user, self._password])
        if self._db:
            setup.append(["SELECT", self._db])
        for reply in await self._round_trip(setup) if setup else []:
            if isinstance(reply, coredis.exceptions.ResponseError):
                raise reply

    async def _round_trip(self, commands: Sequence[Sequence[Argument]]) -> list[Reply]:
        stream = self._stream
        assert stream is not None
        try:
            await stream.send_all(b"".join(map(_encode, commands)))
            replies: list[Reply] = []
            while len(replies) < len(commands):
                parsed = _parse(self._buffer, 0)
                if parsed is None:
                    data = await stream.receive_some(_READ_SIZE)
                    if not data:
                        raise ConnectionResetError("redis closed the connection")
                    self._buffer += data
                    continue
                reply, end = parsed
                del self._buffer[:end]
                replies.append(reply)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionResetError(f"redis connection lost: {exc}") from exc
        return replies


def _encode(command: Sequence[Argument]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for argument in command:
        data = argument.encode() if isinstance(argument, str) else str(argument).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _parse(buffer: bytearray, start: int) -> tuple[Reply, int] | None:
    """One reply from ``buffer[start:]`` and where it ends; None while incomplete. An error reply
    is returned as a :class:`coredis.exceptions.ResponseError` value (raised by the caller)."""
    line_end = buffer.find(b"\r\n", start)
    if line_end < 0:
        return None
    kind, line = buffer[start : start + 1], bytes(buffer[start + 1 : line_end])
    after = line_end + 2
    if kind == b"+":
        return line.decode(), after
    if kind == b":":
        return int(line), after
    if kind == b"-":
        message = line.decode()
        error: coredis.exceptions.ResponseError = (
            coredis.exceptions.NoScriptError(message)
            if message.startswith("NOSCRIPT")
            else coredis.exceptions.ResponseError(message)
        )
        return error, after
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            return None
        return bytes(buffer[after : after + length]).decode(), after + length + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items: list[Reply] = []
        for _ in range(count):
            parsed = _parse(buffer, after)
            if parsed is None:
                return None
            item, after = parsed
            items.append(item)
        return items, after
    raise ConnectionResetError(f"redis sent an unreadable reply ({bytes(kind)!r})")
