"""``llm-proxy backup [PATH]`` as a real process, beside a gateway that keeps writing."""

from __future__ import annotations

import os
import stat
from functools import partial
from pathlib import Path

import apsw
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import StartGateway, logged, sdk
from tests.test_cli import clean_env, run_cli


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> RunningService:
    # No provider key: the in-process mock answers model "mock".
    return await start_gateway(
        {
            "limits": {"default_client_requests_per_minute": 0},
            "providers": {"ollama": {"enabled": False}},
        }
    )


def database_of(gateway: RunningService) -> Path:
    return Path(gateway.gateway.config.server.database)


def count_rows(path: Path) -> int:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        ((count,),) = conn.execute("SELECT count(*) FROM llm_requests").fetchall()
        return int(count)  # type: ignore[call-overload]
    finally:
        conn.close()


def check_copy(path: Path) -> int:
    """The copy's row count, after checking it is a sound, private database."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    return count_rows(path)


async def backup(*args: str) -> tuple[int, str, str]:
    result = await trio.to_thread.run_sync(partial(run_cli, "backup", *args, env=clean_env()))
    return result.returncode, result.stdout, result.stderr


async def keep_calling(gateway: RunningService, calls: list[int]) -> None:
    """Make calls one after the other until cancelled."""
    async with sdk(gateway) as client:
        while True:
            await client.chat.completions.create(
                model="mock", messages=[{"role": "user", "content": f"call {len(calls)}"}]
            )
            calls.append(1)


async def test_backup_while_the_gateway_writes(gateway: RunningService, tmp_path: Path) -> None:
    database = database_of(gateway)
    calls: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(keep_calling, gateway, calls)
        await logged(gateway, 20)
        committed = await trio.to_thread.run_sync(count_rows, database)
        code, stdout, stderr = await backup("--database", str(database))
        assert code == 0, stderr
        written_during = len(calls)
        # Calls went on meanwhile (the backup blocked nothing).
        with trio.fail_after(10):
            while len(calls) < written_during + 5:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    copy = Path(stdout.strip())
    assert copy.parent == tmp_path / "backups"
    assert copy.name.startswith("llm-proxy-")
    assert f"{copy.stat().st_size:,} bytes" in stderr
    assert check_copy(copy) >= committed >= 20


async def test_backup_to_a_named_file(gateway: RunningService, tmp_path: Path) -> None:
    await make_calls(gateway, 3)
    target = tmp_path / "elsewhere" / "copy.db"
    target.parent.mkdir()
    code, stdout, stderr = await backup("--database", str(database_of(gateway)), str(target))
    assert code == 0, stderr
    assert stdout.strip() == str(target)
    assert check_copy(target) == 3
    assert os.listdir(target.parent) == ["copy.db"]


async def test_backup_into_a_directory(gateway: RunningService, tmp_path: Path) -> None:
    await make_calls(gateway, 2)
    directory = tmp_path / "dumps"
    directory.mkdir()
    code, stdout, stderr = await backup("--database", str(database_of(gateway)), str(directory))
    assert code == 0, stderr
    copy = Path(stdout.strip())
    assert copy.parent == directory
    assert copy.name.startswith("llm-proxy-")
    assert copy.name.endswith(".db")
    assert check_copy(copy) == 2
    assert os.listdir(directory) == [copy.name]


async def test_an_existing_file_is_never_overwritten(
    gateway: RunningService, tmp_path: Path
) -> None:
    target = tmp_path / "precious.db"
    target.write_text("keep me")
    code, stdout, stderr = await backup("--database", str(database_of(gateway)), str(target))
    assert code == 2
    assert stdout == ""
    assert "already exists" in stderr
    assert target.read_text() == "keep me"
    # Nothing else was left behind next to it (no temporary file).
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


async def test_missing_database_or_directory(tmp_path: Path) -> None:
    code, _, stderr = await backup("--database", str(tmp_path / "none.db"))
    assert code == 2
    assert "no database" in stderr
    assert not (tmp_path / "none.db").exists()


async def test_help_explains_the_restore() -> None:
    code, stdout, _ = await backup("--help")
    assert code == 0
    text = " ".join(stdout.split())
    assert "stop the service" in text
    assert "-wal and -shm" in text


async def make_calls(gateway: RunningService, count: int) -> None:
    async with sdk(gateway) as client:
        for n in range(count):
            await client.chat.completions.create(
                model="mock", messages=[{"role": "user", "content": f"call {n}"}]
            )
    await logged(gateway, count)
    # logged() reads through the gateway's pool; the CLI opens the file itself, so wait until
    # a fresh connection sees the rows too.
    with trio.fail_after(10):
        while await trio.to_thread.run_sync(count_rows, database_of(gateway)) < count:
            await trio.sleep(0.02)
