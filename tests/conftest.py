"""Shared fixtures: fake upstreams on real sockets, and the whole gateway started in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import trio

from proxy import service
from proxy.config import Config, parse_config
from proxy.passwords import Passwords
from proxy.service import RunningService
from storage import queries
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.image_server import FakeImageServer
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI
from tests.postgres_databases import fresh_database
from tests.postgres_server import PostgresServer, postgres_server
from tests.redis_server import RedisServer, redis_server

CLIENT_KEY = "sk-client-test-key-0123456789abcdef"

StartGateway = Callable[..., Awaitable[RunningService]]


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A real ``redis-server`` of this test's own on a loopback port (tests/redis_server.py);
    a fleet of gateways is ``start_gateway({"cluster": {"redis_url": redis.url}})`` twice: they
    share it and the database file under ``tmp_path``."""
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL (Debian's, tests/postgres_server.py) for the whole run, started when
    a test first needs it; each test takes a fresh database on it (``postgres_url``)."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """The URL (with its password) of an empty database of this test's own."""
    return fresh_database(postgres)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend in turn: a SQLite path under ``tmp_path``, then a fresh PostgreSQL database's
    URL; either is what ``StorageWriter``, ``ReadPool`` and ``tests.storage_backends.connect``
    take."""
    if request.param == "sqlite":
        return str(tmp_path / "gateway.db")
    return fresh_database(request.getfixturevalue("postgres"))


BACKENDS = ["sqlite", "postgresql"]

on_each_backend = pytest.mark.parametrize("backend", BACKENDS, indirect=True)
"""Run a test whose gateway (``start_gateway``, ``gateway``) stores on SQLite, then PostgreSQL."""


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The config that picks the gateway's storage: ``{}`` (the SQLite file at server.database)
    unless a test is marked :data:`on_each_backend`, whose PostgreSQL run adds ``[storage] url``
    of a fresh database (the first admin's password still lands beside server.database)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return {}
    return {"storage": {"url": fresh_database(request.getfixturevalue("postgres"))}}


@pytest.fixture
async def fake_openai(nursery: trio.Nursery) -> FakeOpenAI:
    """A fake OpenAI (or DeepSeek, or xAI) upstream listening on 127.0.0.1."""
    fake = FakeOpenAI()
    await nursery.start(fake.run)
    return fake


@pytest.fixture
async def fake_anthropic(nursery: trio.Nursery) -> FakeAnthropic:
    """A fake Anthropic upstream listening on 127.0.0.1 (base_url without /v1)."""
    fake = FakeAnthropic()
    await nursery.start(fake.run)
    return fake


@pytest.fixture
async def fake_gemini(nursery: trio.Nursery) -> FakeGemini:
    """A fake Gemini upstream listening on 127.0.0.1."""
    fake = FakeGemini()
    await nursery.start(fake.run)
    return fake


@pytest.fixture
async def fake_ollama(nursery: trio.Nursery) -> FakeOllama:
    """A fake Ollama server listening on 127.0.0.1."""
    fake = FakeOllama()
    await nursery.start(fake.run)
    return fake


@pytest.fixture
async def image_host(nursery: trio.Nursery) -> FakeImageServer:
    """A web server with images (and broken ones) on 127.0.0.1."""
    server = FakeImageServer()
    await nursery.start(server.run)
    return server


def make_config(tmp_path: Path, data: Mapping[str, Any] | None = None) -> Config:
    """A config on port 0 with its database under ``tmp_path``; ``data`` adds or replaces."""
    base: dict[str, Any] = {
        "server": {"port": 0, "database": str(tmp_path / "gateway.db"), "graceful_timeout_s": 5},
        "auth": {"tokens": [CLIENT_KEY]},
    }
    for section, values in (data or {}).items():
        if isinstance(values, dict) and isinstance(base.get(section), dict):
            base[section] = {**base[section], **values}
        else:
            base[section] = values
    return parse_config(base, source="test config", environ={})


@pytest.fixture
async def start_gateway(
    nursery: trio.Nursery, tmp_path: Path, backend: dict[str, Any]
) -> AsyncIterator[StartGateway]:
    """Start the whole service in-process (on the test's ``backend``); stopped gracefully when
    the test ends."""
    running: list[RunningService] = []

    async def start(
        data: Mapping[str, Any] | None = None, *, passwords: Passwords | None = None
    ) -> RunningService:
        config = make_config(tmp_path, {**backend, **(data or {})})
        gateway: RunningService = await nursery.start(
            # argon2 with weak parameters: the server's real ones cost ~50 ms and 64 MiB a hash.
            partial(
                service.run,
                config,
                handle_signals=False,
                passwords=passwords if passwords is not None else Passwords.cheap_for_tests(),
            )
        )
        running.append(gateway)
        return gateway

    try:
        yield start
    finally:
        # A graceful stop, as under SIGTERM, so every test also exercises the shutdown order.
        for gateway in running:
            gateway.stop()
        with trio.move_on_after(15, shield=True):
            for gateway in running:
                await gateway.stopped.wait()


@pytest.fixture
async def gateway(start_gateway: StartGateway, fake_openai: FakeOpenAI) -> RunningService:
    """The gateway with its openai provider pointed at the fake upstream."""
    return await start_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": fake_openai.base_url,
                    "api_key": DEFAULT_API_KEY,
                    "timeout_s": 5,
                }
            },
            "models": {"fast": {"provider": "openai", "model": "gpt-4o-mini"}},
        }
    )


def sdk(gateway: RunningService, key: str = CLIENT_KEY) -> openai.AsyncOpenAI:
    """The official OpenAI SDK pointed at the gateway, without retries."""
    return openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def http(gateway: RunningService) -> httpx.AsyncClient:
    """A raw HTTP client for what the SDK will not send."""
    return httpx.AsyncClient(base_url=gateway.base_url, timeout=10)


async def logged(gateway: RunningService, count: int = 1) -> list[dict[str, object]]:
    """The newest ``count`` request records, waiting (real clock) for them to be written."""
    reads = gateway.gateway.reads
    with trio.fail_after(10):
        while True:
            rows = await reads.run(partial(queries.recent_requests, limit=count))
            if len(rows) >= count:
                return rows
            await trio.sleep(0.02)


# -- the dashboard API -------------------------------------------------------------------------


def initial_admin_password(gateway: RunningService) -> str:
    """The one-time password the first start wrote next to the database."""
    database = Path(gateway.gateway.config.server.database)
    return (database.parent / "llm-proxy-initial-admin-password").read_text().strip()


ADMIN_PASSWORD = "a-long-enough-admin-password"


@asynccontextmanager
async def signed_in(
    gateway: RunningService, username: str = "admin", password: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in (Bearer token) as ``username``; the first admin's one-time password is
    changed to ``ADMIN_PASSWORD`` on the way."""
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        await _sign_in(client, gateway, username, password)
        yield client


async def _sign_in(
    client: httpx.AsyncClient, gateway: RunningService, username: str, password: str | None
) -> None:
    if password is None and username == "admin":
        password = ADMIN_PASSWORD
        first = await client.post(
            "/api/auth/login",
            json={"username": "admin", "password": initial_admin_password(gateway)},
        )
        if first.status_code == 200:
            token = first.json()["token"]
            changed = await client.post(
                "/api/auth/change-password",
                json={
                    "current_password": initial_admin_password(gateway),
                    "new_password": password,
                },
                headers={"authorization": f"Bearer {token}"},
            )
            assert changed.status_code == 200, changed.text
    answer = await client.post("/api/auth/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    client.headers["authorization"] = f"Bearer {answer.json()['token']}"
    client.cookies.clear()
