"""Opening either backend's database in a test, as the storage layer does."""

from __future__ import annotations

from storage.connection import BusyWaits
from storage.database import database_at
from storage.sql import Connection, is_postgres

__all__ = ["connect", "is_postgres"]


def connect(where: str) -> Connection:
    """A writable connection to ``where`` (a SQLite path or a PostgreSQL URL), the schema
    migrated: what the writer opens. Blocking; close it when done."""
    return database_at(where).open_writer(BusyWaits())
