"""A pool of read-only connections that run queries on worker threads, on either backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, final

import outcome
import trio

from storage.database import Database, database_at
from storage.sql import Connection
from storage.transaction import rollback_quietly

__all__ = ["ReadPool"]

T = TypeVar("T")


@final
class ReadPool:
    """Up to ``size`` concurrent reads, each on a read-only connection reused between calls.

    ``database`` is a :class:`Database`, or a SQLite path or PostgreSQL URL (:func:`database_at`).
    """

    def __init__(
        self, database: str | Database, *, size: int = 4, busy_timeout_ms: int = 5000
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._database = database_at(database, busy_timeout_ms=busy_timeout_ms)
        self._limiter = trio.CapacityLimiter(size)
        self._idle: list[Connection] = []
        self._closed = False

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` on a pooled read-only connection in a worker thread; return its result.

        ``fn`` must finish its cursors (``fetchall()``) and must not return one: an unfinished
        statement holds a read transaction that keeps the writer from checkpointing the WAL.
        """
        if self._closed:
            raise trio.ClosedResourceError("the read pool is closed")
        async with self._limiter:
            idle = self._idle.pop() if self._idle else None
            # Not abandoned on cancel: the connection must come back to the pool in a known state.
            conn, result = await trio.to_thread.run_sync(self._call, idle, fn)
            self._release(conn)
        return result.unwrap()

    def _release(self, conn: Connection) -> None:
        """Return a connection to the pool, or close it if the pool closed meanwhile."""
        if self._closed:
            conn.close()
        else:
            self._idle.append(conn)

    def close(self) -> None:
        """Close the idle connections; a read still running closes its connection when done."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            # Cheap enough for the trio thread: a read-only connection never checkpoints on close.
            conn.close()

    def _call(
        self, conn: Connection | None, fn: Callable[[Connection], T]
    ) -> tuple[Connection, outcome.Outcome[T]]:
        """Worker thread: open the connection if needed, run ``fn``, leave no transaction open."""
        if conn is None:
            conn = self._database.open_reader()
        result = outcome.capture(fn, conn)
        if isinstance(result, outcome.Value) and hasattr(result.value, "fetchall"):
            result = outcome.Error(TypeError("a read must return data, not a live cursor"))
        # An explicit BEGIN left open by fn would pin an old snapshot and starve checkpoints.
        rollback_quietly(conn)
        return conn, result
