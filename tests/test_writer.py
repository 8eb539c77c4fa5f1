"""The StorageWriter actor: batching, rollups, jobs, shutdown, retries (real clock, real SQLite)."""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import apsw
import pytest
import trio
import trio.testing

from proxy.records import RequestRecord
from storage import StorageWriter, open_connection
from storage.sql import RowRejected
from tests.factories import T0, make_record
from tests.storage_backends import connect

HOUR_MS = 3_600_000


@asynccontextmanager
async def running_writer(path: Path | str, **options: object) -> AsyncIterator[StorageWriter]:
    writer = StorageWriter(str(path), **options)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        try:
            yield writer
        finally:
            writer.close()


def query(path: Path | str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """The rows of ``sql`` on the database at ``path`` (a SQLite path or a PostgreSQL URL)."""
    conn = connect(str(path))
    try:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


async def test_records_appear_with_all_columns(database_url: str) -> None:
    db = database_url
    full = make_record(
        1,
        stream=True,
        status="error",
        http_status=502,
        error_type="upstream_error",
        error_message="boom",
        reasoning_tokens=3,
        cached_tokens=2,
        has_images=True,
        ttft_ms=4.25,
        overhead_ms=0.75,
        request_body='{"model": "x"}',
        response_body='{"id": "y"}',
    )
    bare = RequestRecord(
        request_id="req-2",
        ts_ms=T0,
        client_id=None,
        provider=None,
        model="unknown",
        upstream_model=None,
        stream=False,
        status="cancelled",
        http_status=499,
    )
    async with running_writer(db) as writer:
        await writer.write_requests([full, bare])
    columns = [f.name for f in dataclasses.fields(RequestRecord)]
    rows = query(db, f"SELECT {', '.join(columns)} FROM llm_requests ORDER BY request_id")
    for record, row in zip([full, bare], rows, strict=True):
        expected = dataclasses.astuple(record)
        for name, want, got in zip(columns, expected, row, strict=True):
            assert got == want, name
    assert query(db, "SELECT stream, has_images FROM llm_requests ORDER BY request_id") == [
        (1, 1),
        (0, 0),
    ]


def burst() -> list[RequestRecord]:
    clients = ["client-a", "client-b", None]
    providers = ["openai", "gemini", None]
    records = []
    for i in range(2000):
        priced = i % 5 != 0
        records.append(
            make_record(
                i,
                ts_ms=T0 + (i % 3) * HOUR_MS + i,
                client_id=clients[i % 3],
                provider=providers[i % 7 % 3],
                model="unpriced-model" if i % 4 == 0 else "gpt-4o-mini",
                status=["ok", "ok", "error", "cancelled"][i % 4],
                prompt_tokens=i if i % 6 else None,
                completion_tokens=2 * i,
                reasoning_tokens=None if i % 2 else 1,
                cached_tokens=i % 11,
                cost_usd=None if i % 4 == 0 or not priced else i / 1000,
                latency_ms=float(i % 97),
            )
        )
    return records


async def test_burst_is_written_in_few_batches_with_exact_rollups(database_url: str) -> None:
    db = database_url
    records = burst()
    async with running_writer(db) as writer:
        for record in records:
            writer.write_requests_nowait([record])
        await writer.execute(lambda conn: None)  # runs after everything queued before it
        stats = writer.statistics()
    assert stats.rows_written == 2000
    assert stats.batches <= math.ceil(2000 / 500) + 2
    expected = query(
        db,
        """
        SELECT ts_ms / 3600000 * 3600000, coalesce(client_id, ''), coalesce(provider, ''), model,
               count(*), sum(CASE WHEN status != 'ok' THEN 1 ELSE 0 END),
               sum(coalesce(prompt_tokens, 0)),
               sum(coalesce(completion_tokens, 0)), sum(coalesce(reasoning_tokens, 0)),
               sum(coalesce(cached_tokens, 0)), sum(cost_usd), sum(latency_ms)
        FROM llm_requests GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        """,
    )
    rollup = query(
        db,
        """
        SELECT hour_ms, client_id, provider, model, requests, errors, prompt_tokens,
               completion_tokens, reasoning_tokens, cached_tokens, cost_usd, latency_ms_sum
        FROM usage_hourly ORDER BY 1, 2, 3, 4
        """,
    )
    assert len(rollup) == len(expected)
    for got, want in zip(rollup, expected, strict=True):
        assert got[:10] == want[:10]
        assert got[10] == pytest.approx(want[10])
        assert got[11] == pytest.approx(want[11])
    unpriced = [row for row in rollup if row[3] == "unpriced-model"]
    assert unpriced
    assert all(row[10] is None for row in unpriced)
    assert any(row[1] == "" for row in rollup)
    assert any(row[2] == "" for row in rollup)
    assert query(db, "SELECT sum(requests) FROM usage_hourly") == [(2000,)]


async def test_execute_returns_a_value_and_rolls_back_on_error(database_url: str) -> None:
    db = database_url

    def insert(conn: apsw.Connection, key: str) -> int:
        conn.execute(
            "INSERT INTO settings (key, value_json, updated_at) VALUES (?, '{}', 0)", (key,)
        )
        return conn.changes()

    def insert_then_fail(conn: apsw.Connection) -> None:
        insert(conn, "doomed")
        raise ValueError("nope")

    async with running_writer(db) as writer:
        assert await writer.execute(lambda conn: insert(conn, "kept")) == 1
        with pytest.raises(ValueError, match="nope"):
            await writer.execute(insert_then_fail)
        with pytest.raises((apsw.ConstraintError, RowRejected)):
            await writer.execute(lambda conn: insert(conn, "kept"))
        keys = await writer.execute(
            lambda conn: conn.execute("SELECT key FROM settings").fetchall()
        )
    assert [tuple(row) for row in keys] == [("kept",)]
    assert query(db, "SELECT key FROM settings") == [("kept",)]


async def test_jobs_queued_together_share_one_commit_each_in_its_own_savepoint(
    tmp_path: Path,
) -> None:
    db = tmp_path / "w.db"
    commits = 0
    release = threading.Event()

    def count_commit() -> bool:
        nonlocal commits
        commits += 1
        return False  # False lets the commit go ahead

    def insert(conn: apsw.Connection, key: str) -> str:
        conn.execute(
            "INSERT INTO settings (key, value_json, updated_at) VALUES (?, '{}', 0)", (key,)
        )
        if key == "doomed":
            raise ValueError("nope")
        return key

    results: dict[str, object] = {}

    async def store(key: str) -> None:
        try:
            results[key] = await writer.execute(partial(insert, key=key), shares_commit=True)
        except ValueError as exc:
            results[key] = exc

    async with running_writer(db) as writer:
        await writer.execute(lambda conn: conn.set_commit_hook(count_commit))
        async with trio.open_nursery() as nursery:
            # The writer is held in a job, so the next ones queue up behind it.
            nursery.start_soon(partial(writer.execute, lambda conn: release.wait(10)))
            await trio.testing.wait_all_tasks_blocked()
            for key in ("a", "doomed", "b", "c"):
                nursery.start_soon(store, key)
                await trio.testing.wait_all_tasks_blocked()
            # A plain job ends the group and runs after it: it sees the group's rows.
            nursery.start_soon(
                partial(
                    writer.execute,
                    lambda conn: results.update(
                        after=[r[0] for r in conn.execute("SELECT key FROM settings ORDER BY key")]
                    ),
                )
            )
            await trio.testing.wait_all_tasks_blocked()
            commits = 0
            release.set()
        grouped_commits = commits
    assert results["a"] == "a"
    assert results["b"] == "b"
    assert results["c"] == "c"
    assert isinstance(results["doomed"], ValueError)
    assert results["after"] == ["a", "b", "c"]
    # The held job, the group of four, the plain job after it.
    assert grouped_commits == 3
    assert query(db, "SELECT key FROM settings ORDER BY key") == [("a",), ("b",), ("c",)]


async def test_a_group_whose_commit_fails_fails_every_job_in_it(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    release = threading.Event()

    refuse = threading.Event()

    def insert(conn: apsw.Connection, key: str) -> None:
        conn.execute(
            "INSERT INTO settings (key, value_json, updated_at) VALUES (?, '{}', 0)", (key,)
        )
        if key == "x":
            refuse.set()  # the group's COMMIT is refused, after every job in it succeeded

    outcomes: dict[str, BaseException | None] = {}

    async def store(key: str) -> None:
        try:
            await writer.execute(partial(insert, key=key), shares_commit=True)
        except apsw.Error as exc:
            outcomes[key] = exc
        else:
            outcomes[key] = None

    async with running_writer(db) as writer:
        # A commit hook that refuses turns the COMMIT into a rollback (CONSTRAINT_COMMITHOOK).
        await writer.execute(lambda conn: conn.set_commit_hook(refuse.is_set))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(writer.execute, lambda conn: release.wait(10)))
            await trio.testing.wait_all_tasks_blocked()
            for key in ("x", "y"):
                nursery.start_soon(store, key)
                await trio.testing.wait_all_tasks_blocked()
            release.set()
        refuse.clear()
        # The writer goes on: a later job commits.
        await writer.execute(partial(insert, key="later"), shares_commit=True)
    assert all(isinstance(outcomes[key], apsw.Error) for key in ("x", "y"))
    assert query(db, "SELECT key FROM settings ORDER BY key") == [("later",)]


async def test_close_with_records_queued_loses_nothing_and_truncates_wal(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    # An idle reader keeps the WAL file from being deleted at close, so its size is observable.
    reader = open_connection(str(db))
    try:
        async with running_writer(db) as writer:
            for start in range(0, 5000, 100):
                writer.write_requests_nowait([make_record(i) for i in range(start, start + 100)])
            assert writer.statistics().queued == 5000
            writer.close()
            with pytest.raises(trio.ClosedResourceError):
                await writer.write_requests([make_record(-1)])
        stats = writer.statistics()
        assert stats.closed
        assert stats.queued == 0
        assert stats.rows_written == 5000
        assert stats.checkpoints >= 1
        assert reader.execute("SELECT count(*) FROM llm_requests").fetchall() == [(5000,)]
        assert os.path.getsize(f"{db}-wal") == 0
    finally:
        reader.close()


async def test_cancelled_run_still_stores_what_was_accepted(database_url: str) -> None:
    db = database_url
    writer = StorageWriter(str(db))
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for start in range(0, 1000, 10):
            writer.write_requests_nowait([make_record(i) for i in range(start, start + 10)])
        nursery.cancel_scope.cancel()
    assert writer.statistics().rows_written == 1000
    assert query(db, "SELECT count(*) FROM llm_requests") == [(1000,)]


async def test_check_writable(database_url: str) -> None:
    async with running_writer(database_url) as writer:
        assert await writer.check_writable()
    assert not await writer.check_writable()


async def test_statistics_count_the_work(database_url: str) -> None:
    async with running_writer(database_url, max_batch=50) as writer:
        initial = writer.statistics()
        assert (initial.queued, initial.rows_written, initial.batches) == (0, 0, 0)
        await writer.write_requests([make_record(i) for i in range(120)])
        await writer.execute(lambda conn: None)
        stats = writer.statistics()
        assert stats.rows_written == 120
        assert stats.batches == 3
        assert stats.last_batch_rows == 20
        assert stats.queued == 0
        assert 0 < stats.last_flush_ms <= stats.max_flush_ms
        assert stats.write_errors == 0
        assert stats.rows_rejected == 0
        assert not stats.closed


async def test_partial_batch_waits_at_most_max_delay(database_url: str) -> None:
    async with running_writer(database_url, max_delay_s=0.05) as writer:
        await writer.write_requests([make_record(1)])
        with trio.fail_after(2):
            while writer.statistics().rows_written < 1:
                await trio.sleep(0.01)


async def test_idle_inbox_triggers_a_checkpoint(tmp_path: Path) -> None:
    async with running_writer(tmp_path / "w.db", idle_checkpoint_s=0.1) as writer:
        await writer.write_requests([make_record(1)])
        with trio.fail_after(5):
            while writer.statistics().checkpoints < 1:
                await trio.sleep(0.02)
        assert writer.statistics().rows_written == 1


async def test_nowait_raises_would_block_when_inbox_full(database_url: str) -> None:
    writer = StorageWriter(database_url, inbox_size=1)
    writer.write_requests_nowait([make_record(1)])
    with pytest.raises(trio.WouldBlock):
        writer.write_requests_nowait([make_record(2)])
    assert writer.statistics().queued == 1


async def test_batch_on_locked_database_is_retried_until_it_lands(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    async with running_writer(db, busy_timeout_ms=20) as writer:
        blocker = open_connection(str(db))
        try:
            await trio.to_thread.run_sync(blocker.execute, "BEGIN IMMEDIATE")
            await writer.write_requests([make_record(i) for i in range(10)])
            await trio.sleep(0.5)
            assert writer.statistics().rows_written == 0
            assert writer.statistics().write_errors >= 1
            await trio.to_thread.run_sync(blocker.execute, "ROLLBACK")
        finally:
            blocker.close()
        await writer.execute(lambda conn: None)
        assert writer.statistics().rows_written == 10
    assert query(db, "SELECT count(*) FROM llm_requests") == [(10,)]
    assert query(db, "SELECT sum(requests) FROM usage_hourly") == [(10,)]


async def test_bad_row_is_rejected_without_blocking_the_rest(database_url: str) -> None:
    db = database_url
    records = [make_record(i) for i in range(5)]
    records[2] = make_record(2, status="bogus")
    async with running_writer(db) as writer:
        await writer.write_requests(records)
        await writer.execute(lambda conn: None)
        stats = writer.statistics()
    assert stats.rows_written == 4
    assert stats.rows_rejected == 1
    assert query(db, "SELECT request_id FROM llm_requests ORDER BY id") == [
        ("req-0",),
        ("req-1",),
        ("req-3",),
        ("req-4",),
    ]
    assert query(db, "SELECT sum(requests) FROM usage_hourly") == [(4,)]


async def test_without_request_rows_only_the_hourly_totals_are_written(
    database_url: str,
) -> None:
    path = database_url
    writer = StorageWriter(str(path), record_requests=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await writer.write_requests([make_record(i) for i in range(10)])
        writer.close()
    assert query(path, "SELECT count(*) FROM llm_requests") == [(0,)]
    assert query(path, "SELECT sum(requests), sum(prompt_tokens) FROM usage_hourly") == [(10, 100)]


async def test_a_value_out_of_range_rejects_only_its_row(database_url: str) -> None:
    records = [make_record(i) for i in range(4)]
    records[1] = make_record(1, prompt_tokens=2**63)  # past a 64-bit integer on either backend
    async with running_writer(database_url) as writer:
        await writer.write_requests(records)
        await writer.execute(lambda conn: None)
        stats = writer.statistics()
    assert (stats.rows_written, stats.rows_rejected) == (3, 1)
    assert query(database_url, "SELECT request_id FROM llm_requests ORDER BY id") == [
        ("req-0",),
        ("req-2",),
        ("req-3",),
    ]
    assert query(database_url, "SELECT sum(requests) FROM usage_hourly") == [(3,)]
