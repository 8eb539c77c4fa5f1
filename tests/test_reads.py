"""ReadPool and the read queries, against rows committed by the real writer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import apsw
import pytest
import trio

from proxy.records import RequestRecord
from storage import (
    ReadPool,
    StorageWriter,
    count_requests,
    recent_requests,
    usage_totals,
)
from storage.sql import Connection, DatabaseError
from tests.postgres_databases import fresh_database
from tests.test_writer import query

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS

RECORDS = [
    RequestRecord(
        request_id="a",
        ts_ms=T0 + 1_000,
        client_id="c1",
        provider="openai",
        model="gpt-4o",
        upstream_model="gpt-4o",
        stream=True,
        status="ok",
        http_status=200,
        prompt_tokens=100,
        completion_tokens=20,
        reasoning_tokens=5,
        cached_tokens=40,
        total_tokens=120,
        cost_usd=0.5,
        has_images=True,
        latency_ms=100.0,
    ),
    RequestRecord(
        request_id="b",
        ts_ms=T0 + 2_000,
        client_id=None,
        provider="ollama",
        model="llama3.2",
        upstream_model="llama3.2",
        stream=False,
        status="error",
        http_status=502,
        error_type="upstream_error",
        latency_ms=300.0,
    ),
    RequestRecord(
        request_id="c",
        ts_ms=T0 + HOUR_MS + 5,
        client_id="c1",
        provider="openai",
        model="gpt-4o",
        upstream_model="gpt-4o",
        stream=False,
        status="ok",
        http_status=200,
        prompt_tokens=1,
        completion_tokens=2,
        cost_usd=0.25,
        latency_ms=50.0,
    ),
]


def begin(conn: Connection) -> None:
    """Open a transaction and leave it open (a statement without rows: nothing to fetch)."""
    conn.execute("BEGIN")


async def write_all(path: Path | str, records: list[RequestRecord]) -> None:
    writer = StorageWriter(str(path))
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await writer.write_requests(records)
        writer.close()


async def test_pool_sees_rows_committed_by_a_running_writer(database_url: str) -> None:
    db = database_url
    writer = StorageWriter(str(db))
    pool = ReadPool(str(db), size=2)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            assert await pool.run(count_requests) == 0
            assert await pool.run(recent_requests) == []
            await writer.write_requests(RECORDS)
            await writer.execute(lambda conn: None)  # runs after the records are committed
            assert await pool.run(count_requests) == len(RECORDS)
            writer.close()
    finally:
        pool.close()


async def test_recent_requests_shape(database_url: str) -> None:
    await write_all(database_url, RECORDS)
    pool = ReadPool(database_url)
    try:
        rows = await pool.run(recent_requests)
        assert [row["request_id"] for row in rows] == ["c", "b", "a"]
        columns = {"id"} | {field.name for field in dataclasses.fields(RequestRecord)}
        assert all(set(row) == columns for row in rows)
        oldest = rows[-1]
        for name, value in dataclasses.asdict(RECORDS[0]).items():
            assert oldest[name] == value, name
        assert oldest["stream"] is True
        assert oldest["has_images"] is True
        assert rows[1]["cost_usd"] is None
        assert [row["request_id"] for row in await pool.run(lambda c: recent_requests(c, 1))] == [
            "c"
        ]
    finally:
        pool.close()


async def test_usage_totals_shape_and_values(
    database_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = database_url
    await write_all(db, RECORDS)
    pool = ReadPool(str(db))
    try:
        first_hour = await pool.run(lambda c: usage_totals(c, T0, T0 + HOUR_MS))
        assert first_hour == {
            "requests": 2,
            "errors": 1,
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "reasoning_tokens": 5,
            "cached_tokens": 40,
            "cost_usd": pytest.approx(0.5),
            "avg_latency_ms": pytest.approx(200.0),
        }
        both = await pool.run(lambda c: usage_totals(c, T0 + 10, T0 + 2 * HOUR_MS))
        assert both["requests"] == 3
        assert both["cost_usd"] == pytest.approx(0.75)
        other = (
            fresh_database(request.getfixturevalue("postgres"))
            if db.startswith("postgresql://")
            else str(tmp_path / "unpriced.db")
        )
        unpriced = await write_and_total_unpriced(other)
        assert unpriced["cost_usd"] is None
        empty = await pool.run(lambda c: usage_totals(c, T0 - 10 * HOUR_MS, T0 - 5 * HOUR_MS))
        assert empty == {
            "requests": 0,
            "errors": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "reasoning_tokens": 0,
            "cached_tokens": 0,
            "cost_usd": None,
            "avg_latency_ms": None,
        }
    finally:
        pool.close()


async def write_and_total_unpriced(db: str) -> dict[str, object]:
    await write_all(db, [RECORDS[1]])
    pool = ReadPool(str(db))
    try:
        return await pool.run(lambda c: usage_totals(c, T0, T0 + HOUR_MS))
    finally:
        pool.close()


async def test_pool_reuses_at_most_size_connections(database_url: str) -> None:
    db = database_url
    await write_all(db, RECORDS)
    pool = ReadPool(str(db), size=2)
    seen: list[int] = []

    def which(conn: apsw.Connection) -> int:
        conn.execute("SELECT count(*) FROM llm_requests").fetchall()
        return id(conn)

    async def read() -> None:
        seen.append(await pool.run(which))

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(read)
        assert len(seen) == 10
        assert 1 <= len(set(seen)) <= 2
    finally:
        pool.close()
    with pytest.raises(trio.ClosedResourceError):
        await pool.run(count_requests)


async def test_pool_is_read_only_and_reports_errors(database_url: str) -> None:
    db = database_url
    await write_all(db, RECORDS)
    pool = ReadPool(str(db), size=1)
    try:
        with pytest.raises((apsw.ReadOnlyError, DatabaseError)):
            await pool.run(lambda c: c.execute("DELETE FROM llm_requests"))
        with pytest.raises(TypeError, match="cursor"):
            await pool.run(lambda c: c.execute("SELECT * FROM llm_requests"))
        # A transaction left open by a read is rolled back, so the connection stays usable.
        await pool.run(begin)
        assert await pool.run(lambda c: c.in_transaction) is False
        assert await pool.run(count_requests) == len(RECORDS)
    finally:
        pool.close()
    assert query(db, "SELECT count(*) FROM llm_requests") == [(3,)]
