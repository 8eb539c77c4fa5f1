"""``llm-proxy users``: a one-time password from the command line, beside a running server."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from proxy.service import RunningService
from tests.conftest import StartGateway, signed_in
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
