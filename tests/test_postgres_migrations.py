"""PostgreSQL migrations: an empty database migrated, a second run a no-op, processes and threads
starting at once migrating once (under the advisory lock), a newer database refused."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import storage.migrations
from storage import migrate as migrate_sqlite
from storage import open_connection
from storage.migrations import MIGRATIONS, SchemaTooNewError
from storage.postgres_migrations import (
    MIGRATION_LOCK_KEY,
    POSTGRES_MIGRATIONS,
    advance_identities,
    migrate,
    schema_version,
)
from tests.postgres_databases import fresh_database
from tests.postgres_server import PostgresServer, postgres_server

ROOT = Path(__file__).resolve().parent.parent
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
    "schema_version",
}
MIGRATED = "database migrated to schema version"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def url(postgres: PostgresServer) -> str:
    return fresh_database(postgres)


def connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def tables(conn: psycopg.Connection[tuple[Any, ...]]) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    ).fetchall()
    return {str(row[0]) for row in rows}


def migrated_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(MIGRATED)]


def test_the_versions_are_sqlites() -> None:
    assert len(POSTGRES_MIGRATIONS) == len(MIGRATIONS)


def test_an_empty_database_gets_the_whole_schema(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llm_proxy.storage")
    with connect(url) as conn:
        assert schema_version(conn) == 0
        assert migrate(conn) == len(MIGRATIONS)
        assert schema_version(conn) == len(MIGRATIONS)
        assert tables(conn) == TABLES
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)
    assert migrated_lines(caplog) == [f"{MIGRATED} {n}" for n in range(1, len(MIGRATIONS) + 1)]


def test_a_second_run_changes_nothing(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with connect(url) as conn:
        migrate(conn)
        conn.execute("INSERT INTO settings (key, value_json, updated_at) VALUES ('k', '1', 0)")
        caplog.set_level(logging.INFO, logger="llm_proxy.storage")
        assert migrate(conn) == len(MIGRATIONS)
        assert conn.execute("SELECT key, value_json FROM settings").fetchall() == [("k", "1")]
        assert tables(conn) == TABLES
    assert migrated_lines(caplog) == []


def test_a_connection_not_in_autocommit_is_given_back_as_it_came(url: str) -> None:
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert migrate(conn) == len(MIGRATIONS)
        assert conn.autocommit is False
        # The lock is released: another session takes it at once.
        with connect(url) as other:
            assert other.execute(
                "SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)
            ).fetchone() == (True,)


def test_a_failing_migration_leaves_the_previous_version_and_releases_the_lock(url: str) -> None:
    broken = (*POSTGRES_MIGRATIONS[:2], "ALTER TABLE nowhere ADD COLUMN x bigint;")
    with connect(url) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            migrate(conn, broken)
        assert schema_version(conn) == 2
        assert "attempts" not in {
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'llm_requests'"
            )
        }
        assert migrate(conn) == len(MIGRATIONS)


@contextlib.contextmanager
def all_waiting_at_the_lock(url: str, waiters: int) -> Iterator[None]:
    """Hold the migration lock until ``waiters`` sessions queue behind it, then let them go."""
    with connect(url) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        yield
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            (waiting,) = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone() or (0,)
            if waiting == waiters:
                break
            time.sleep(0.02)
        assert waiting == waiters
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def test_five_threads_at_once_migrate_once(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llm_proxy.storage")
    start = threading.Barrier(5)
    versions: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connect(url) as conn:
                start.wait(timeout=30)
                versions.append(migrate(conn))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(5)]
    with all_waiting_at_the_lock(url, 5):
        for thread in threads:
            thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert versions == [len(MIGRATIONS)] * 5
    assert len(migrated_lines(caplog)) == len(MIGRATIONS)


MIGRATE_IN_A_PROCESS = """
import logging, sys, psycopg
from storage.postgres_migrations import migrate
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
with psycopg.connect(sys.argv[1], autocommit=True, connect_timeout=5) as conn:
    print(migrate(conn))
