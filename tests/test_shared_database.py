"""One SQLite file shared by several processes: busy waits bounded and counted, migrations once,
one first admin, no record lost when two writers write at once (real processes, real SQLite)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import apsw
import pytest
import trio

from storage import StorageWriter, open_connection
from storage.connection import BusyWaits
from tests.factories import make_record
from tests.process import ROOT, clean_env


def _hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another connection holds the write lock for ``seconds`` (in a thread), then lets go."""
    locked = threading.Event()

    def hold() -> None:
        conn = open_connection(str(path))
        try:
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(seconds)
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(5)
    return thread


def test_a_busy_wait_is_counted_and_ends_when_the_lock_is_free(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    open_connection(str(db)).close()
    waits = BusyWaits()
    conn = open_connection(str(db), busy_timeout_ms=5000, busy_waits=waits)
    try:
        holder = _hold_write_lock(db, 0.2)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        holder.join()
    finally:
        conn.close()
    stats = waits.statistics()
    assert stats.waits == 1
    assert stats.timeouts == 0
    assert stats.waited_s > 0.05


def test_a_busy_wait_is_bounded_and_its_timeout_counted(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    open_connection(str(db)).close()
    waits = BusyWaits()
    conn = open_connection(str(db), busy_timeout_ms=100, busy_waits=waits)
    try:
        holder = _hold_write_lock(db, 1.0)
        with pytest.raises(apsw.BusyError):
            conn.execute("BEGIN IMMEDIATE")
        holder.join()
    finally:
        conn.close()
    stats = waits.statistics()
    assert stats.waits == 1
    assert stats.timeouts == 1
    assert 0.08 < stats.waited_s < 0.9


async def test_the_writer_counts_its_busy_waits(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    writer = StorageWriter(str(db))
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        try:
            holder = await trio.to_thread.run_sync(_hold_write_lock, db, 0.2)
            await writer.write_requests([make_record(1)])
            await writer.execute(lambda conn: None)
            await trio.to_thread.run_sync(holder.join)
            stats = writer.statistics()
        finally:
            writer.close()
    assert stats.rows_written == 1
    assert stats.busy_waits >= 1
    assert stats.busy_timeouts == 0


_START_WRITER = """
import sys, time, trio
from storage import StorageWriter
from tests.factories import make_record

async def main(path, name, count, start_at):
    writer = StorageWriter(path, max_batch=50, max_delay_s=0.001)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await trio.sleep(max(0.0, start_at - time.time()))
        for i in range(count):
            await writer.write_requests([make_record(i, request_id=f"{name}-{i}")])
            if i % 25 == 0:
                await trio.sleep(0)
        writer.close()
    print(writer.statistics().busy_waits)

trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
"""


def test_two_processes_writing_at_once_lose_no_record(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    start_at = time.time() + 1.5
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _START_WRITER, str(db), name, "2000", str(start_at)],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    conn = open_connection(str(db), readonly=True)
    try:
        ((rows,),) = conn.execute("SELECT count(*) FROM llm_requests").fetchall()
        ((distinct,),) = conn.execute(
            "SELECT count(DISTINCT request_id) FROM llm_requests"
        ).fetchall()
        ((total,),) = conn.execute("SELECT sum(requests) FROM usage_hourly").fetchall()
    finally:
        conn.close()
    assert (rows, distinct, total) == (4000, 4000, 4000)


_MIGRATE_AND_ADMIN = """
import logging, sys, time, trio
logging.basicConfig(level=logging.INFO, format="%(message)s")
from proxy.passwords import Passwords
from storage import StorageWriter
from web.first_admin import ensure_first_admin

async def main(path, start_at):
    passwords = await trio.to_thread.run_sync(Passwords)
    time.sleep(max(0.0, start_at - time.time()))
    writer = StorageWriter(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await ensure_first_admin(writer, passwords, path, now_ms=int(time.time() * 1000))
        writer.close()

trio.run(main, sys.argv[1], float(sys.argv[2]))
"""


def test_three_processes_on_a_new_file_migrate_once_and_make_one_admin(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    start_at = time.time() + 2.0
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_AND_ADMIN, str(db), str(start_at)],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    logs = "".join(err for _, err in outputs)
    from storage.migrations import MIGRATIONS

    # Each version is reached once, by whichever process took the lock first.
    for version in range(1, len(MIGRATIONS) + 1):
        assert logs.count(f"database migrated to schema version {version}\n") == 1, logs
    assert logs.count("first start: created user 'admin'") == 1, logs
    conn = open_connection(str(db), readonly=True)
    try:
        assert conn.execute("SELECT username FROM users").fetchall() == [("admin",)]
        assert int(conn.pragma("user_version")) == len(MIGRATIONS)
        assert int(conn.pragma("auto_vacuum")) == 2
    finally:
        conn.close()
    password_file = tmp_path / "llm-proxy-initial-admin-password"
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob(".llm-proxy-initial-admin-password.*"))
