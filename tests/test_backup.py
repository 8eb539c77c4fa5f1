"""Online backups: a valid copy of every row, unique names, private files, no leftovers."""

from __future__ import annotations

import os
import re
import resource
import signal
import stat
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import apsw
import pytest
import trio

from storage import ReadPool, create_client, migrate, open_connection
from storage.audit import record_audit
from storage.backup import (
    BackupError,
    BackupResult,
    backup_database,
    backup_directory,
    list_backups,
)
from storage.model_settings import put_model_settings
from storage.provider_settings import put_provider_settings
from storage.settings_store import put_settings
from storage.transaction import in_immediate_transaction
from storage.users import create_user
from tests.factories import make_record
from tests.test_writer import running_writer

NOW = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
NAME_AT_NOW = "llm-proxy-20231114-221320.db"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "llm-proxy.db"
    path.parent.mkdir()
    conn = open_connection(str(path))
    try:
        migrate(conn)
    finally:
        conn.close()
    return path


@pytest.fixture
def reader(db: Path) -> Iterator[apsw.Connection]:
    """A read-only connection, outside any transaction, as the read pool and the CLI use."""
    conn = open_connection(str(db), readonly=True)
    try:
        yield conn
    finally:
        conn.close()


async def populate(db: Path) -> None:
    """Some rows in every table, written the way the server writes them."""
    async with running_writer(db) as writer:
        await writer.write_requests([make_record(i) for i in range(250)])
        for i in range(3):
            await writer.execute(partial(create_client, name=f"client {i}", now_ms=NOW))
        await writer.execute(
            partial(create_user, username="root", password_hash="h", role="admin", now_ms=NOW)
        )
        await writer.execute(
            partial(put_provider_settings, provider="openai", credit_balance_usd=3.5, now_ms=NOW)
        )
        await writer.execute(partial(put_model_settings, model="fast", enabled=False, now_ms=NOW))
        await writer.execute(partial(put_settings, values={"ui.theme": "dark"}, now_ms=NOW))
        await writer.execute(partial(record_audit, username="root", action="a.b", now_ms=NOW))


def table_counts(path: Path | str) -> dict[str, int]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        tables = [
            str(name)
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                " ORDER BY name"
            ).fetchall()
        ]
        return {
            table: int(conn.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0])  # type: ignore[arg-type]
            for table in tables
        }
    finally:
        conn.close()


def open_copy(path: str) -> apsw.Connection:
    return apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)


def files_in(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


# --- the copy -------------------------------------------------------------------------------------


def test_backup_directory_is_beside_the_database(db: Path) -> None:
    assert backup_directory(str(db)) == db.parent / "backups"
    assert backup_directory("relative.db") == Path.cwd() / "backups"
    with pytest.raises(ValueError, match="no directory"):
        backup_directory(":memory:")


async def test_backup_is_a_valid_copy_with_every_row(db: Path) -> None:
    await populate(db)
    reader = open_connection(str(db), readonly=True)
    try:
        result = backup_database(reader, str(db), now_ms=NOW)
    finally:
        reader.close()
    directory = db.parent / "backups"
    assert result == BackupResult(
        path=str(directory / NAME_AT_NOW),
        size_bytes=os.stat(result.path).st_size,
        created_at_ms=NOW,
    )
    assert result.size_bytes > 0
    # Private: the directory to its owner, the file to its owner.
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(result.path).st_mode) == 0o600
    assert files_in(directory) == [NAME_AT_NOW]  # no temporary file left beside it
    counts = table_counts(result.path)
    assert counts == table_counts(db)
    assert counts["llm_requests"] == 250
    assert counts["clients"] == counts["client_tokens"] == 3
    for table in ("users", "provider_settings", "model_settings", "audit_log"):
        assert counts[table] == 1, table
    copy = open_copy(result.path)
    source = open_connection(str(db), readonly=True)
    try:
        assert copy.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        assert copy.pragma("user_version") == source.pragma("user_version")
        for query in (
            "SELECT * FROM llm_requests ORDER BY id",
            "SELECT * FROM usage_hourly ORDER BY 1, 2, 3, 4",
            "SELECT * FROM settings ORDER BY key",
            "SELECT * FROM users",
        ):
            assert copy.execute(query).fetchall() == source.execute(query).fetchall(), query
    finally:
        copy.close()
        source.close()


def test_backups_in_the_same_second_get_unique_names(db: Path, reader: apsw.Connection) -> None:
    first = backup_database(reader, str(db), now_ms=NOW)
    second = backup_database(reader, str(db), now_ms=NOW + 400)
    third = backup_database(reader, str(db), now_ms=NOW + 999)
    later = backup_database(reader, str(db), now_ms=NOW + 1000)
    names = [Path(r.path).name for r in (first, second, third, later)]
    assert names == [
        NAME_AT_NOW,
        "llm-proxy-20231114-221320-1.db",
        "llm-proxy-20231114-221320-2.db",
        "llm-proxy-20231114-221321.db",
    ]
    for result in (first, second, third, later):
        assert table_counts(result.path) == table_counts(db)
    # Newest first, to the second; -N orders backups of the same second.
    assert [Path(r.path).name for r in list_backups(str(db))] == names[::-1]
    assert list_backups(str(db))[0].created_at_ms == NOW + 1000
    assert list_backups(str(db))[-1] == BackupResult(first.path, first.size_bytes, NOW)


