"""Clients' names for the ids that calls are logged under: the dashboard and the live feed show
names, and a call keeps its client's id (a renamed client's calls show the new name; a deleted
one's calls have no name and show the id)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from storage.sql import Connection

__all__ = ["client_names", "every_client_name"]

# Ids bound per statement: well under SQLite's and PostgreSQL's limits on parameters.
_IDS_PER_QUERY: Final = 500


def client_names(conn: Connection, client_ids: Iterable[str | None]) -> dict[str, str]:
    """The name of each client among ``client_ids`` that exists (id -> name); anonymous calls
    (None, '') and ids without a client row (deleted clients, static keys) are left out."""
    ids = sorted({client_id for client_id in client_ids if client_id})
    names: dict[str, str] = {}
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start : start + _IDS_PER_QUERY]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(f"SELECT id, name FROM clients WHERE id IN ({marks})", chunk)
        names.update((str(client_id), str(name)) for client_id, name in rows.fetchall())
    return names


def every_client_name(conn: Connection) -> dict[str, str]:
    """Every client's name (id -> name): what the live feed names its calls by."""
    rows = conn.execute("SELECT id, name FROM clients").fetchall()
    return {str(client_id): str(name) for client_id, name in rows}
