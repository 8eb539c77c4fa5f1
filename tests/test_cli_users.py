"""``llm-proxy users``: a one-time password from the command line, beside a running server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import trio
from argon2 import PasswordHasher

from proxy.service import RunningService
from storage import users
from storage.transaction import in_immediate_transaction
from tests.conftest import StartGateway, signed_in
from tests.storage_backends import connect
from tests.test_cli import clean_env, run_cli


async def test_reset_password_while_the_server_runs(start_gateway: StartGateway) -> None:
    gateway: RunningService = await start_gateway()
    database = str(Path(gateway.gateway.config.server.database))
    async with signed_in(gateway) as admin:
        reset = await trio.to_thread.run_sync(
            lambda: run_cli(
                "users", "reset-password", "admin", "--database", database, env=clean_env()
            )
        )
        assert reset.returncode == 0, reset.stderr
        password = reset.stdout.strip()
        assert len(password) >= 20
        assert "\n" not in password
        assert password not in reset.stderr
        # The server notices within its refresh period and ends the admin's sessions.
        with trio.fail_after(10):
            while (await admin.get("/api/auth/status")).status_code != 401:
                await trio.sleep(0.1)
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        login = await client.post(
            "/api/auth/login", json={"username": "admin", "password": password}
        )
        assert login.status_code == 200
        assert login.json()["user"]["must_change_password"] is True
    listed = run_cli("users", "list", "--database", database, env=clean_env())
    assert listed.stdout.startswith("admin\tadmin must-change-password")
    unknown = run_cli("users", "reset-password", "nobody", "--database", database, env=clean_env())
    assert unknown.returncode != 0
    assert "nobody" in unknown.stderr


def users_cli(where: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``llm-proxy users ...`` on a SQLite file, or on PostgreSQL through $LLM_PROXY_STORAGE_URL."""
    if where.startswith("postgresql://"):
        return run_cli("users", *args, env=clean_env(LLM_PROXY_STORAGE_URL=where))
    return run_cli("users", *args, "--database", where, env=clean_env())


def test_list_and_reset_on_each_backend(database_url: str) -> None:
    conn = connect(database_url)
    try:
        in_immediate_transaction(
            conn,
            lambda c: users.create_user(
                c, username="ops", password_hash="$argon2id$old", role="admin", now_ms=1
            ),
        )
    finally:
        conn.close()
    listed = users_cli(database_url, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["ops\tadmin\t"]
    reset = users_cli(database_url, "reset-password", "ops")
    assert reset.returncode == 0, reset.stderr
    password = reset.stdout.strip()
    conn = connect(database_url)
    try:
        user = users.get_user(conn, "ops")
    finally:
        conn.close()
    assert user is not None
    assert user.must_change_password
    assert PasswordHasher().verify(user.password_hash, password)
    unknown = users_cli(database_url, "reset-password", "nobody")
    assert unknown.returncode == 2
    assert len(unknown.stderr.splitlines()) == 1
    assert "nobody" in unknown.stderr