def test_a_target_that_appeared_is_never_overwritten(db: Path, reader: apsw.Connection) -> None:
    directory = db.parent / "backups"
    directory.mkdir(mode=0o755)
    (directory / NAME_AT_NOW).write_bytes(b"somebody else's file")
    result = backup_database(reader, str(db), now_ms=NOW)
    assert Path(result.path).name == "llm-proxy-20231114-221320-1.db"
    assert (directory / NAME_AT_NOW).read_bytes() == b"somebody else's file"
    # An existing directory keeps the mode its owner gave it.
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755


def test_list_backups(db: Path, reader: apsw.Connection) -> None:
    assert list_backups(str(db)) == []  # no directory yet
    result = backup_database(reader, str(db), now_ms=NOW)
    directory = Path(result.path).parent
    (directory / "notes.txt").write_text("x")
    (directory / ".llm-proxy-20231114-221320-abcd.db.tmp").write_bytes(b"partial")
    (directory / "llm-proxy-20231114-221399.db").write_bytes(b"x")  # not a time
    (directory / "llm-proxy-20240101-000000.db").write_bytes(b"")  # a name being claimed
    (directory / "llm-proxy-20240102-000000.db").symlink_to(result.path)
    assert list_backups(str(db)) == [BackupResult(result.path, result.size_bytes, NOW)]


# --- how the server and the CLI call it -----------------------------------------------------------


async def test_backup_on_the_read_pool_while_the_writer_writes(db: Path) -> None:
    pool = ReadPool(str(db), size=2)
    try:
        async with running_writer(db) as writer:
            await writer.write_requests([make_record(i) for i in range(100)])
            await writer.execute(partial(create_client, name="c", now_ms=NOW))
            results: list[BackupResult] = []

            async def backup() -> None:
                results.append(
                    await pool.run(partial(backup_database, database_path=str(db), now_ms=NOW))
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(backup)
                nursery.start_soon(backup)
                nursery.start_soon(writer.write_requests, [make_record(i) for i in range(100, 200)])
            # The writer still takes its lock: a backup only reads.
            assert await writer.check_writable()
    finally:
        pool.close()
    assert {Path(r.path).name for r in results} == {NAME_AT_NOW, "llm-proxy-20231114-221320-1.db"}
    for result in results:
        counts = table_counts(result.path)
        assert counts["clients"] == 1
        # A consistent snapshot: the first 100 records at least, whole batches only.
        assert counts["llm_requests"] in (100, 200)


async def test_backup_cannot_run_as_a_writer_job(db: Path) -> None:
    async with running_writer(db) as writer:
        with pytest.raises(RuntimeError, match="cannot run inside a transaction"):
            await writer.execute(partial(backup_database, database_path=str(db), now_ms=NOW))
    assert files_in(db.parent / "backups") == []


# --- failures leave nothing behind ----------------------------------------------------------------


def test_inside_a_transaction_is_refused(db: Path) -> None:
    conn = open_connection(str(db))
    try:
        with pytest.raises(RuntimeError, match="inside a transaction"):
            in_immediate_transaction(
                conn, partial(backup_database, database_path=str(db), now_ms=NOW)
            )
    finally:
        conn.close()
    assert files_in(db.parent / "backups") == []


def test_backup_directory_that_is_a_file(db: Path, reader: apsw.Connection) -> None:
    (db.parent / "backups").write_text("not a directory")
    with pytest.raises(NotADirectoryError):
        backup_database(reader, str(db), now_ms=NOW)
    assert (db.parent / "backups").read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_unwritable_backup_directory(db: Path, reader: apsw.Connection) -> None:
    directory = db.parent / "backups"
    directory.mkdir(mode=0o500)
    try:
        with pytest.raises(PermissionError):
            backup_database(reader, str(db), now_ms=NOW)
    finally:
        directory.chmod(0o700)
    assert files_in(directory) == []


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE behaviour checked on Linux")
def test_a_copy_that_cannot_be_written_whole_is_removed(db: Path, reader: apsw.Connection) -> None:
    # The file size limit makes the copy fail halfway, as a full disk would.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, hard))
    try:
        with pytest.raises(apsw.Error):
            backup_database(reader, str(db), now_ms=NOW)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert files_in(db.parent / "backups") == []
    # The connection is fine afterwards.
    assert backup_database(reader, str(db), now_ms=NOW).size_bytes > 16 * 1024


def test_a_copy_that_fails_its_check_is_removed(
    db: Path, reader: apsw.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_check(path: Path, user_version: int) -> None:
        assert path.stat().st_size > 0  # the copy was written...
        raise BackupError("quick_check: *** in database main ***")

    monkeypatch.setattr("storage.backup._verify", broken_check)
    with pytest.raises(BackupError, match="quick_check"):
        backup_database(reader, str(db), now_ms=NOW)
    assert files_in(db.parent / "backups") == []  # ...and removed


def test_a_failure_after_claiming_the_name_removes_both_files(
    db: Path, reader: apsw.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_replace(src: object, dst: object) -> None:
        assert Path(str(dst)).name == NAME_AT_NOW
        assert Path(str(dst)).exists()  # claimed, empty
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("storage.backup.os.replace", failing_replace)
    with pytest.raises(OSError, match="Input/output error"):
        backup_database(reader, str(db), now_ms=NOW)
    assert files_in(db.parent / "backups") == []


def test_verify_rejects_a_corrupt_file(tmp_path: Path) -> None:
    from storage.backup import _verify

    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    with pytest.raises((BackupError, apsw.Error)):
        _verify(bogus, 3)


def test_verify_checks_the_schema_version(db: Path, reader: apsw.Connection) -> None:
    from storage.backup import _verify

    result = backup_database(reader, str(db), now_ms=NOW)
    _verify(Path(result.path), int(reader.pragma("user_version")))
    with pytest.raises(BackupError, match=re.escape("schema version")):
        _verify(Path(result.path), 999)