"""


def test_two_processes_at_once_migrate_once(url: str) -> None:
    # Both queue behind the lock the test holds, then race for it.
    with all_waiting_at_the_lock(url, 2):
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE_IN_A_PROCESS, url],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
    answers = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], answers
    assert [out.strip() for out, _ in answers] == [str(len(MIGRATIONS))] * 2
    lines = [line for _, err in answers for line in err.splitlines() if line.startswith(MIGRATED)]
    assert sorted(lines) == sorted(f"{MIGRATED} {n}" for n in range(1, len(MIGRATIONS) + 1))


def test_a_newer_database_is_refused_as_on_sqlite(url: str) -> None:
    with connect(url) as conn:
        migrate(conn)
        conn.execute("UPDATE schema_version SET version = %s", (len(MIGRATIONS) + 5,))
        with pytest.raises(SchemaTooNewError) as refused:
            migrate(conn)
        assert str(refused.value) == (
            f"database schema version {len(MIGRATIONS) + 5} is newer than this llm-proxy knows"
            f" ({len(MIGRATIONS)}); upgrade llm-proxy or restore a matching backup"
        )
        assert schema_version(conn) == len(MIGRATIONS) + 5
        assert conn.autocommit is True


def test_an_older_database_is_brought_up_to_date(url: str) -> None:
    with connect(url) as conn:
        assert migrate(conn, POSTGRES_MIGRATIONS[:3]) == 3
        assert migrate(conn) == len(MIGRATIONS)
        assert schema_version(conn) == len(MIGRATIONS)


# Calls logged before version 4, and their rollup rows: the first two rows hold every call of
# their bucket (backfilled); the third's log was pruned (1 call of 5: left at zero counts).
CALLS_BEFORE_THE_HISTOGRAM = [
    "INSERT INTO llm_requests (request_id, ts_ms, client_id, provider, model, stream, status,"
    " http_status, latency_ms) VALUES"
    " ('r1', 10, 'c', 'p', 'm', 0, 'ok', 200, 10),"
    " ('r2', 20, 'c', 'p', 'm', 1, 'ok', 200, 60.5),"
    " ('r3', 30, 'c', 'p', 'm', 0, 'error', 502, 99.99),"
    " ('r4', 40, 'c', 'p', 'm', 0, 'ok', 200, 30000),"
    " ('r5', 50, NULL, NULL, 'm', 0, 'ok', 200, 120),"
    " ('r6', 3600001, 'c', 'p', 'm', 0, 'ok', 200, 70000)",
    "INSERT INTO usage_hourly (hour_ms, client_id, provider, model, requests, latency_ms_sum)"
    " VALUES (0, 'c', 'p', 'm', 4, 30170.49), (0, '', '', 'm', 1, 120),"
    " (3600000, 'c', 'p', 'm', 5, 70000)",
]


def test_version_4_backfills_the_histogram_as_sqlite_does(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lite = open_connection(str(tmp_path / "before.db"))
    try:
        with monkeypatch.context() as patch:
            patch.setattr(storage.migrations, "MIGRATIONS", MIGRATIONS[:3])
            assert migrate_sqlite(lite) == 3
        with connect(url) as conn:
            assert migrate(conn, POSTGRES_MIGRATIONS[:3]) == 3
            for statement in CALLS_BEFORE_THE_HISTOGRAM:
                lite.execute(statement)
                conn.execute(statement.encode())
            migrate_sqlite(lite)
            migrate(conn)
            rollup = "SELECT * FROM usage_hourly ORDER BY hour_ms, client_id"
            in_postgres = [tuple(row) for row in conn.execute(rollup)]
        in_sqlite = lite.execute(rollup).fetchall()
    finally:
        lite.close()
    assert in_postgres == in_sqlite
    histograms = [row[12:] for row in in_sqlite]
    assert histograms == [
        (0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0),
        (1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0),
        (0,) * 11,
    ]


def test_after_a_copy_new_ids_continue_after_the_copied_ones(url: str) -> None:
    with connect(url) as conn:
        migrate(conn)
        conn.execute(
            "INSERT INTO audit_log (id, ts_ms, username, action) VALUES (41, 0, 'u', 'a'),"
            " (7, 0, 'u', 'a')"
        )
        advance_identities(conn)
        added = "INSERT INTO audit_log (ts_ms, username, action) VALUES (0, 'u', 'b') RETURNING id"
        assert conn.execute(added).fetchone() == (42,)  # as SQLite numbers it: after the largest
        user = (
            "INSERT INTO users (username, password_hash, created_at, updated_at)"
            " VALUES ('ann', 'h', 0, 0) RETURNING id"
        )
        assert conn.execute(user).fetchone() == (1,)  # an empty table starts at 1
