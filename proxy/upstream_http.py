"""The connection layer of every upstream call: a lean HTTP/1.1 transport for httpx on trio.

httpx stays the interface (its ``Request``, ``Response``, timeouts and exceptions); this replaces
httpcore beneath it. Measured on the 2-core bench machine, httpcore's pool and h11 cost ~280 µs of
CPU per request and grow with concurrency: every request rescans the whole pool under a lock. Here a
request takes an idle connection from a stack, writes its head and body in one ``send_all`` and
parses the answer with ``bytes`` methods, for about 40 µs (see ``tests/bench/RESULTS.md``).

What it does, since upstreams are real servers on the internet:

- keep-alive per origin (scheme, host, port), LIFO so warm connections stay warm; idle ones expire
  after ``keepalive_expiry`` and every one is checked for a close by the server before reuse;
- one retry on a fresh connection only when the request provably never left: a *reused*
  connection refused its very first byte. A request the kernel took is never sent again, since
  the server may have run it (an LLM call runs and bills twice): see ``_exchange``;
- bodies framed by ``content-length``, ``chunked`` or the end of the connection; 1xx answers
  skipped; HEAD, 204 and 304 without a body; a connection is reused only after its answer was read
  to the end, and never after ``connection: close`` or an HTTP/1.0 answer;
- TLS through :class:`trio.SSLStream` with httpx's default context (certifi), ALPN ``http/1.1``;
- httpx's four timeouts: ``connect`` (TCP + TLS), ``write``, ``read`` (per receive), ``pool``;
- every failure raised as the httpx exception that names it, so callers see one error family;
- a response not read to the end, or a call cancelled half-way, closes its connection: the next
  request never reads the tail of an old answer.
"""

from __future__ import annotations

import math
import os
import select
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from typing import Final

import httpx
import trio

MAX_HEAD_BYTES: Final = 64 * 1024  # status line + headers; h11's default limit is 16 KiB
MAX_CHUNK_LINE_BYTES: Final = 4096  # a chunk-size line, extensions included
RECEIVE_SIZE: Final = 64 * 1024
_CHUNKED: Final = -1
_UNTIL_CLOSE: Final = -2
_DEFAULT_PORTS: Final = {b"http": 80, b"https": 443}
_NO_BODY_STATUSES: Final = frozenset({204, 304})

Origin = tuple[bytes, str, int]
HeaderList = list[tuple[bytes, bytes]]


class _NothingReceived(Exception):
    """The connection ended before the first byte of an answer."""


