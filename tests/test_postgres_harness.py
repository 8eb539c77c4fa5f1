"""The ground issue 19 builds on: a real PostgreSQL started by the tests (Debian's package, its own
cluster in a temporary directory), and ``psycopg`` 3 with ``psycopg-pool`` driving it from trio
through worker threads — as the SQLite side runs APSW — with the password taken from the URL,
``$PGPASSWORD`` or a password file, and a connection pool that survives a server restart."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trio

from storage.postgres_connection import PgConnection
from storage.sql import DatabaseUnavailable
from tests.postgres_server import PostgresServer, postgres_server


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def _one(url: str, query: str) -> object:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]


async def test_queries_run_in_worker_threads_from_trio(postgres: PostgresServer) -> None:
    answers: list[object] = []

    async def ask(n: int) -> None:
        answers.append(await trio.to_thread.run_sync(_one, postgres.url, f"SELECT {n} * 2"))

    async with trio.open_nursery() as nursery:
        for n in range(8):
            nursery.start_soon(ask, n)
    assert sorted(answers) == [n * 2 for n in range(8)]  # type: ignore[type-var]


def test_the_password_comes_from_the_url_the_environment_or_a_password_file(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = postgres.url_without_password
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(psycopg.OperationalError, match="password"):
        _one(bare, "SELECT 1")
    assert _one(postgres.url, "SELECT current_user") == "llm_proxy"
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    assert _one(bare, "SELECT 1") == 1
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres.port}:llm_proxy:llm_proxy:{postgres.password}\n")
    os.chmod(passfile, 0o600)  # libpq ignores a password file others can read
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    assert _one(bare, "SELECT 1") == 1


def test_a_connection_outlives_a_restart_of_the_server(postgres: PostgresServer) -> None:
    conn = PgConnection(postgres.url)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (n integer)")
        conn.execute("INSERT INTO kept VALUES (?)", (1,))
        postgres.stop()
        with pytest.raises(DatabaseUnavailable):
            conn.execute("SELECT count(*) FROM kept")  # the session died with the server
        assert postgres.start()
        # Outside a transaction the next statement opens a new session.
        assert conn.execute("SELECT count(*) FROM kept").fetchall() == [(1,)]
    finally:
        conn.close()
