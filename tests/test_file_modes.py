"""What the gateway writes to disk is its own user's only, whatever the umask it was started with.

Outside systemd (whose unit sets ``UMask=0077``) the gateway was started from shells with the
usual umask 022, and the database, its ``-wal``/``-shm`` and the admin's one-time password came
out 0644: readable by every local user. Each test here runs the real command in a subprocess
with umask 022 and checks the modes with ``os.stat``.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import trio

from tests.process import CLI, ROOT, ServerProcess, clean_env, serve

PASSWORD_FILE = "llm-proxy-initial-admin-password"
OPEN_TO_OTHERS = 0o077


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def mock_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text("[server]\ngraceful_timeout_s = 5\n\n[providers.ollama]\nenabled = false\n")
    return config


def database_files(database: Path) -> list[Path]:
    return [database, Path(f"{database}-wal"), Path(f"{database}-shm")]


async def stop(server: ServerProcess) -> None:
    server.send_signal(signal.SIGTERM)
    with trio.fail_after(20):
        assert await server.wait() == 0, server.stderr


async def test_a_first_start_under_umask_022_writes_private_files(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    async with serve(mock_config(tmp_path), database, tmp_path, umask=0o022) as server:
        # While it runs the WAL and its index exist too.
        for path in [*database_files(database), tmp_path / PASSWORD_FILE]:
            assert path.exists(), path
            assert mode(path) == 0o600, f"{path.name} is {oct(mode(path))}"
        await stop(server)
    assert mode(database) == 0o600
    assert "Traceback" not in server.stderr, server.stderr


async def test_files_left_open_to_others_are_tightened_at_start(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    config = mock_config(tmp_path)
    async with serve(config, database, tmp_path) as first:
        first.send_signal(signal.SIGKILL)  # leaves the -wal and -shm behind
        with trio.fail_after(10):
            await first.wait()
    backups = tmp_path / "backups"
    backups.mkdir()
    old_backup = backups / "llm-proxy-20250101-000000.db"
    shutil.copyfile(database, old_backup)
    opened = [*database_files(database), tmp_path / PASSWORD_FILE, old_backup]
    for path in opened:
        assert path.exists(), path
        os.chmod(path, 0o644)
    os.chmod(backups, 0o755)

    async with serve(config, database, tmp_path) as server:
        for path in [*opened, backups]:
            assert mode(path) & OPEN_TO_OTHERS == 0, f"{path.name} is {oct(mode(path))}"
        assert mode(backups) == 0o700
        await stop(server)
    # One line says what was changed, naming each file.
    (line,) = [line for line in server.lines if "permissions" in line]
    for path in [database, tmp_path / PASSWORD_FILE, old_backup, backups]:
        assert str(path) in line, line
    assert "0644" in line, line
    assert "0600" in line, line


async def test_a_stale_password_file_is_replaced_not_rewritten(tmp_path: Path) -> None:
    # The database is new (so a password is generated) but an old file is in the way, 0644.
    stale = tmp_path / PASSWORD_FILE
    stale.write_text("the old password\n")
    os.chmod(stale, 0o644)
    database = tmp_path / "gateway.db"
    async with serve(mock_config(tmp_path), database, tmp_path) as server:
        assert mode(stale) == 0o600
        fresh = stale.read_text().strip()
        assert fresh
        assert fresh != "the old password"
        await stop(server)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{PASSWORD_FILE}")]


async def test_the_password_is_never_written_through_a_symbolic_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not yours\n")
    os.chmod(elsewhere, 0o644)
    (tmp_path / PASSWORD_FILE).symlink_to(elsewhere)
    database = tmp_path / "gateway.db"
    async with serve(mock_config(tmp_path), database, tmp_path) as server:
        secret = tmp_path / PASSWORD_FILE
        assert not secret.is_symlink()
        assert mode(secret) == 0o600
        await stop(server)
    assert elsewhere.read_text() == "not yours\n"
    assert mode(elsewhere) == 0o644


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=clean_env(),
        umask=0o022,
        check=False,
    )


def test_cli_commands_that_write_files_keep_them_private(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    created = run_cli("clients", "create", "app", "--database", str(database))
    assert created.returncode == 0, created.stderr
    assert mode(database) == 0o600
    reset = run_cli("users", "list", "--database", str(database))
    assert reset.returncode == 0, reset.stderr
    backed_up = run_cli("backup", "--database", str(database))
    assert backed_up.returncode == 0, backed_up.stderr
    copy = Path(backed_up.stdout.strip())
    assert mode(copy) == 0o600
    assert mode(copy.parent) == 0o700
    for leftover in tmp_path.rglob("*"):
        assert mode(leftover) & OPEN_TO_OTHERS == 0, f"{leftover} is {oct(mode(leftover))}"
