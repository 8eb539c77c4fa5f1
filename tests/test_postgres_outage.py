"""Kill PostgreSQL under load: calls go on, nothing waits on the database, the buffer drains
when it is back; past the bound, records are dropped, counted and logged."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import StartGateway, http, sdk, signed_in
from tests.postgres_server import PostgresServer
from tests.storage_backends import connect

HELLO = [{"role": "user", "content": "hello there gateway"}]


def count_requests(url: str) -> int:
    conn = connect(url)
    try:
        ((count,),) = conn.execute("SELECT count(*) FROM llm_requests").fetchall()
        return int(count)
    finally:
        conn.close()


async def calls(gateway: RunningService, count: int, at_once: int = 4) -> None:
    """``count`` calls, ``at_once`` at a time, each answered."""
    client = sdk(gateway)
    limiter = trio.CapacityLimiter(at_once)

    async def one() -> None:
        async with limiter:
            answer = await client.chat.completions.create(model="mock", messages=HELLO)
            assert answer.choices[0].message.content

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


async def wait_for_rows(url: str, count: int) -> None:
    with trio.fail_after(30):
        while await trio.to_thread.run_sync(count_requests, url) != count:
            await trio.sleep(0.05)


async def database_health(admin: httpx.AsyncClient) -> dict[str, object]:
    answer = await admin.get("/api/system/health")
    assert answer.status_code == 200, answer.text
    database: dict[str, object] = answer.json()["database"]
    return database


async def test_killing_postgresql_under_load_loses_nothing_and_the_buffer_drains(
    start_gateway: StartGateway,
    postgres: PostgresServer,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llm_proxy.storage")
    caplog.set_level(logging.INFO, logger="llm_proxy.clients")
    gateway = await start_gateway({"storage": {"url": postgres_url}})
    async with signed_in(gateway) as admin:
        await calls(gateway, 3)
        await wait_for_rows(postgres_url, 3)
        up = await database_health(admin)
        assert (up["backend"], up["up"], up["buffered"]) == ("postgresql", True, 0)
        assert isinstance(up["size_bytes"], int)
        assert up["size_bytes"] > 0
        assert postgres.password not in str(up["url"])
        # The test cluster commits asynchronously: let its WAL writer flush before the crash.
        await trio.sleep(1.0)
        await trio.to_thread.run_sync(lambda: postgres.stop(kill=True))
        try:
            with trio.fail_after(30):  # no call waits on the database
                await calls(gateway, 40)
            writer = gateway.gateway.writer
            with trio.fail_after(10):
                while writer.statistics().up:
                    await trio.sleep(0.02)
            # Long enough for the key directory to poll the database a few times (every 0.5 s).
            await trio.sleep(1.6)
            down = await database_health(admin)
            assert down["up"] is False
            assert isinstance(down["down_since_ms"], int)
            assert down["size_bytes"] is None
            assert down["records_dropped"] == 0
            # A dashboard write is answered at once: 503, the database named as the cause.
            with trio.fail_after(5):
                refused = await admin.put("/api/settings", json={"ui.theme": "dark"})
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert error["type"] == "service_unavailable"
            assert "database unavailable" in error["message"].lower()
            assert postgres.password not in refused.text
        finally:
            await trio.to_thread.run_sync(postgres.start)
        await wait_for_rows(postgres_url, 43)
        back = await database_health(admin)
        assert (back["up"], back["buffered"], back["records_dropped"]) == (True, 0, 0)
    messages = [record.getMessage() for record in caplog.records]
    assert any("database unavailable" in m and "buffering up to" in m for m in messages)
    assert any("database back after" in m and "dropped 0" in m for m in messages)
    # The key directory says the outage once, not at every poll, and keeps serving the keys.
    directory = [record for record in caplog.records if record.name == "llm_proxy.clients"]
    assert [r.levelno for r in directory if r.levelno >= logging.ERROR] == []
    said = [r.getMessage() for r in directory if "database unavailable" in r.getMessage()]
    assert len(said) == 1, said
    with trio.fail_after(10):
        while "client directory: database answers again" not in [
            r.getMessage() for r in caplog.records
        ]:
            await trio.sleep(0.05)


async def test_past_the_bound_records_are_dropped_counted_and_logged(
    start_gateway: StartGateway,
    postgres: PostgresServer,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llm_proxy.storage")
    gateway = await start_gateway(
        {
            "storage": {"url": postgres_url, "outage_buffer_records": 1000},
            "limits": {"default_client_requests_per_minute": 0},  # unlimited: a load test
        }
    )
    await calls(gateway, 1)
    await wait_for_rows(postgres_url, 1)
    await trio.sleep(1.0)  # the cluster's asynchronous commit reaches its WAL
    await trio.to_thread.run_sync(lambda: postgres.stop(kill=True))
    try:
        with trio.fail_after(120):
            await calls(gateway, 1030, at_once=16)
        writer = gateway.gateway.writer
        with trio.fail_after(10):
            while writer.statistics().records_dropped < 30:
                await trio.sleep(0.02)
        stats = writer.statistics()
        assert (stats.buffered, stats.records_dropped) == (1000, 30)
        async with http(gateway) as client:
            page = (await client.get("/metrics")).text
        assert "llm_proxy_db_records_dropped_total 30" in page
        assert "llm_proxy_db_up 0" in page
    finally:
        await trio.to_thread.run_sync(postgres.start)
    await wait_for_rows(postgres_url, 1001)
    messages = [record.getMessage() for record in caplog.records]
    assert any("dropping new request records" in m for m in messages)
    assert any("stored 1000 buffered records, dropped 30" in m for m in messages)
