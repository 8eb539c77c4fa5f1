"""Opening either backend's database in a test, as the storage layer does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from storage.connection import BusyWaits
from storage.database import database_at
from storage.sql import Connection, is_postgres
from storage.writer import StorageWriter

__all__ = ["connect", "is_postgres", "query_rows", "reader", "writer_on"]


def connect(where: str) -> Connection:
    """A writable connection to ``where`` (a SQLite path or a PostgreSQL URL), the schema
    migrated: what the writer opens. Blocking; close it when done."""
    return database_at(where).open_writer(BusyWaits())


def reader(where: str) -> Connection:
    """A read-only connection to ``where``, as the read pool opens one. Blocking; close it."""
    return database_at(where).open_reader()


def query_rows(where: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """The rows of one statement, read on a connection of its own."""
    conn = reader(where)
    try:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


@asynccontextmanager
async def writer_on(where: str, **options: object) -> AsyncIterator[StorageWriter]:
    """A running :class:`StorageWriter` on ``where``, closed (and drained) on the way out."""
    writer = StorageWriter(where, **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        try:
            yield writer
        finally:
            writer.close()
