"""``llm-proxy storage migrate``: a populated SQLite database copied whole into PostgreSQL.

The SQLite side is filled through the real stores and writer; the copy runs as the real CLI;
then both databases must give the same rows per table and the same dashboard answers.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
import trio

from proxy.records import ENDPOINTS
from storage import ReadPool, StorageWriter, create_client, open_connection
from storage.analytics.aggregates import breakdown, summary, timeseries
from storage.analytics.request_log import request_log
from storage.analytics.usage_filter import UsageFilter
from storage.audit import record_audit
from storage.clients import add_key, list_clients, list_keys
from storage.model_settings import put_model_settings
from storage.provider_settings import put_provider_settings
from storage.response_store import ResponseStore
from storage.responses import ResponseToStore
from storage.settings_store import get_settings, put_settings
from storage.sql import Connection
from storage.sqlite_to_postgres import SchemaMismatch, copy_sqlite_to_postgres
from storage.transaction import in_immediate_transaction
from storage.users import create_user
from tests.factories import T0, spread_records
from tests.storage_backends import connect
from tests.test_cli import clean_env, run_cli

RECORDS = 3000
SPAN_MS = 3 * 86_400_000  # three days: 72 hours of rollups
TABLES = (
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
)


async def populate(path: Path) -> None:
    """Clients with keys, users, settings, an audit trail, stored responses and RECORDS calls
    across SPAN_MS, each through the store or writer the gateway uses."""
    writer = StorageWriter(str(path), max_batch=250)
    reads = ReadPool(str(path))
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        try:
            for n in range(3):
                client, _, _ = await writer.execute(
                    partial(create_client, name=f"team-{n}", now_ms=T0 + n)
                )
                await writer.execute(partial(add_key, client_id=client.id, name="2", now_ms=T0))
            await writer.execute(
                lambda c: create_user(
                    c, username="ops", password_hash="$argon2id$x", role="admin", now_ms=T0
                )
            )
            await writer.execute(
                lambda c: put_settings(c, {"request_log_retention_days": 30}, now_ms=T0)
            )
            await writer.execute(
                lambda c: record_audit(
                    c, username="ops", action="clients.create", detail={"n": 3}, now_ms=T0
                )
            )
            await writer.execute(
                partial(
                    put_provider_settings,
                    provider="openai",
                    max_concurrency=8,
                    credit_balance_usd=12.5,
                    now_ms=T0,
                )
            )
            await writer.execute(
                partial(
                    put_model_settings,
                    model="fast",
                    provider="openai",
                    upstream_model="gpt-4o-mini",
                    input_per_mtok=0.15,
                    now_ms=T0,
                )
            )
            # Two instances and every endpoint: the copy keeps both dimensions.
            await writer.write_requests(
                [
                    dataclasses.replace(
                        record,
                        instance=("gw-a", "gw-b", None)[n % 3],
                        endpoint=ENDPOINTS[n % len(ENDPOINTS)],
                    )
                    for n, record in enumerate(spread_records(RECORDS, span_ms=SPAN_MS, seed=7))
                ]
            )
            store = ResponseStore(writer, reads, retention_days=30)
            for n in range(5):
                response_id = f"resp_{n:04d}"
                await store.store(
                    ResponseToStore(
                        id=response_id,
                        client_id="client-a",
                        model="gpt-4o-mini",
                        provider="openai",
                        previous_response_id=f"resp_{n - 1:04d}" if n else None,
                        input_items=[{"type": "message", "role": "user", "content": f"hi {n}"}],
                        response_json=msgspec.json.encode({"id": response_id, "output": []}),
                    )
                )
        finally:
            writer.close()
            reads.close()


def counts(conn: Connection) -> dict[str, int]:
    return {
        table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]) for table in TABLES
    }


def rounded(value: Any) -> Any:
    """``value`` with every float to 12 significant digits: a sum of floats differs in its last
    bits with the order the two databases add the rows in."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return rounded(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item) for item in value]
    return value


