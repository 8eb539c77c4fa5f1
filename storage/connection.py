"""Open APSW connections configured the one way this project uses SQLite."""

from __future__ import annotations

import logging
import threading

import apsw
import apsw.bestpractice

__all__ = ["JOURNAL_SIZE_LIMIT_BYTES", "open_connection"]

JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024

_best_practice_lock = threading.Lock()
_best_practice_applied = False


class _SchemaChangeNotice(logging.Filter):
    """Drops SQLite's notice that a statement was re-prepared after a schema change.

    Another connection (the CLI's ``PRAGMA optimize`` on close, say) changing the schema makes
    every cached statement here log SQLITE_SCHEMA once, with its whole SQL, before SQLite retries
    it by itself: nothing failed, so nothing is worth a log line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "(17) SQLITE_SCHEMA" not in record.getMessage()


def _apply_best_practice() -> None:
    """Install APSW's recommended connection hooks once per process."""
    global _best_practice_applied
    # apply() appends a hook on every call: without the guard each call would run them again.
    with _best_practice_lock:
        if not _best_practice_applied:
            apsw.bestpractice.apply(apsw.bestpractice.recommended)
            # APSW forwards SQLite's own log to the root logger.
            logging.getLogger().addFilter(_SchemaChangeNotice())
            _best_practice_applied = True


def open_connection(
    path: str, *, readonly: bool = False, busy_timeout_ms: int = 5000
) -> apsw.Connection:
    """Open ``path`` in WAL mode with foreign keys, a busy timeout and a bounded WAL file.

    Blocking: call it from a worker thread, never from the trio thread.
    """
    _apply_best_practice()
    if readonly:
        flags = apsw.SQLITE_OPEN_READONLY
    else:
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    conn = apsw.Connection(path, flags=flags)
    try:
        # The best-practice hook sets 100 ms, too short for a writer that holds locks for a batch.
        conn.set_busy_timeout(busy_timeout_ms)
        conn.pragma("foreign_keys", True)
        if not readonly:
            mode = conn.pragma("journal_mode", "wal")
            if str(mode).lower() != "wal":
                raise apsw.CantOpenError(f"{path}: cannot switch to WAL (journal_mode={mode})")
            # In WAL mode NORMAL survives application crashes and saves an fsync per commit.
            conn.pragma("synchronous", "NORMAL")
            conn.pragma("journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES)
    except BaseException:
        conn.close()
        raise
    return conn
