"""Which database the storage layer uses: a SQLite file (the default) or a PostgreSQL server.

The writer and the read pool open their connections through a :class:`Database`, and call it for
the upkeep that only one backend has (SQLite's WAL checkpoints and ``pragma optimize``). Every
method that touches the database blocks: call them from a worker thread.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final, Protocol, final

import apsw

from storage.connection import BusyWaits, open_connection
from storage.sql import Connection, Dialect

if TYPE_CHECKING:
    from proxy.config import Config

__all__ = [
    "Database",
    "PostgresDatabase",
    "SqliteDatabase",
    "configured_database",
    "database_at",
]

logger = logging.getLogger("llm_proxy.storage")


class Database(Protocol):
    """Opens connections to one database and keeps it in shape."""

    @property
    def dialect(self) -> Dialect: ...

    def describe(self) -> str:
        """Where it is, for log lines and errors (a URL without its password)."""
        ...

    def open_writer(self, busy_waits: BusyWaits) -> Connection:
        """The writer's connection, the schema brought up to date."""
        ...

    def open_reader(self) -> Connection:
        """A read-only connection."""
        ...

    def checkpoint(self, conn: Connection, *, final: bool) -> bool:
        """Upkeep once writes pause (``final``: before closing); whether something was done."""
        ...


@final
class SqliteDatabase:
    """A SQLite file in WAL mode, shared by the processes of one host."""

    dialect: Final[Dialect] = "sqlite"

    def __init__(self, path: str, *, busy_timeout_ms: int = 5000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms

    def describe(self) -> str:
        return self.path

    def open_writer(self, busy_waits: BusyWaits) -> Connection:
        from storage.migrations import migrate

        conn = open_connection(
            self.path, busy_timeout_ms=self._busy_timeout_ms, busy_waits=busy_waits
        )
        try:
            migrate(conn)
            conn.transaction_mode = "IMMEDIATE"
        except BaseException:
            conn.close()
            raise
        return conn

    def open_reader(self) -> Connection:
        return open_connection(self.path, readonly=True, busy_timeout_ms=self._busy_timeout_ms)

    def checkpoint(self, conn: Connection, *, final: bool) -> bool:
        assert isinstance(conn, apsw.Connection)
        if final:
            try:
                # SQLite's advice before closing a long-lived connection: refresh the statistics.
                conn.pragma("optimize")
            except apsw.Error as exc:
                logger.warning("pragma optimize failed: %r", exc)
        mode = apsw.SQLITE_CHECKPOINT_TRUNCATE if final else apsw.SQLITE_CHECKPOINT_PASSIVE
        try:
            conn.wal_checkpoint(mode=mode)
        except apsw.BusyError:
            # Another process sharing the file (a worker of the fleet) is checkpointing or
            # reading: it will copy the WAL back; nothing is wrong here.
            logger.debug("WAL checkpoint skipped: another process holds the database")
            return False
        except apsw.Error as exc:
            logger.warning("WAL checkpoint failed: %r", exc)
            return False
        return True


@final
class PostgresDatabase:
    """A PostgreSQL database, shared by every gateway of the fleet."""

    dialect: Final[Dialect] = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url

    def describe(self) -> str:
        from proxy.config import mask_url

        return mask_url(self.url)

    def open_writer(self, busy_waits: BusyWaits) -> Connection:
        import psycopg

        from storage.postgres_connection import PgConnection, translate_error
        from storage.postgres_migrations import migrate

        conn = PgConnection(self.url)
        try:
            migrate(conn.raw)
        except psycopg.Error as exc:
            conn.close()
            raise translate_error(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def open_reader(self) -> Connection:
        from storage.postgres_connection import PgConnection

        return PgConnection(self.url, readonly=True)

    def checkpoint(self, conn: Connection, *, final: bool) -> bool:
        # The server keeps its own WAL and statistics (autovacuum): nothing for a client to do.
        return False


def configured_database(config: Config, *, busy_timeout_ms: int = 5000) -> Database:
    """Where the configuration keeps everything: ``[storage] url``'s PostgreSQL when set, else the
    SQLite file at ``server.database`` (whose lock waits last up to ``busy_timeout_ms``)."""
    if config.storage.url:
        return PostgresDatabase(config.storage.url)
    return SqliteDatabase(config.server.database, busy_timeout_ms=busy_timeout_ms)


def database_at(where: str | Database, *, busy_timeout_ms: int = 5000) -> Database:
    """``where`` as a database: a ``postgresql://`` (or ``postgres://``) URL, else a SQLite path
    (whose lock waits last up to ``busy_timeout_ms``)."""
    if not isinstance(where, str):
        return where
    if where.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(where)
    return SqliteDatabase(where, busy_timeout_ms=busy_timeout_ms)
