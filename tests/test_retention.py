"""Retention: old request rows go in small batches, the hourly history stays, the file shrinks."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import apsw
import pytest
import trio

from actors.retention import Retention
from storage import open_connection
from storage.retention import (
    DAY_MS,
    cutoff_ms,
    delete_requests_before,
    freelist_pages,
    incremental_vacuum,
)
from storage.writer import StorageWriter
from tests.conftest import StartGateway, logged, sdk
from tests.factories import T0, make_record
from tests.test_writer import query, running_writer


def is_postgres_url(where: str) -> bool:
    return where.startswith("postgresql://")


retention_module = importlib.import_module("actors.retention")

T = TypeVar("T")

NOW = T0 + 100 * DAY_MS
OLD = 5000
NEW = 300
BODY = "x" * 1500  # so that the deleted rows free a good number of pages


class CountingWriter:
    """The real writer, counting the jobs sent to it and the rows each delete job removed."""

    def __init__(self, writer: StorageWriter) -> None:
        self.writer = writer
        self.deletes: list[int] = []
        self.vacuums: list[int] = []

    async def execute(self, fn: Callable[[apsw.Connection], T], *, timeout_s: float = 10.0) -> T:
        result = await self.writer.execute(fn, timeout_s=timeout_s)
        name = getattr(getattr(fn, "func", fn), "__name__", "")
        if name == "delete_requests_before":
            self.deletes.append(result)  # type: ignore[arg-type]
        elif name == "incremental_vacuum":
            self.vacuums.append(result)  # type: ignore[arg-type]
        return result


async def fill(writer: StorageWriter) -> None:
    """OLD rows from 100 days ago and NEW rows from yesterday, bodies included."""
    old = [make_record(i, ts_ms=T0 + i, request_body=BODY) for i in range(OLD)]
    new = [
        make_record(OLD + i, ts_ms=NOW - DAY_MS + i * 1000, request_body=BODY) for i in range(NEW)
    ]
    for start in range(0, len(old), 500):
        await writer.write_requests(old[start : start + 500])
    await writer.write_requests(new)
    await writer.execute(lambda conn: None)  # returns once every record before it is stored


def usage_hourly(db: Path | str) -> list[tuple[object, ...]]:
    return query(db, "SELECT * FROM usage_hourly ORDER BY hour_ms, client_id, provider, model")


def counts(db: Path | str) -> tuple[int, int]:
    """(rows older than 30 days, newer rows)."""
    cutoff = NOW - 30 * DAY_MS
    ((old, new),) = query(
        db,
        "SELECT sum(CASE WHEN ts_ms < ? THEN 1 ELSE 0 END),"
        " sum(CASE WHEN ts_ms >= ? THEN 1 ELSE 0 END) FROM llm_requests",
        (cutoff, cutoff),
    )
    return int(old or 0), int(new or 0)  # type: ignore[call-overload]


def pragma(db: Path, name: str) -> int:
    conn = open_connection(str(db), readonly=True)
    try:
        return int(conn.pragma(name))
    finally:
        conn.close()


def test_cutoff() -> None:
    assert cutoff_ms(NOW, 30) == NOW - 30 * DAY_MS
    assert cutoff_ms(NOW, 0) is None
    with pytest.raises(ValueError, match="must not be negative"):
        cutoff_ms(NOW, -1)


async def test_old_rows_go_in_batches_and_the_history_stays(database_url: str) -> None:
    db = database_url
    sqlite = not is_postgres_url(db)
    async with running_writer(db) as writer:
        await fill(writer)
        history = usage_hourly(db)
        assert history
        assert counts(db) == (OLD, NEW)
        pages_before = pragma(db, "page_count") if sqlite else 0

        spy = CountingWriter(writer)
        retention = Retention(
            spy, 30, batch_rows=1000, pause_s=0, clock_ms=lambda: NOW, vacuum=sqlite
        )
        assert await retention.prune_once() == OLD

        assert counts(db) == (0, NEW)
        # Five full batches, then one that found nothing left: never more than 1000 at once.
        assert spy.deletes == [1000, 1000, 1000, 1000, 1000, 0]
        assert usage_hourly(db) == history
        if sqlite:
            # The freed pages were given back: the file shrank and has no free pages left.
            assert sum(spy.vacuums) > 0
            assert pragma(db, "freelist_count") == 0
            assert pragma(db, "page_count") <= pages_before - sum(spy.vacuums)
        else:
            # The server reuses the space itself (autovacuum): no vacuum step is sent.
            assert spy.vacuums == []

        stats = retention.statistics()
        assert (stats.passes, stats.rows_deleted, stats.last_rows_deleted) == (1, OLD, OLD)
        assert stats.pages_freed == sum(spy.vacuums)
        assert stats.last_run_ms == NOW
        assert (stats.errors, stats.running) == (0, False)

        # A second pass finds nothing to do and does not vacuum.
        assert await retention.prune_once() == 0
        assert spy.deletes[-1] == 0
        assert retention.statistics().passes == 2


async def test_vacuum_runs_in_bounded_steps(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    async with running_writer(db) as writer:
        await fill(writer)
        spy = CountingWriter(writer)
        retention = Retention(
            spy,
            30,
            batch_rows=1000,
            vacuum_pages=10,
            max_vacuum_steps=3,
            pause_s=0,
            clock_ms=lambda: NOW,
        )
        await retention.prune_once()
        # Three steps of ten pages; the rest of the free pages wait for the next pass.
        assert spy.vacuums == [10, 10, 10]
        assert pragma(db, "freelist_count") > 0
        assert counts(db) == (0, NEW)


async def test_storage_functions(database_url: str) -> None:
    db = database_url
    async with running_writer(db) as writer:
        await fill(writer)
        cutoff = NOW - 30 * DAY_MS
        deleted = await writer.execute(
            lambda conn: delete_requests_before(conn, before_ms=cutoff, limit=1234)
        )
        assert deleted == 1234
        # The oldest go first.
        ((oldest,),) = query(db, "SELECT min(ts_ms) FROM llm_requests")
        assert oldest == T0 + 1234
        with pytest.raises(ValueError, match="limit must be positive"):
            await writer.execute(lambda conn: delete_requests_before(conn, before_ms=0, limit=0))
        if is_postgres_url(db):
            # Nothing to give back by hand: PostgreSQL's autovacuum reuses the space.
            assert await writer.execute(freelist_pages) == 0
            assert await writer.execute(lambda conn: incremental_vacuum(conn, pages=5)) == 0
            return
        free = await writer.execute(freelist_pages)
        assert free > 0
        freed = await writer.execute(lambda conn: incremental_vacuum(conn, pages=5))
        assert freed == 5
        assert await writer.execute(freelist_pages) == free - 5


async def test_zero_days_keeps_everything(database_url: str) -> None:
    db = database_url
    async with running_writer(db) as writer:
        await fill(writer)
        spy = CountingWriter(writer)
        retention = Retention(spy, 0, first_run_after_s=0, run_every_s=0.01, clock_ms=lambda: NOW)
        assert await retention.prune_once() == 0
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.run)
            await trio.sleep(0.2)
            retention.close()
        assert spy.deletes == []
        assert counts(db) == (OLD, NEW)
        assert retention.statistics().retention_days == 0
        assert retention.statistics().passes == 0


async def test_runs_after_a_delay_then_periodically(database_url: str) -> None:
    db = database_url
    async with running_writer(db) as writer:
        await fill(writer)
        now = [NOW]
        retention = Retention(
            writer, 30, first_run_after_s=0.05, run_every_s=0.05, pause_s=0, clock_ms=lambda: now[0]
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(retention.run)
            with trio.fail_after(10):
                while retention.statistics().rows_deleted < OLD:
                    await trio.sleep(0.01)
            assert counts(db) == (0, NEW)
            # Time passes: the rows of yesterday fall out of the window at a later pass.
            now[0] = NOW + 40 * DAY_MS
            with trio.fail_after(10):
                while retention.statistics().rows_deleted < OLD + NEW:
                    await trio.sleep(0.01)
            retention.close()
        assert counts(db) == (0, 0)
        assert query(db, "SELECT count(*) FROM usage_hourly") != [(0,)]


async def test_a_failed_pass_is_counted_and_retried(tmp_path: Path) -> None:
    class Broken:
        calls = 0

        async def execute(self, fn: Any, *, timeout_s: float = 10.0) -> Any:
            self.calls += 1
            raise apsw.BusyError("database is locked")

    broken = Broken()
    retention = Retention(broken, 30, first_run_after_s=0, run_every_s=0.01, clock_ms=lambda: NOW)
    async with trio.open_nursery() as nursery:
        await nursery.start(retention.run)
        with trio.fail_after(10):
            while broken.calls < 3:
                await trio.sleep(0.01)
        retention.close()
    stats = retention.statistics()
    assert stats.errors >= 3
    assert not stats.running


async def test_the_service_prunes_at_start(
    tmp_path: Path, start_gateway: StartGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows from long ago, already in the database the gateway opens.
    async with running_writer(tmp_path / "gateway.db") as writer:
        await writer.write_requests([make_record(i) for i in range(50)])
        await writer.execute(lambda conn: None)
    ((hours_before,),) = query(tmp_path / "gateway.db", "SELECT sum(requests) FROM usage_hourly")
    monkeypatch.setattr(retention_module, "FIRST_RUN_AFTER_S", 0.05)
    gateway = await start_gateway(
        {"logging": {"retention_days": 30}, "providers": {"ollama": {"enabled": False}}}
    )
    async with sdk(gateway) as client:
        await client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "still here"}]
        )
    await logged(gateway)
    with trio.fail_after(10):
        while query(tmp_path / "gateway.db", "SELECT count(*) FROM llm_requests") != [(1,)]:
            await trio.sleep(0.02)
    # The hourly totals still count the pruned calls, and the new one.
    ((hours_after,),) = query(tmp_path / "gateway.db", "SELECT sum(requests) FROM usage_hourly")
    assert (hours_before, hours_after) == (50, 51)
