"""One keep-alive upstream connection: its socket, its unread bytes, its reads and writes.

Reads and writes honour httpx's ``write`` and ``read`` timeouts (``read`` per receive) and fail
as the httpx exception that names the failure. A write keeps :attr:`Connection.wrote` true to what
may have left, which is all the retry rule of :mod:`proxy.upstream_http.transport` goes by. Plain
TCP is read and written on its descriptor directly; TLS goes through :class:`trio.SSLStream`.
"""

from __future__ import annotations

import os
import select
from typing import Final

import httpx
import trio

__all__ = ["RECEIVE_SIZE", "Connection", "Origin", "describe_error"]

RECEIVE_SIZE: Final = 64 * 1024

Origin = tuple[bytes, str, int]


class Connection:
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
            raise httpx.WriteError(describe_error(exc)) from None

    def _write_now(self, data: bytes) -> int:
        """As much of ``data`` as the socket takes at once (all of it, nearly always)."""
        try:
            return os.write(self.fileno, data)
        except BlockingIOError:
            return 0

    async def receive(self, timeout: float | None) -> bytes:
        """The next bytes from the server; ``b""`` at its end of the connection."""
        # A plain connection is read when it is readable, not tried first: the next bytes of an
        # answer are nearly never there yet when they are asked for (a stream's next event, the
        # head just after the request), and a failed read is a system call and a trio round.
        # Without a timeout there is no cancel scope: callers that bound whole calls by their own
        # deadlines (the provider actors do) save one per read; every event of a stream is read
        # that way, so it is read in this one frame.
        fileno = self.fileno
        try:
            if timeout is not None:
                with trio.fail_after(timeout):
                    return await self._receive()
            if self.plain is None:
                return await self._receive()
            while True:
                # By number, which trio registers it under anyway (closing still wakes it).
                await trio.lowlevel.wait_readable(fileno)
                try:
                    return os.read(fileno, RECEIVE_SIZE)
                except BlockingIOError:
                    continue
        except trio.TooSlowError:
            raise httpx.ReadTimeout("Timed out waiting for the upstream.") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.ReadError(describe_error(exc)) from None

    async def _receive(self) -> bytes:
        if self.plain is None:
            return bytes(await self.stream.receive_some(RECEIVE_SIZE))
        while True:
            await trio.lowlevel.wait_readable(self.fileno)
            try:
                return os.read(self.fileno, RECEIVE_SIZE)
            except BlockingIOError:
                continue


def describe_error(exc: BaseException) -> str:
    """The telling part of a trio error, which often wraps the OSError or TLS error behind it."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, trio.BrokenResourceError) and cause is not None:
        exc = cause
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
