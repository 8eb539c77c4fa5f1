"""What the storage layer's queries need of a database connection, whichever the backend.

A query is a function of a connection. On SQLite the connection is APSW's own; on PostgreSQL it
is :class:`storage.postgres_connection.PgConnection`, which offers the same few methods (``?``
and ``:name`` placeholders, ``changes()``, a savepoint as ``with conn:``) over psycopg. The few
statements whose SQL differs ask :func:`is_postgres`.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any, Final, Literal, Protocol

import apsw

__all__ = [
    "DATABASE_ERRORS",
    "Connection",
    "DatabaseError",
    "DatabaseUnavailable",
    "Dialect",
    "RowRejected",
    "Rows",
    "bytewise",
    "column_names",
    "for_update",
    "is_postgres",
]

Dialect = Literal["sqlite", "postgresql"]


class Rows(Protocol):
    """The rows of a statement: APSW's cursor or psycopg's."""

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection as the queries use it (positional-only: each backend names them its way)."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, statements: str, bindings: Any = None, /) -> Rows: ...

    def executemany(self, statements: str, sequenceofbindings: Any, /) -> Any: ...

    def changes(self) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        etype: type[BaseException] | None,
        evalue: BaseException | None,
        etb: TracebackType | None,
        /,
    ) -> bool | None: ...


def column_names(rows: Rows) -> list[str] | None:
    """The names of the columns of ``rows``; None when a SQLite statement had no rows (APSW only
    describes a statement while it runs: call this before fetching)."""
    try:
        description = rows.description  # type: ignore[attr-defined]
    except apsw.ExecutionCompleteError:
        return None
    if description is None:
        return None
    return [getattr(column, "name", None) or column[0] for column in description]


def is_postgres(conn: object) -> bool:
    """Whether ``conn`` is a PostgreSQL connection (APSW's has no ``dialect``)."""
    dialect: Dialect = getattr(conn, "dialect", "sqlite")
    return dialect == "postgresql"


def bytewise(conn: object, expression: str) -> str:
    """``expression`` to sort by its bytes, as SQLite's BINARY collation does: a PostgreSQL
    database sorts text by its own collation (a language's, on most servers) unless told "C"."""
    return f'{expression} COLLATE "C"' if is_postgres(conn) else expression


def for_update(conn: object) -> str:
    """What ends a SELECT whose rows the transaction will write back: `` FOR UPDATE`` on
    PostgreSQL, where another gateway's transaction could change them in between (READ COMMITTED);
    nothing on SQLite, whose write transaction already holds the database's only write lock."""
    return " FOR UPDATE" if is_postgres(conn) else ""


class DatabaseError(Exception):
    """A PostgreSQL error as the storage layer raises it (SQLite's are ``apsw.Error``).

    ``sqlstate`` is PostgreSQL's five-character code (``None`` when the connection failed before
    the server said anything).
    """

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class RowRejected(DatabaseError):
    """The statement's data can never be stored (a constraint, a value out of range)."""


class DatabaseUnavailable(DatabaseError):
    """The server cannot be reached, or is shutting down, or is out of resources: retry later."""


DATABASE_ERRORS: Final[tuple[type[Exception], ...]] = (apsw.Error, DatabaseError)
"""What a failing statement raises, on either backend."""
