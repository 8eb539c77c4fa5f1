"""A fleet for the tests: several real ``llm-proxy serve`` processes on one Redis and one database.

Each process is started as :func:`tests.process.serve` starts one (its own port, its stderr kept),
from one config that names the fake upstream, the Redis and the shared database file. Clients are
made with the CLI, as an operator would; the dashboard is reached through each process's own API.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import trio

from tests.process import CLI, ServerProcess, clean_env, serve, write_config

ADMIN_PASSWORD = "a-long-enough-admin-password"
CHAT = {"model": "fast", "messages": [{"role": "user", "content": "hello fleet"}]}


def write_fleet_config(
    path: Path,
    *,
    upstream_url: str,
    upstream_key: str,
    redis_url: str,
    on_redis_down: str = "local",
    workers: int = 1,
    storage_url: str = "",
) -> Path:
    """One config for every process of the fleet: the openai provider at ``upstream_url``, one
    static key without limits, the Redis, the policy when it is down, and the PostgreSQL they
    share (empty: the SQLite file)."""
    return write_config(
        path,
        upstream_url=upstream_url,
        upstream_key=upstream_key,
        graceful_timeout_s=10,
        workers=workers,
        redis_url=redis_url,
        on_redis_down=on_redis_down,
        storage_url=storage_url,
    )


@asynccontextmanager
async def running_fleet(
    config: Path, database: Path, cwd: Path, count: int
) -> AsyncIterator[list[ServerProcess]]:
    """``count`` serve processes on ``config`` and ``database``, stopped gracefully (SIGTERM) when
    the block ends, so that every call they logged is in the database."""
    async with AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(serve(config, database, cwd)) for _ in range(count)
        ]
        try:
            yield servers
        finally:
            for server in servers:
                if server.running():
                    server.send_signal(signal.SIGTERM)
            with trio.move_on_after(20, shield=True):
                for server in servers:
                    assert await server.wait() == 0, server.stderr


async def create_client(config: Path, database: Path, name: str, *limits: str) -> str:
    """A client made with ``llm-proxy clients create`` (``limits``: e.g. "--rpm", "30"); its key."""
    done = await trio.run_process(
        [*CLI, "clients", "create", name, *limits, *_files(config, database)],
        env=clean_env(),
        capture_stdout=True,
        capture_stderr=True,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout.decode().strip()


def _files(config: Path, database: Path) -> list[str]:
    return ["--config", str(config), "--database", str(database)]


def initial_password(database: Path) -> str:
    """The first admin's one-time password, written beside the database at the first start."""
    return (database.parent / "llm-proxy-initial-admin-password").read_text().strip()


async def admin_token(server: ServerProcess, database: Path) -> str:
    """A dashboard session token for the admin, signed in on ``server`` (the one-time password
    replaced by :data:`ADMIN_PASSWORD` the first time)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        answer = await client.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        if answer.status_code == 200:
            return str(answer.json()["token"])
        first = await client.post(
            "/api/auth/login", json={"username": "admin", "password": initial_password(database)}
        )
        assert first.status_code == 200, first.text
        changed = await client.post(
            "/api/auth/change-password",
            json={"current_password": initial_password(database), "new_password": ADMIN_PASSWORD},
            headers={"authorization": f"Bearer {first.json()['token']}"},
        )
        assert changed.status_code == 200, changed.text
        answer = await client.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["token"])


async def chat(client: httpx.AsyncClient, server: ServerProcess, key: str) -> httpx.Response:
    """One non-streamed chat call to ``server`` with ``key``."""
    return await client.post(
        f"{server.url}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {key}"},
    )
