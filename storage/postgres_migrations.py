"""Migrations of a PostgreSQL database, numbered as SQLite's: run once under an advisory lock
however many processes start at the same moment.

The version lives in a one-row table, ``schema_version``; each migration commits with its
version bump in one transaction. The whole run holds a session-level advisory lock with a fixed
key, and the version is read only once the lock is held: the processes that waited find the
work done and apply nothing. The lock is the server's, so it dies with a crashed holder's
connection. psycopg is only named for types here: the caller brings the connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from storage.migrations import SchemaTooNewError, check_version
from storage.postgres_schema import POSTGRES_MIGRATIONS

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "MIGRATION_LOCK_KEY",
    "POSTGRES_MIGRATIONS",
    "SchemaTooNewError",
    "advance_identities",
    "migrate",
    "schema_version",
]

logger = logging.getLogger("llm_proxy.storage")

MIGRATION_LOCK_KEY: Final = int.from_bytes(b"llm-prox", "big")
"""The advisory lock every llm-proxy takes to migrate (advisory locks are per database)."""

# One row at most: the primary key is a constant.
_VERSION_TABLE: Final = """
CREATE TABLE schema_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  integer NOT NULL CHECK (version >= 0)
)
"""


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The database's schema version: 0 when it has never been migrated.

    Blocking: call it from a worker thread.
    """
    (exists,) = _one(conn, "SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return 0 if row is None else int(row[0])


def migrate(
    conn: psycopg.Connection[Any], migrations: tuple[str, ...] = POSTGRES_MIGRATIONS
) -> int:
    """Apply the pending migrations under the advisory lock, each with its version bump in one
    transaction; return the version. Refuses a database newer than ``migrations`` know.

    ``conn`` must not be inside a transaction. Blocking: call it from a worker thread.
    """
    saved_autocommit = conn.autocommit
    # Autocommit, so each `conn.transaction()` below is a real BEGIN/COMMIT and the session lock
    # is held across them (an implicit outer transaction would make them savepoints).
    conn.set_autocommit(True)
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            return _migrate_locked(conn, migrations)
        finally:
            # A broken connection has lost the lock with its session: nothing to release.
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    finally:
        if not conn.closed:
            conn.set_autocommit(saved_autocommit)


def _migrate_locked(conn: psycopg.Connection[Any], migrations: tuple[str, ...]) -> int:
    """The run itself, with the lock held: the version is read only now."""
    target = len(migrations)
    (exists,) = _one(conn, "SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        with conn.transaction():
            conn.execute(_VERSION_TABLE)
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    current = check_version(schema_version(conn), target)
    while current < target:
        with conn.transaction():
            conn.execute(migrations[current].encode())
            current += 1
            conn.execute("UPDATE schema_version SET version = %s", (current,))
        logger.info("database migrated to schema version %d", current)
    return current


def advance_identities(conn: psycopg.Connection[Any]) -> None:
    """After rows were copied in with their ids, number new rows after the largest one.

    SQLite gives a new ``INTEGER PRIMARY KEY`` row the largest id plus one; an identity column
    takes its sequence's next value, which rows inserted with explicit ids do not move. Without
    this, the first insert after a copy would collide with a copied id. Blocking: call it from a
    worker thread.
    """
    columns = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for table, column in columns:
        # setval(..., false): the next value is the one given, 1 on an empty table.
        query = (
            f"SELECT setval(pg_get_serial_sequence(%s, %s), coalesce(max({_quoted(column)}), 0)"
            f" + 1, false) FROM {_quoted(table)}"
        )
        conn.execute(query.encode(), (_quoted(table), column))


def _quoted(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def _one(conn: psycopg.Connection[Any], query: str) -> tuple[Any, ...]:
    """The one row ``query`` answers."""
    row = conn.execute(query.encode()).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {query!r}")
    return tuple(row)
