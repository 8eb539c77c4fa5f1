"""The transport httpx calls: a keep-alive pool per origin and the one exchange of a request.

- keep-alive per origin (scheme, host, port), LIFO so warm connections stay warm; idle ones expire
  after ``keepalive_expiry`` and every one is checked for a close by the server before reuse;
- one retry on a fresh connection only when the request provably never left: a *reused*
  connection refused its very first byte. A request the kernel took is never sent again, since
  the server may have run it (an LLM call runs and bills twice): see ``_exchange``;
- TLS through :class:`trio.SSLStream` with httpx's default context (certifi), ALPN ``http/1.1``;
- httpx's ``connect`` (TCP + TLS) and ``pool`` timeouts here; ``write`` and ``read`` (per
  receive) on the connection.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterable

import httpx
import trio

from proxy.upstream_http.connection import Connection, Origin, describe_error
from proxy.upstream_http.request import asks_close, request_origin, send_request, serialize
from proxy.upstream_http.response_body import ResponseBody
from proxy.upstream_http.response_head import HeaderList, NothingReceived, read_head

__all__ = ["UpstreamTransport"]


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
        self._idle: dict[Origin, list[Connection]] = {}
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
        origin = request_origin(request.url)
        head, body = serialize(request)
        await self._acquire_slot(timeouts.get("pool"))
        try:
            connection, status, reason, headers, keep_alive = await self._exchange(
                origin, head, body, request, timeouts
            )
        except BaseException:
            self._slots.release()
            raise
        try:
            stream = ResponseBody(
                self._release,
                connection,
                status,
                headers,
                keep_alive=keep_alive and not asks_close(request.headers.raw),
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

    def _checkout(self, origin: Origin) -> Connection | None:
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

    def _release(self, connection: Connection, reusable: bool) -> None:
        """Give back the slot, and the connection to the pool when it can carry another request."""
        self._slots.release()
        if not reusable or self._closed or connection.closed or self._idle_count >= self._max_idle:
            connection.close()
            return
        connection.idle_since = trio.current_time()
        self._idle.setdefault(connection.origin, []).append(connection)
        self._idle_count += 1

    async def _connect(self, origin: Origin, timeout: float | None) -> Connection:
        scheme, host, port = origin
        try:
            with trio.fail_after(_seconds(timeout)):
                tcp = await trio.open_tcp_stream(host, port)
                if scheme != b"https":
                    return Connection(tcp, tcp.socket, origin)
                context = self._ssl_context or _default_ssl_context()
                tls = trio.SSLStream(tcp, context, server_hostname=host, https_compatible=True)
                try:
                    await tls.do_handshake()
                except BaseException:
                    tcp.socket.close()
                    raise
                return Connection(tls, tcp.socket, origin)
        except trio.TooSlowError:
            raise httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}.") from None
        except (OSError, trio.BrokenResourceError) as exc:
            raise httpx.ConnectError(f"{host}:{port}: {describe_error(exc)}") from None

    # -- one exchange --------------------------------------------------------------------------

    async def _exchange(
        self,
        origin: Origin,
        head: bytes,
        body: bytes | AsyncIterable[bytes],
        request: httpx.Request,
        timeouts: dict[str, float | None],
    ) -> tuple[Connection, int, bytes, HeaderList, bool]:
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
                await send_request(connection, head, body, timeouts.get("write"))
                status, reason, headers, keep_alive = await read_head(
                    connection, timeouts.get("read"), request.method
                )
                return connection, status, reason, headers, keep_alive
            except (NothingReceived, httpx.WriteError) as exc:
                connection.close()
                if connection.reused and not connection.wrote and not retried:
                    retried = True
                    continue
                if isinstance(exc, NothingReceived):
                    raise httpx.RemoteProtocolError(
                        "Server disconnected without sending a response, after the request was "
                        "sent (not retried: the upstream may have run it)."
                    ) from None
                raise
            except BaseException:
                connection.close()
                raise


def _seconds(timeout: float | None) -> float:
    return math.inf if timeout is None else timeout


_ssl_context: ssl.SSLContext | None = None


def _default_ssl_context() -> ssl.SSLContext:
    """httpx's verified context (certifi's roots), made once: loading the roots costs ~20 ms."""
    global _ssl_context
    if _ssl_context is None:
        context = httpx.create_ssl_context()
        context.set_alpn_protocols(["http/1.1"])
        _ssl_context = context
    return _ssl_context
