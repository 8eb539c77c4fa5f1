"""Storage layer: APSW connections, migrations, the single writer, the read pool and queries."""

from __future__ import annotations

from storage.connection import open_connection
from storage.migrations import MIGRATIONS, SchemaTooNewError, migrate, schema_version
from storage.queries import count_requests, recent_requests, usage_totals
from storage.reads import ReadPool
from storage.writer import StorageWriter, WriterStatistics

__all__ = [
    "MIGRATIONS",
    "ReadPool",
    "SchemaTooNewError",
    "StorageWriter",
    "WriterStatistics",
    "count_requests",
    "migrate",
    "open_connection",
    "recent_requests",
    "schema_version",
    "usage_totals",
]
