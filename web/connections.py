"""The open client connections: counted, capped, and shed under pressure without waiting.

Every accepted socket costs a file descriptor for as long as it is open, and a call in flight
costs a second one upstream. Past ``server.max_connections`` the gateway does what nginx does
when it runs out of connections: it closes the connection that has been idle longest (a new one
that never sent a request, or a keep-alive one between requests) to make room; only when every
connection is busy answering a request is the newcomer closed instead, right at accept. Either
way the accept loop never waits, so a flood of bare connects cannot starve health checks.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import socket
import struct
from typing import Final, final

import trio

log = logging.getLogger("llm_proxy.connections")

RESERVED_FILES: Final = 128
"""Descriptors kept for everything but client connections and their upstream sockets: the
database and its WAL per read connection, listeners, image fetches, logs, the event loop."""
MIN_CONNECTIONS: Final = 16
SHED_LOG_INTERVAL_S: Final = 10.0
_RESET_ON_CLOSE: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close sends an RST


def connection_limit(configured: int, open_files: int) -> int:
    """``server.max_connections``, or when it is 0 what the open-files limit carries: each
    connection may hold an upstream socket too, beside :data:`RESERVED_FILES`."""
    if configured > 0:
        return configured
    if open_files == resource.RLIM_INFINITY:
        open_files = 1 << 20
    return max(MIN_CONNECTIONS, (open_files - RESERVED_FILES) // 2)


def open_files_limit() -> int:
    """This process's soft limit on open files."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def connections_for(configured: int) -> Connections:
    """The registry for ``server.max_connections`` under this process's open-files limit."""
    open_files = open_files_limit()
    limit = connection_limit(configured, open_files)
    carried = connection_limit(0, open_files)
    if limit > carried:
        log.warning(
            "server.max_connections = %d is more than the open files limit (%d) carries (%d): "
            "past that, accepting connections and upstream calls fail with EMFILE",
            limit,
            open_files,
            carried,
        )
    log.info(
        "at most %d open client connections (server.max_connections%s; open files limit %d)",
        limit,
        "" if configured else " = 0: derived",
        open_files,
    )
    return Connections(limit)


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """The connections now and since start."""

    open: int
    idle: int
    limit: int
    accepted: int
    refused: int  # closed at accept: every open connection was busy
    idle_closed: int  # idle connections closed to make room for a new one


@final
class Connection:
    """One admitted client connection: idle or busy, and a way to close it from outside."""

    __slots__ = ("_registry", "_socket", "cancel_scope", "requests")

    def __init__(self, registry: Connections, sock: trio.socket.SocketType) -> None:
        self._registry = registry
        self._socket = sock
        self.cancel_scope = trio.CancelScope()
        self.requests = 0

    def busy(self) -> None:
        """A request head has arrived: the connection is answering it."""
        self.requests += 1
        self._registry._idle.pop(self, None)

    def idle(self) -> None:
        """The answer is done: the connection waits for the next request."""
        self._registry._idle.pop(self, None)
        self._registry._idle[self] = None  # the most recently idle, last

    def release(self) -> None:
        """The connection's task is over (idempotent)."""
        self._registry._forget(self)

    def shed(self) -> None:
        """Close the socket now (the descriptor is free on return) and end the task."""
        self._registry._forget(self)
        self.cancel_scope.cancel()
        self._socket.close()


@final
class Connections:
    """The registry of open client connections, capped at ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: set[Connection] = set()
        self._idle: dict[Connection, None] = {}  # insertion order: longest idle first
        self._accepted = 0
        self._refused = 0
        self._idle_closed = 0
        self._unlogged_refused = 0
        self._unlogged_idle_closed = 0
        self._next_log_at = -float("inf")

    def admit(self, sock: trio.socket.SocketType) -> Connection | None:
        """Register a just-accepted socket, making room if needed; None (the socket closed
        with an RST) when every open connection is busy. Never blocks."""
        if len(self._open) >= self.limit:
            if not self._idle:
                self._refused += 1
                self._unlogged_refused += 1
                self._log_shedding()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
                sock.close()
                return None
            self._idle_closed += 1
            self._unlogged_idle_closed += 1
            self._log_shedding()
            next(iter(self._idle)).shed()
        self._accepted += 1
        connection = Connection(self, sock)
        self._open.add(connection)
        self._idle[connection] = None
        return connection

    def statistics(self) -> ConnectionStatistics:
        """Counts for ``/metrics``."""
        return ConnectionStatistics(
            open=len(self._open),
            idle=len(self._idle),
            limit=self.limit,
            accepted=self._accepted,
            refused=self._refused,
            idle_closed=self._idle_closed,
        )

    def _forget(self, connection: Connection) -> None:
        self._open.discard(connection)
        self._idle.pop(connection, None)

    def _log_shedding(self) -> None:
        # A flood sheds thousands a second: one line per interval, with the counts since the last.
        now = trio.current_time()
        if now < self._next_log_at:
            return
        log.warning(
            "at the connection limit (server.max_connections = %d): closed %d idle connections "
            "to make room and refused %d new ones (every connection busy) since the last report",
            self.limit,
            self._unlogged_idle_closed,
            self._unlogged_refused,
        )
        self._unlogged_idle_closed = self._unlogged_refused = 0
        self._next_log_at = now + SHED_LOG_INTERVAL_S