class _Connection:
    """One keep-alive connection and the bytes read from it but not yet consumed."""

    __slots__ = (
        "buffer",
        "closed",
        "fileno",
        "idle_since",
        "origin",
        "plain",
        "reused",
        "socket",
        "stream",
        "wrote",
    )

    def __init__(self, stream: trio.abc.Stream, sock: trio.socket.SocketType, origin: Origin):
        self.stream = stream
        # Plain TCP is read and written on its descriptor directly (TLS goes through its stream).
        self.plain: trio.abc.Stream | None = (
            stream if isinstance(stream, trio.SocketStream) else None
        )
        self.socket = sock
        self.fileno = sock.fileno()
        self.origin = origin
        self.buffer = bytearray()
        self.idle_since = 0.0
        self.reused = False
        self.closed = False
        # Whether a byte of the current request may have left: after a failure, False proves
        # that the server cannot have seen any of it.
        self.wrote = False

    def close(self) -> None:
        """Close at once, without a TLS goodbye: synchronous, so it is safe in any ``finally``."""
        if not self.closed:
            self.closed = True
            self.socket.close()

    def dead_while_idle(self) -> bool:
        """Whether the server spoke on an idle connection: an EOF (it closed it) or stray bytes."""
        if self.buffer:
            return True
        # poll, not select: select cannot watch descriptors numbered 1024 and above.
        poller = select.poll()
        try:
            poller.register(self.socket.fileno(), select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    async def send(self, data: bytes, timeout: float | None) -> None:
        """Write all of ``data``, keeping :attr:`wrote` true to what may have left."""
        try:
            if self.plain is not None:
                # An OSError here (the peer reset the connection) means the kernel took nothing.
                written = self._write_now(data)
                if written:
                    self.wrote = True
                    data = data[written:]
                    if not data:
                        return
            # From here a failure cannot tell how much the kernel took (trio's send_all, and
            # TLS, which writes ciphertext of its own): count it all as gone.
            self.wrote = True
            if timeout is None:
                await self.stream.send_all(data)
            else:
                with trio.fail_after(timeout):
                    await self.stream.send_all(data)
        except trio.TooSlowError:
            raise httpx.WriteTimeout("Timed out sending the request.") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.WriteError(_describe(exc)) from None

    def _write_now(self, data: bytes) -> int:
        """As much of ``data`` as the socket takes at once (all of it, nearly always)."""
        try:
            return os.write(self.fileno, data)
        except BlockingIOError:
            return 0

    async def receive(self, timeout: float | None) -> bytes:
        """The next bytes from the server; ``b""`` at its end of the connection."""
        # Without a timeout there is no cancel scope: callers that bound whole calls by their own
        # deadlines (the provider actors do) save one per read.
        try:
            if timeout is None:
                data = await self._receive()
            else:
                with trio.fail_after(timeout):
                    data = await self._receive()
        except trio.TooSlowError:
            raise httpx.ReadTimeout("Timed out waiting for the upstream.") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.ReadError(_describe(exc)) from None
        return data if isinstance(data, bytes) else bytes(data)

    async def _receive(self) -> bytes | bytearray:
        if self.plain is None:
            return await self.stream.receive_some(RECEIVE_SIZE)
        # A plain connection is read when it is readable, not tried first: the next bytes of an
        # answer are nearly never there yet when they are asked for (a stream's next event, the
        # head just after the request), and a failed read is a system call and a trio round.
        while True:
            await trio.lowlevel.wait_readable(self.socket)
            try:
                return os.read(self.fileno, RECEIVE_SIZE)
            except BlockingIOError:
                continue


class UpstreamTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport with a keep-alive pool per origin; one instance per provider."""

    def __init__(
        self,
        *,
        max_connections: int,
        max_keepalive_connections: int,
        keepalive_expiry: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._slots = trio.Semaphore(max_connections)
        self._max_idle = max_keepalive_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._closed = False

    @property
    def idle_connections(self) -> int:
        """Connections kept open for the next request."""
        return self._idle_count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("The transport is closed.")
        timeouts = request.extensions.get("timeout", {})
        origin = _origin(request.url)
        head, body = _serialize(request)
        await self._acquire_slot(timeouts.get("pool"))
        try:
            connection, status, reason, headers, keep_alive = await self._exchange(
                origin, head, body, request, timeouts
            )
        except BaseException:
            self._slots.release()
            raise
        try:
            stream = _ResponseBody(
                self,
                connection,
                status,
                headers,
                keep_alive=keep_alive and not _asks_close(request.headers.raw),
                head_only=request.method == "HEAD",
                read_timeout=timeouts.get("read"),
            )
        except BaseException:
            connection.close()
            self._slots.release()
            raise
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._idle_count = 0
        await trio.lowlevel.checkpoint()

    # -- the pool ------------------------------------------------------------------------------

    async def _acquire_slot(self, timeout: float | None) -> None:
        try:
            self._slots.acquire_nowait()
            return
        except trio.WouldBlock:
            pass
        try:
            with trio.fail_after(_seconds(timeout)):
                await self._slots.acquire()
        except trio.TooSlowError:
            raise httpx.PoolTimeout("Timed out waiting for a free upstream connection.") from None

    def _checkout(self, origin: Origin) -> _Connection | None:
        stack = self._idle.get(origin)
        now = trio.current_time()
        while stack:
            connection = stack.pop()
            self._idle_count -= 1
            # Every reuse is checked (one poll, about a microsecond): a connection the server
            # closed a moment ago would take the whole request and then fail, and a request
            # that left is never sent again.
            if now - connection.idle_since < self._keepalive_expiry and (
                not connection.dead_while_idle()
            ):
                connection.reused = True
                return connection
            connection.close()
        return None

    def _release(self, connection: _Connection | None, reusable: bool) -> None:
        """Give back the slot, and the connection to the pool when it can carry another request."""
        self._slots.release()
        if connection is None:
            return
        if not reusable or self._closed or connection.closed or self._idle_count >= self._max_idle:
            connection.close()
            return
        connection.idle_since = trio.current_time()
        self._idle.setdefault(connection.origin, []).append(connection)
        self._idle_count += 1

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        try:
            with trio.fail_after(_seconds(timeout)):
                tcp = await trio.open_tcp_stream(host, port)
                if scheme != b"https":
                    return _Connection(tcp, tcp.socket, origin)
                context = self._ssl_context or _default_ssl_context()
                tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
                try:
                    await tls.do_handshake()
                except BaseException:
                    tcp.socket.close()
                    raise
                return _Connection(tls, tcp.socket, origin)
        except trio.TooSlowError:
            raise httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}.") from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx.ConnectError(f"{host}:{port}: {_describe(exc)}") from None

    # -- one exchange --------------------------------------------------------------------------

    async def _exchange(
        self,
        origin: Origin,
        head: bytes,
        body: bytes | AsyncIterable[bytes],
        request: httpx.Request,
        timeouts: dict[str, float | None],
    ) -> tuple[_Connection, int, bytes, HeaderList, bool]:
        """Send the request and read the answer's head, on a pooled or a new connection.

        When to send a request again is the one decision here that can cost money: an upstream
        that received a chat call runs and bills it whether or not its answer comes back. So a
        request is retried only when it provably never left:

        - an idle connection the server closed is seen before anything is written (the check in
          :meth:`_checkout`) and simply not used: that is no retry at all;
        - a reused connection whose very first write the kernel refused (the server reset it
          between the check and the write) took no byte of the request: one retry, on a fresh
          connection, is safe; even a streamed body, whose iterator was not started yet.

        Everything else is not retried. A complete write followed by a close without an answer
        is the server (or a proxy before it) dropping a request it had: it may be running.
        A failed write after some bytes were taken is no proof either: the kernel may have sent
        them, and whether they stopped inside the head (harmless) or the body (possibly acted
        on) cannot be known once trio or TLS did the writing, so the strict rule treats any
        byte taken as a request sent.
        """
        retried = False
        while True:
            # The one retry goes to a fresh connection: other idle ones may be just as dead.
            connection = None if retried else self._checkout(origin)
            if connection is None:
                connection = await self._connect(origin, timeouts.get("connect"))
            try:
                connection.wrote = False
                await _send_request(connection, head, body, timeouts.get("write"))
                status, reason, headers, keep_alive = await _read_head(
                    connection, timeouts.get("read"), request.method
                )
                return connection, status, reason, headers, keep_alive
            except (_NothingReceived, httpx.WriteError) as exc:
                connection.close()
                if connection.reused and not connection.wrote and not retried:
                    retried = True
                    continue
                if isinstance(exc, _NothingReceived):
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response, after the request was "
                        "sent (not retried: the upstream may have run it)."
                    ) from None
                raise
            except BaseException:
                connection.close()
                raise


class _ResponseBody(httpx.AsyncByteStream):
    """The answer's body, read from the connection as it is asked for."""

    def __init__(
        self,
        transport: UpstreamTransport,
        connection: _Connection,
        status: int,
        headers: HeaderList,
        *,
        keep_alive: bool,
        head_only: bool,
        read_timeout: float | None,
    ) -> None:
        self._transport = transport
        self._connection: _Connection | None = connection
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

    async def _next_chunk_piece(self, connection: _Connection, buffer: bytearray) -> bytes:
        state = self._chunk_state
        if state == _CHUNK_DATA:
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

    async def _line(self, connection: _Connection, buffer: bytearray) -> bytes:
        while True:
            end = buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(buffer[:end])
                del buffer[: end + 2]
                return line
            if len(buffer) > MAX_CHUNK_LINE_BYTES:
                raise httpx.RemoteProtocolError("A chunk line of the answer is too long.")
            buffer += await self._receive_more(connection)

    async def _receive_more(self, connection: _Connection) -> bytes:
        data = await connection.receive(self._timeout)
        if not data:
            raise httpx.RemoteProtocolError(
                "Server disconnected before the end of the answer (incomplete body)."
            )
        return data

    def _finish(self) -> None:
        """The body was read to its end: the connection may carry the next request."""
        self._done = True
        connection, self._connection = self._connection, None
        if connection is not None:
            self._transport._release(connection, self._keep_alive and not connection.buffer)

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._done = True
            self._transport._release(connection, False)


_CHUNK_SIZE, _CHUNK_DATA, _CHUNK_DATA_END, _CHUNK_TRAILERS = range(4)


def _take(buffer: bytearray, size: int) -> bytes:
    data = bytes(buffer[:size])
    del buffer[:size]
    return data


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
        raise httpx.RemoteProtocolError(f"Bad chunk size line in the answer: {line[:40]!r}.")
    return int(digits, 16)


# -- the request ----------------------------------------------------------------------------------


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


def _origin(url: httpx.URL) -> Origin:
    scheme = url.raw_scheme
    if scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(f"Unsupported URL scheme {url.scheme!r}.")
    if not url.host:
        raise httpx.UnsupportedProtocol(f"No host in the URL {url}.")
    return scheme, url.host, url.port or _DEFAULT_PORTS[scheme]


def _serialize(request: httpx.Request) -> tuple[bytes, bytes | AsyncIterable[bytes]]:
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


def _asks_close(raw: list[tuple[bytes, bytes]]) -> bool:
    return any(n.lower() == b"connection" and b"close" in v.lower() for n, v in raw)


async def _send_request(
    connection: _Connection,
    head: bytes,
    body: bytes | AsyncIterable[bytes],
    timeout: float | None,
) -> None:
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


# -- the answer's head ----------------------------------------------------------------------------


async def _read_head(
    connection: _Connection, timeout: float | None, method: str
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
                raise _NothingReceived from None
            if not data:
                if received:
                    raise httpx.RemoteProtocolError(
                        "Server disconnected in the middle of the answer's headers."
                    )
                raise _NothingReceived
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


def _seconds(timeout: float | None) -> float:
    return math.inf if timeout is None else timeout


def close_response(response: httpx.Response) -> None:
    """Release a response of this transport at once (its connection goes back or is closed)."""
    stream = response.stream
    if isinstance(stream, _ResponseBody):
        stream.close()
    response.is_closed = True


def raw_stream(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, without httpx's wrapping async generator (whose
    cleanup needs an await) — for responses of this transport."""
    stream = response.stream
    assert isinstance(stream, _ResponseBody), "not a response of UpstreamTransport"
    return stream


def _describe(exc: BaseException) -> str:
    """The telling part of a trio error, which often wraps the OSError or TLS error behind it."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, trio.BrokenResourceError) and cause is not None:
        exc = cause
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


_ssl_context: ssl.SSLContext | None = None


def _default_ssl_context() -> ssl.SSLContext:
    """httpx's verified context (certifi's roots), made once: loading the roots costs ~20 ms."""
    global _ssl_context
    if _ssl_context is None:
        context = httpx.create_ssl_context()
        context.set_alpn_protocols(["http/1.1"])
        _ssl_context = context
    return _ssl_context