def answers(conn: Connection) -> Any:
    """What the dashboard shows, from the rollups and the request log."""
    since, until = T0, T0 + SPAN_MS
    pages: list[Any] = []
    cursor: str | None = None
    for _ in range(4):
        rows, cursor = request_log(conn, since, until, limit=100, cursor=cursor)
        pages.append(rows)
    return rounded(
        {
            "summary": summary(conn, since, until),
            "summary_b": summary(conn, since, until, UsageFilter(client_id="client-b")),
            "hourly": timeseries(conn, since, until, "hour"),
            "daily_by_model": timeseries(conn, since, until, "day", group_by="model"),
            "by_provider": breakdown(conn, "provider", since, until),
            "by_client": breakdown(conn, "client", since, until),
            "by_endpoint": breakdown(conn, "endpoint", since, until),
            "by_instance": breakdown(conn, "instance", since, until),
            "instance_b": summary(conn, since, until, UsageFilter(instance="gw-b")),
            "log_pages": pages,
            "clients": list_clients(conn),
            "keys": [list_keys(conn, client.id) for client in list_clients(conn)],
            "settings": get_settings(conn),
        }
    )


def migrate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("storage", "migrate", *args, env=clean_env())


def read(where: str, fn: Callable[[Connection], Any]) -> Any:
    conn = connect(where)
    try:
        return fn(conn)
    finally:
        conn.close()


@pytest.fixture
async def populated(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.db"
    await populate(path)
    return path


async def test_round_trip_keeps_rows_ids_and_answers(populated: Path, postgres_url: str) -> None:
    source = str(populated)
    result = await trio.to_thread.run_sync(migrate_cli, "--from", source, "--to", postgres_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert re.search(r"llm_requests: 3,000 rows", result.stderr)
    assert re.search(r"copied [\d,]+ rows in \d+ tables in [\d.]+ s", result.stderr)
    password = re.search(r"://[^:]+:([^@]+)@", postgres_url)
    assert password
    assert password.group(1) not in result.stderr

    sqlite_counts = read(source, counts)
    assert sqlite_counts["llm_requests"] == RECORDS
    assert sqlite_counts["usage_hourly"] > 72  # every hour, several clients and models
    assert all(sqlite_counts[table] > 0 for table in TABLES)
    assert read(postgres_url, counts) == sqlite_counts
    assert read(postgres_url, answers) == read(source, answers)

    # A new row continues after the copied ids, on every table with an identity.
    def insert_after(conn: Connection) -> list[int]:
        ids: list[int] = []

        def write(c: Connection) -> None:
            _, token, _ = create_client(c, name="after", now_ms=T0 + SPAN_MS)
            ids.append(token.id)
            user = create_user(
                c, username="late", password_hash="$argon2id$y", role="viewer", now_ms=T0
            )
            ids.append(user.id)

        in_immediate_transaction(conn, write)
        return ids

    token_id, user_id = read(postgres_url, insert_after)
    assert token_id == sqlite_counts["client_tokens"] + 1
    assert user_id == sqlite_counts["users"] + 1
    # The copied rows did not move the API keys' change counter twice: it is SQLite's, plus the
    # two changes just made (a client and its key).
    generation = read(source, lambda c: get_settings_raw(c, "auth_generation"))
    assert read(postgres_url, lambda c: get_settings_raw(c, "auth_generation")) == generation + 2


def get_settings_raw(conn: Connection, key: str) -> int:
    row = conn.execute("SELECT value_json FROM settings WHERE key = ?", (key,)).fetchone()
    return int(row[0])


async def test_a_target_with_rows_is_refused_unless_forced(
    populated: Path, postgres_url: str
) -> None:
    source = str(populated)
    first = await trio.to_thread.run_sync(migrate_cli, "--from", source, "--to", postgres_url)
    assert first.returncode == 0, first.stderr
    # The target changes after the copy: a refused second copy must leave that change.
    read(
        postgres_url,
        lambda c: in_immediate_transaction(
            c, lambda c: c.execute("DELETE FROM llm_requests WHERE id <= 10")
        ),
    )
    again = await trio.to_thread.run_sync(migrate_cli, "--from", source, "--to", postgres_url)
    assert again.returncode == 1
    [line] = again.stderr.splitlines()[-1:]
    assert line.startswith("llm-proxy: ")
    assert "already holds rows" in line
    assert "llm_requests 2,990" in line
    assert "--force" in line
    assert read(postgres_url, counts)["llm_requests"] == RECORDS - 10

    forced = await trio.to_thread.run_sync(
        migrate_cli, "--from", source, "--to", postgres_url, "--force"
    )
    assert forced.returncode == 0, forced.stderr
    assert "emptied the target first" in forced.stderr
    assert read(postgres_url, counts) == read(source, counts)
    assert read(postgres_url, answers) == read(source, answers)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("mysql://db/x", "--to must be a postgresql:// URL"),
        ("postgresql://app:hunter2secret@127.0.0.1:1/x", "cannot connect to postgresql://app:…@"),
    ],
)
async def test_a_bad_or_unreachable_target_is_one_line(
    tmp_path: Path, target: str, expected: str
) -> None:
    source = tmp_path / "small.db"
    conn = connect(str(source))
    conn.close()
    result = await trio.to_thread.run_sync(migrate_cli, "--from", str(source), "--to", target)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("llm-proxy: ")
    assert expected in line
    assert "hunter2secret" not in line


