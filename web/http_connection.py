"""One client connection, served by hypercorn's trio ``TCPServer`` with three of its faults fixed.

hypercorn 0.18's trio worker (``hypercorn/trio/tcp_server.py``):

- runs one idle timer, ``keep_alive_timeout``, both before the first request and between
  requests; here a connection that has not sent a complete request head within
  ``server.header_timeout_s`` is closed, and an idle keep-alive one after
  ``server.keep_alive_timeout_s``. A request being answered (a stream of minutes included) has
  no timer at all, as before. The timer is one task per connection whose deadline moves
  (:mod:`web.idle_timer`), where hypercorn starts and cancels a task for every request;
- lets that timer outlive the connection: when the peer closes, ``_read_data`` returns but the
  connection's task group waits for the idle timer, so the socket sits in CLOSE-WAIT for the
  whole keep-alive timeout. Here the timer stops as soon as reading ends;
- sends every streamed body chunk through four layers, a lock and two trips through the
  scheduler; here a chunk in the middle of a chunked body is framed and written directly
  (:mod:`web.chunk_writer`);
- changes the connection's state from inside the application's ``send`` call, unshielded, right
  after queueing ``http.disconnect`` for the app at the end of each answer. An app that cancels
  its own send on that message, as quart-trio does, interrupts the change: after a normal answer
  the keep-alive timer is never restarted (the idle connection then stays open for good), and
  after an answer that left the request body unread the close stops before the socket is shut
  while the reader stops parsing at the stray body, so the connection neither serves the next
  request nor closes. Here both run shielded.

``tests/upstream/`` reproduces the last two against plain hypercorn, so an upgrade that fixes
them is noticed; ``tests/test_chunk_writer.py`` notices when the direct path stops applying.
"""

from __future__ import annotations

import os
from typing import Any

import trio
from hypercorn.events import Closed, RawData, Updated
from hypercorn.trio.tcp_server import TCPServer

from web.chunk_writer import lean_send
from web.connections import Connection
from web.idle_timer import IdleTimer

# Starting a timer task and closing a socket never block; a bound all the same.
STATE_CHANGE_DEADLINE_S = 1.0


class HTTPConnection(TCPServer):
    """hypercorn's connection handler with a header timeout, prompt EOF, a safe close and a
    direct path for streamed body chunks."""

    def __init__(
        self, *args: Any, connection: Connection, header_timeout_s: float, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._connection = connection
        self._header_timeout_s = header_timeout_s
        self._app = self.app
        self.app = self._run_app
        self._held: list[bytes] | None = None  # while corked, what hypercorn wrote
        # Before the first request the header timeout applies, between requests keep-alive's.
        self._idle_timer = IdleTimer(
            header_timeout_s, self.context.terminated.wait, self._initiate_server_close
        )
        self.idle_task = self._idle_timer  # type: ignore[assignment]  # hypercorn's hook

    async def _run_app(
        self, scope: Any, receive: Any, send: Any, sync_spawn: Any, call_soon: Any
    ) -> None:
        """The application, handed a ``send`` that writes middle body chunks directly."""
        if scope["type"] == "http":
            send = lean_send(self, send)
        await self._app(scope, receive, send, sync_spawn, call_soon)

    # -- what web.chunk_writer needs of the connection ---------------------------------------

    def h11_connection(self) -> object:
        """The h11 state machine of an HTTP/1 connection (None before the first request)."""
        protocol = getattr(self, "protocol", None)
        return getattr(getattr(protocol, "protocol", None), "connection", None)

    async def send_raw(self, data: bytes) -> None:
        """Write through hypercorn's path: locked, shielded, waiting for the client (held
        while corked)."""
        await self.protocol_send(RawData(data=data))

    def cork(self) -> None:
        """Hold what is written from now on, for one write at :meth:`uncork`."""
        if self._held is None:
            self._held = []

    async def uncork(self) -> None:
        """Write what was held: at once when the socket takes it all, else through hypercorn's
        path, which waits for the client."""
        held, self._held = self._held, None
        if not held:
            return
        await self.write(held[0] if len(held) == 1 else b"".join(held))

    async def write(self, data: bytes) -> None:
        """Write ``data`` at once, without a checkpoint, when the socket takes it all; the rest
        (or all of it, while corked or while hypercorn is writing) through hypercorn's path,
        which waits for the client: a slow reader holds the writer back, nothing piles up."""
        if self._held is None and not self.send_lock.locked():
            # Checked and written with no await between: no other task can write meanwhile,
            # and a closed socket reads -1 (its number may already belong to another socket).
            fileno = int(self.stream.socket.fileno())
            if fileno >= 0:
                try:
                    sent = os.write(fileno, data)
                except OSError:
                    # Full (BlockingIOError), or gone: hypercorn's path waits for room or
                    # reports the connection closed, as it always did.
                    sent = 0
                if sent == len(data):
                    return
                data = data[sent:]
        await self.send_raw(data)

    async def protocol_send(self, event: Any) -> None:
        """Track idle and busy for the registry; restart the idle timer and close the socket
        whatever the task that asks (often the app's, being cancelled) is going through."""
        if isinstance(event, RawData) and self._held is not None:
            if event.data:
                self._held.append(event.data)
            return
        if self._held is not None:
            # The answer held for one write is complete: it leaves before the connection is
            # called idle (which may get it closed to make room) or closed.
            with trio.move_on_after(STATE_CHANGE_DEADLINE_S, shield=True):
                await self.uncork()
        if isinstance(event, Updated):
            # Plain assignments (web.idle_timer): nothing here can be interrupted.
            timer = self._idle_timer
            if event.idle:
                self._connection.idle()
                timer.idle(self.config.keep_alive_timeout)
            else:
                self._connection.busy()
                timer.busy()
        elif isinstance(event, Closed):
            with trio.move_on_after(STATE_CHANGE_DEADLINE_S, shield=True):
                await self._close()
            await self.protocol.handle(Closed())
        else:
            await super().protocol_send(event)

    async def _read_data(self) -> None:
        await super()._read_data()
        # Nothing more will come: the idle timer must not keep this connection (and its socket).
        await self.idle_task.stop()
