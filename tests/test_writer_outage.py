"""The writer through a database outage: records buffered up to a bound, the rest dropped and
counted, jobs refused at once, the buffer stored in order when the database is back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from storage import StorageWriter, open_connection
from storage.sql import DatabaseUnavailable
from tests.factories import make_record
from tests.postgres_server import PostgresServer
from tests.storage_backends import connect
from tests.test_writer import query


def request_ids(url: str) -> list[str]:
    conn = connect(url)
    try:
        return [row[0] for row in conn.execute("SELECT request_id FROM llm_requests ORDER BY id")]
    finally:
        conn.close()


async def wait_for(condition: object, timeout_s: float = 30.0) -> None:
    with trio.fail_after(timeout_s):
        while not condition():  # type: ignore[operator]
            await trio.sleep(0.02)


async def test_an_outage_buffers_up_to_the_bound_drops_the_rest_and_drains_when_back(
    postgres: PostgresServer, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llm_proxy.storage")
    writer = StorageWriter(postgres_url, max_batch=10, outage_buffer_records=50)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await writer.write_requests([make_record(i) for i in range(5)])
            await wait_for(lambda: writer.statistics().rows_written == 5)
            # The test cluster commits asynchronously (synchronous_commit=off): give its WAL
            # writer (every 200 ms) time to flush those commits before the crash.
            await trio.sleep(1.0)
            await trio.to_thread.run_sync(lambda: postgres.stop(kill=True))
            # Never waits on the database: each call returns at once, whatever it holds.
            with trio.fail_after(5):
                for i in range(5, 105):
                    await writer.write_requests([make_record(i)])
            await wait_for(lambda: writer.statistics().records_dropped == 50)
            stats = writer.statistics()
            assert not stats.up
            assert stats.down_since is not None
            assert (stats.buffered, stats.buffer_bound) == (50, 50)
            # A dashboard job fails at once with a clear error, not after its 10 s timeout.
            with trio.fail_after(3), pytest.raises(DatabaseUnavailable, match="unavailable"):
                await writer.execute(lambda conn: None)
            await trio.to_thread.run_sync(postgres.start)
            await wait_for(lambda: writer.statistics().up)
            stats = writer.statistics()
            assert (stats.buffered, stats.records_dropped, stats.rows_written) == (0, 50, 55)
            writer.close()
    finally:
        if not await trio.to_thread.run_sync(postgres._ready):
            await trio.to_thread.run_sync(postgres.start)
    # The first 50 of the outage, in their order; the 50 after the bound are gone.
    assert request_ids(postgres_url) == [f"req-{i}" for i in range(55)]
    messages = [record.getMessage() for record in caplog.records]
    assert sum("database unavailable" in m and "buffering up to 50" in m for m in messages) == 1
    assert sum("dropping new request records" in m for m in messages) == 1
    assert (
        sum(
            "database back after" in m and "stored 50 buffered records, dropped 50" in m
            for m in messages
        )
        == 1
    )


async def test_a_locked_sqlite_file_is_an_outage_too(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    writer = StorageWriter(str(db), max_batch=10, outage_buffer_records=20, busy_timeout_ms=20)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        blocker = open_connection(str(db))
        try:
            await trio.to_thread.run_sync(blocker.execute, "BEGIN IMMEDIATE")
            with trio.fail_after(5):
                for i in range(30):
                    await writer.write_requests([make_record(i)])
            await wait_for(lambda: writer.statistics().records_dropped == 10)
            stats = writer.statistics()
            assert (stats.up, stats.buffered) == (False, 20)
            with trio.fail_after(3), pytest.raises(DatabaseUnavailable):
                await writer.execute(lambda conn: None)
            await trio.to_thread.run_sync(blocker.execute, "ROLLBACK")
        finally:
            blocker.close()
        await wait_for(lambda: writer.statistics().up)
        writer.close()
    assert [row[0] for row in query(db, "SELECT request_id FROM llm_requests ORDER BY id")] == [
        f"req-{i}" for i in range(20)
    ]


async def test_closing_during_an_outage_gives_up_at_the_shutdown_deadline_and_says_how_many(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "w.db"
    writer = StorageWriter(str(db), max_batch=10, busy_timeout_ms=20, shutdown_timeout_s=1.0)
    blocker = open_connection(str(db))
    try:
        with trio.fail_after(10):  # the writer returns, though the database never came back
            async with trio.open_nursery() as nursery:
                await nursery.start(writer.run)
                await trio.to_thread.run_sync(blocker.execute, "BEGIN IMMEDIATE")
                await writer.write_requests([make_record(i) for i in range(25)])
                await wait_for(lambda: not writer.statistics().up)
                writer.close()
    finally:
        blocker.close()
    assert writer.statistics().rows_written == 0
    assert any(
        "25 records not stored: shutdown deadline of 1 s passed" in record.getMessage()
        for record in caplog.records
    )
