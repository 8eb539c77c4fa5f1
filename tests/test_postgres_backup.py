"""Backups of a PostgreSQL database with the real pg_dump: the storage call, the CLI, the API."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from functools import partial
from pathlib import Path

import pytest
import trio

from proxy.service import RunningService
from storage.backup import BackupError, list_backups
from storage.clients import create_client
from storage.postgres_backup import BackupUnavailable, dump_database, find_pg_dump
from storage.transaction import in_immediate_transaction
from tests.conftest import StartGateway, signed_in
from tests.storage_backends import connect
from tests.test_cli import clean_env, run_cli

NAME = re.compile(r"llm-proxy-\d{8}-\d{6}(-\d+)?\.dump")

pytestmark = pytest.mark.skipif(find_pg_dump() is None, reason="pg_dump is not installed")


def with_clients(url: str, count: int) -> str:
    conn = connect(url)
    try:
        for n in range(count):
            in_immediate_transaction(conn, partial(create_client, name=f"c{n}", now_ms=1))
    finally:
        conn.close()
    return url


def restored_table_of_contents(path: Path) -> str:
    """``pg_restore --list``: the dump's table of contents (it fails on a truncated file)."""
    pg_restore = Path(find_pg_dump() or "").with_name("pg_restore")
    listed = subprocess.run(
        [str(pg_restore), "--list", str(path)], capture_output=True, text=True, check=False
    )
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def password_of(url: str) -> str:
    found = re.search(r"://[^:]+:([^@]+)@", url)
    assert found
    return found.group(1)


def test_a_dump_is_private_named_listed_and_restorable(tmp_path: Path, postgres_url: str) -> None:
    with_clients(postgres_url, 2)
    database = tmp_path / "llm-proxy.db"  # never created: only where backups/ goes
    result = dump_database(postgres_url, str(database), now_ms=1_700_000_000_000)
    path = Path(result.path)
    assert path.parent == tmp_path / "backups"
    assert NAME.fullmatch(path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert result.size_bytes == path.stat().st_size > 0
    contents = restored_table_of_contents(path)
    assert "TABLE DATA public clients" in contents
    assert "TABLE DATA public llm_requests" in contents
    assert [entry.path for entry in list_backups(str(database))] == [str(path)]
    assert not database.exists()
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary file left


def test_a_failed_dump_leaves_nothing_and_says_why(tmp_path: Path, postgres_url: str) -> None:
    dead = re.sub(r":\d+/", ":1/", postgres_url)
    with pytest.raises(BackupError, match=r"pg_dump exited with status 1: .*Connection refused"):
        dump_database(dead, str(tmp_path / "x.db"), now_ms=1_700_000_000_000)
    assert os.listdir(tmp_path / "backups") == []


def test_the_password_never_reaches_the_command_line(tmp_path: Path, postgres_url: str) -> None:
    # A stand-in pg_dump that records what it was given, as `ps` would show it.
    spy = tmp_path / "pg_dump"
    spy.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\necho "$PGPASSWORD" > {tmp_path}/pw\n')
    spy.chmod(0o700)
    with pytest.raises(BackupError, match="empty file"):
        dump_database(postgres_url, str(tmp_path / "x.db"), now_ms=1, pg_dump=str(spy))
    argv = (tmp_path / "argv").read_text()
    assert "--format=custom" in argv
    assert "dbname=" in argv
    assert password_of(postgres_url) not in argv
    assert (tmp_path / "pw").read_text().strip() == password_of(postgres_url)


def test_without_pg_dump_backups_are_the_database_s_job(tmp_path: Path) -> None:
    with pytest.raises(BackupUnavailable, match="are the database's job"):
        dump_database(
            "postgresql://u@127.0.0.1:1/x",
            str(tmp_path / "x.db"),
            now_ms=1,
            pg_dump="/nope/pg_dump",
        )
    assert not (tmp_path / "backups").exists()


def test_the_cli_dumps_the_configured_postgresql(tmp_path: Path, postgres_url: str) -> None:
    with_clients(postgres_url, 3)
    database = tmp_path / "beside.db"
    env = clean_env(LLM_PROXY_STORAGE_URL=postgres_url)
    done = run_cli("backup", "--database", str(database), env=env)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.parent == tmp_path / "backups"
    assert NAME.fullmatch(path.name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "TABLE DATA public clients" in restored_table_of_contents(path)
    assert password_of(postgres_url) not in done.stderr
    assert "postgresql://llm_proxy:…@" in done.stderr

    config = tmp_path / "no-pg-dump.toml"
    config.write_text(f'[server]\ndatabase = "{database}"\n[storage]\npg_dump = "/nope/pg_dump"\n')
    refused = run_cli("backup", "--config", str(config), env=env)
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert "backups of a PostgreSQL database are the database's job" in line
    assert "pg_dump, or your provider's snapshots" in line


@pytest.fixture
async def pg_gateway(start_gateway: StartGateway, postgres_url: str) -> RunningService:
    return await start_gateway({"storage": {"url": postgres_url}})


async def test_the_dashboard_dumps_postgresql(pg_gateway: RunningService) -> None:
    async with signed_in(pg_gateway) as admin:
        assert (await admin.post("/api/clients", json={"name": "one"})).status_code == 201
        answer = await admin.post("/api/system/backup")
        assert answer.status_code == 201, answer.text
        made = answer.json()
        listed = (await admin.get("/api/system/backups")).json()["data"]
    path = Path(made["path"])
    assert path.parent == Path(pg_gateway.gateway.config.server.database).parent / "backups"
    assert NAME.fullmatch(path.name)
    assert path.stat().st_size == made["size_bytes"] > 0
    assert [entry["path"] for entry in listed] == [made["path"]]
    contents = await trio.to_thread.run_sync(restored_table_of_contents, path)
    assert "TABLE DATA public clients" in contents


async def test_the_dashboard_says_409_without_pg_dump(
    start_gateway: StartGateway, postgres_url: str
) -> None:
    gateway = await start_gateway({"storage": {"url": postgres_url, "pg_dump": "/nope/pg_dump"}})
    async with signed_in(gateway) as admin:
        answer = await admin.post("/api/system/backup")
        listed = await admin.get("/api/system/backups")
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "backup_unavailable"
    assert "the database's job (pg_dump, or your provider's snapshots)" in error["message"]
    assert listed.json()["data"] == []
