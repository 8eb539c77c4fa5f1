"""Request log retention: delete old ``llm_requests`` rows a batch at a time, then hand the freed
pages back to the file system with incremental vacuum.

Plain functions of a write connection, each meant to be one short writer job
(``await writer.execute(partial(delete_requests_before, before_ms=..., limit=1000))``), so the
write lock is never held for more than one small batch and the records of live calls get in
between two batches. ``usage_hourly`` is never touched: the hourly totals outlive the rows they
were summed from, so the dashboard's history stays whole.

The database is created with ``auto_vacuum = INCREMENTAL`` (``storage.migrations``): deleted rows
leave free pages inside the file until ``PRAGMA incremental_vacuum(N)`` moves up to N of them to
the end and truncates it.
"""

from __future__ import annotations

from storage.sql import Connection, is_postgres

__all__ = [
    "DAY_MS",
    "cutoff_ms",
    "delete_requests_before",
    "freelist_pages",
    "incremental_vacuum",
]

DAY_MS = 86_400_000

# The ts_ms index finds the oldest rows; the primary key deletes them.
_DELETE_BATCH = """
DELETE FROM llm_requests WHERE id IN (
    SELECT id FROM llm_requests WHERE ts_ms < ? ORDER BY ts_ms LIMIT ?
)
"""


def cutoff_ms(now_ms: int, retention_days: int) -> int | None:
    """The time before which request rows are deleted; None when ``retention_days`` is 0 (keep
    forever)."""
    if retention_days < 0:
        raise ValueError(f"retention_days must not be negative, got {retention_days}")
    if retention_days == 0:
        return None
    return now_ms - retention_days * DAY_MS


def delete_requests_before(conn: Connection, *, before_ms: int, limit: int) -> int:
    """Delete at most ``limit`` of the oldest request rows with ``ts_ms < before_ms``; return how
    many were deleted (fewer than ``limit``: none are left)."""
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    conn.execute(_DELETE_BATCH, (before_ms, limit))
    return conn.changes()


def freelist_pages(conn: Connection) -> int:
    """How many pages of the file are free (left by deleted rows, not yet given back)."""
    if is_postgres(conn):
        return 0  # the server reuses the space of deleted rows itself (autovacuum)
    return int(conn.execute("PRAGMA freelist_count").fetchall()[0][0])


def incremental_vacuum(conn: Connection, *, pages: int) -> int:
    """Give back at most ``pages`` free pages (truncating the file); return how many were freed.

    Does nothing (returns 0) unless the database has ``auto_vacuum = INCREMENTAL``.
    """
    if pages <= 0:
        raise ValueError(f"pages must be positive, got {pages}")
    if is_postgres(conn):
        return 0
    # The pragma returns one row per page it frees, and only frees the next page when the
    # statement is stepped again: it must be read to the end.
    return len(conn.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall())
