"""Schema migrations: complete schema, idempotence, atomic failure, refusal of newer databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

import storage.migrations
from storage import MIGRATIONS, SchemaTooNewError, migrate, open_connection, schema_version

TABLES = {
    "users",
    "clients",
    "client_tokens",
    "llm_requests",
    "usage_hourly",
    "provider_settings",
    "model_settings",
    "settings",
    "audit_log",
    "stored_responses",
    "budgets",
}
INDEXES = {
    "llm_requests_ts_ms": ("llm_requests", ["ts_ms"]),
    "llm_requests_client_ts_ms": ("llm_requests", ["client_id", "ts_ms"]),
    "llm_requests_provider_ts_ms": ("llm_requests", ["provider", "ts_ms"]),
    "llm_requests_model_ts_ms": ("llm_requests", ["model", "ts_ms"]),
    "llm_requests_endpoint_ts_ms": ("llm_requests", ["endpoint", "ts_ms"]),
    "stored_responses_expires_at": ("stored_responses", ["expires_at"]),
    "stored_responses_created_at": ("stored_responses", ["created_at"]),
    "client_tokens_client_id": ("client_tokens", ["client_id"]),
    "audit_log_ts_ms": ("audit_log", ["ts_ms"]),
}


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    connection = open_connection(str(tmp_path / "test.db"))
    try:
        yield connection
    finally:
        connection.close()


def names(conn: apsw.Connection, kind: str) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = ? AND name NOT LIKE 'sqlite_%'", (kind,)
    ).fetchall()
    return {str(row[0]) for row in rows}


def test_fresh_database_gets_the_complete_schema(conn: apsw.Connection) -> None:
    assert migrate(conn) == len(MIGRATIONS)
    assert schema_version(conn) == len(MIGRATIONS)
    assert names(conn, "table") == TABLES
    assert set(INDEXES) <= names(conn, "index")
    for index, (table, columns) in INDEXES.items():
        info = conn.execute(f"SELECT name FROM pragma_index_info('{index}')").fetchall()
        assert [row[0] for row in info] == columns
        (owner,) = conn.execute(
            "SELECT tbl_name FROM sqlite_schema WHERE name = ?", (index,)
        ).fetchall()[0]
        assert owner == table
    assert conn.pragma("journal_mode") == "wal"
    assert conn.pragma("auto_vacuum") == 2  # INCREMENTAL
    assert conn.pragma("foreign_keys") == 1
    assert conn.pragma("synchronous") == 1  # NORMAL


def test_rerun_is_a_no_op(conn: apsw.Connection) -> None:
    migrate(conn)
    conn.execute("INSERT INTO settings (key, value_json, updated_at) VALUES ('k', '1', 0)")
    schema_before = conn.execute("SELECT type, name, sql FROM sqlite_schema").fetchall()
    assert migrate(conn) == len(MIGRATIONS)
    assert conn.execute("SELECT type, name, sql FROM sqlite_schema").fetchall() == schema_before
    assert conn.execute("SELECT key FROM settings").fetchall() == [("k",)]


def test_failing_migration_rolls_back_entirely(
    conn: apsw.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = "CREATE TABLE half_done (x INTEGER); CREATE TABLE broken ("
    monkeypatch.setattr(storage.migrations, "MIGRATIONS", (MIGRATIONS[0], broken))
    with pytest.raises(apsw.SQLError):
        migrate(conn)
    assert schema_version(conn) == 1
    assert names(conn, "table") == TABLES - {"stored_responses", "budgets"}  # version 1's tables
    assert not conn.in_transaction


def test_newer_database_is_refused(conn: apsw.Connection) -> None:
    conn.pragma("user_version", len(MIGRATIONS) + 1)
    with pytest.raises(SchemaTooNewError, match="newer"):
        migrate(conn)
    assert names(conn, "table") == set()


def test_constraints_guard_the_data(conn: apsw.Connection) -> None:
    migrate(conn)
    with pytest.raises(apsw.ConstraintError):
        conn.execute(
            "INSERT INTO users (username, password_hash, role, created_at, updated_at)"
            " VALUES ('u', 'h', 'root', 0, 0)"
        )
    with pytest.raises(apsw.ConstraintError):
        conn.execute(
            "INSERT INTO llm_requests (request_id, ts_ms, model, stream, status, http_status)"
            " VALUES ('r', 0, 'm', 0, 'maybe', 200)"
        )
    with pytest.raises(apsw.ConstraintError):
        conn.execute(
            "INSERT INTO usage_hourly (hour_ms, client_id, provider, model)"
            " VALUES (0, NULL, '', 'm')"
        )
    conn.execute("INSERT INTO clients (id, name, created_at, updated_at) VALUES ('c', 'C', 0, 0)")
    conn.execute(
        "INSERT INTO client_tokens (client_id, token_sha256, prefix, last4, created_at)"
        " VALUES ('c', ?, 'sk-', 'abcd', 0)",
        ("0" * 64,),
    )
    conn.execute("DELETE FROM clients WHERE id = 'c'")
    assert conn.execute("SELECT count(*) FROM client_tokens").fetchall() == [(0,)]