async def test_a_missing_source_is_one_line(tmp_path: Path, postgres_url: str) -> None:
    missing = tmp_path / "nope.db"
    result = await trio.to_thread.run_sync(
        migrate_cli, "--from", str(missing), "--to", postgres_url
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"llm-proxy: no SQLite database at {missing} (see --from and --config)"
    )
    assert not missing.exists()


def test_a_column_on_one_side_only_stops_the_copy(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "drifted.db"
    conn = connect(str(source))
    conn.close()
    sqlite = open_connection(str(source))
    target = psycopg.connect(postgres_url, autocommit=True)
    try:
        sqlite.execute("ALTER TABLE clients ADD COLUMN team TEXT")
        with pytest.raises(SchemaMismatch, match=r"column clients\.team only in SQLite"):
            copy_sqlite_to_postgres(sqlite, target)
        assert target.execute("SELECT count(*) FROM clients").fetchone() == (0,)
    finally:
        target.close()
        sqlite.close()


async def test_a_copy_beside_a_writing_gateway_is_one_snapshot(
    populated: Path, postgres_url: str
) -> None:
    # A gateway's writer keeps logging calls into the source while the copy runs: the copy holds
    # the rows and rollups of one moment, so every copied call is in the copied rollups once.
    source = str(populated)
    writer = StorageWriter(source, max_batch=50, max_delay_s=0.001)
    written = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)

        async def keep_logging() -> None:
            nonlocal written
            more = spread_records(100_000, start_ms=T0 + SPAN_MS, span_ms=SPAN_MS, seed=3)
            while True:
                await writer.write_requests([next(more) for _ in range(20)])
                written += 20
                await trio.sleep(0.002)

        nursery.start_soon(keep_logging)
        result = await trio.to_thread.run_sync(migrate_cli, "--from", source, "--to", postgres_url)
        copied_while = written
        nursery.cancel_scope.cancel()
        writer.close()
    assert result.returncode == 0, result.stderr
    assert copied_while > 0

    def rollup_matches_rows(conn: Connection) -> tuple[int, int]:
        (rows,) = conn.execute("SELECT count(*) FROM llm_requests").fetchone()
        (rolled,) = conn.execute("SELECT sum(requests) FROM usage_hourly").fetchone()
        return int(rows), int(rolled)

    rows, rolled = read(postgres_url, rollup_matches_rows)
    assert rows == rolled
    assert RECORDS <= rows <= RECORDS + written
