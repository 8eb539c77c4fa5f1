"""Storage layer: APSW connections, migrations, the single writer, the read pool and queries."""

from __future__ import annotations

from storage.clients import (
    UNCHANGED,
    ActiveKey,
    ClientRow,
    TokenRow,
    Unchanged,
    active_keys,
    add_key,
    auth_generation,
    create_client,
    delete_client,
    get_client,
    list_clients,
    list_keys,
    record_key_use,
    revoke_client,
    revoke_key,
    update_client,
)
from storage.connection import open_connection
from storage.migrations import MIGRATIONS, SchemaTooNewError, migrate, schema_version
from storage.queries import (
    ClientUsage,
    client_usage,
    count_requests,
    recent_requests,
    usage_totals,
)
from storage.reads import ReadPool
from storage.writer import StorageWriter, WriterStatistics

__all__ = [
    "MIGRATIONS",
    "UNCHANGED",
    "ActiveKey",
    "ClientRow",
    "ClientUsage",
    "ReadPool",
    "SchemaTooNewError",
    "StorageWriter",
    "TokenRow",
    "Unchanged",
    "WriterStatistics",
    "active_keys",
    "add_key",
    "auth_generation",
    "client_usage",
    "count_requests",
    "create_client",
    "delete_client",
    "get_client",
    "list_clients",
    "list_keys",
    "migrate",
    "open_connection",
    "recent_requests",
    "record_key_use",
    "revoke_client",
    "revoke_key",
    "schema_version",
    "update_client",
    "usage_totals",
]
