"""``/api/system`` and ``/api/settings``: health, log lines, backups, settings; no secret shown."""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path

import apsw
import httpx
import pytest

from proxy.service import RunningService
from storage.audit import AuditRow, list_audit
from storage.queries import count_requests
from tests.conftest import (
    ADMIN_PASSWORD,
    CLIENT_KEY,
    StartGateway,
    logged,
    on_each_backend,
    sdk,
    signed_in,
)
from tests.fakes.openai_upstream import FakeOpenAI
from web.api.system import _process_and_files

VIEWER_PASSWORD = "a-long-enough-viewer-password"
PROVIDER_KEY = "sk-secret-value-1234"
HELLO = [{"role": "user", "content": "hello there gateway"}]


@pytest.fixture
async def dashboard(start_gateway: StartGateway) -> RunningService:
    return await start_gateway()


async def audit_rows(gateway: RunningService) -> list[AuditRow]:
    return await gateway.gateway.reads.run(partial(list_audit, limit=1000))


async def add_viewer(admin: httpx.AsyncClient) -> None:
    made = await admin.post(
        "/api/users", json={"username": "vera", "role": "viewer", "password": VIEWER_PASSWORD}
    )
    assert made.status_code == 201, made.text


def count_rows(conn: apsw.Connection, table: str) -> int:
    ((count,),) = conn.execute(f"SELECT count(*) FROM {table}").fetchall()
    assert isinstance(count, int)
    return count


# -- health and logs -------------------------------------------------------------------------------


async def test_health_reports_the_process_the_database_and_every_actor(
    dashboard: RunningService,
) -> None:
    await sdk(dashboard).chat.completions.create(model="mock", messages=HELLO)
    await logged(dashboard)
    async with signed_in(dashboard) as admin:
        answer = await admin.get("/api/system/health")
    assert answer.status_code == 200, answer.text
    health = answer.json()
    assert health["status"] == "ok"
    assert health["pid"] == os.getpid()
    assert health["uptime_s"] >= 0
    assert isinstance(health["version"], str)
    assert health["rss_bytes"] > 1_000_000
    database = health["database"]
    assert database["path"] == dashboard.gateway.config.server.database
    assert database["size_bytes"] > 0
    assert database["size_bytes"] == os.stat(database["path"]).st_size
    assert database["wal_bytes"] >= 0  # 0 right after the writer's idle checkpoint
    assert database["backend"] == "sqlite"
    assert (database["up"], database["down_since_ms"]) == (True, None)
    assert (database["buffered"], database["records_dropped"]) == (0, 0)
    assert health["in_flight"] >= 0
    actors = health["actors"]
    assert actors["retention"]["retention_days"] == 90
    assert actors["retention"]["rows_deleted"] == 0
    assert actors["retention"]["response_retention_days"] == 30
    assert actors["retention"]["responses_deleted"] == 0
    assert set(actors) == {
        "writer",
        "logger",
        "limiter",
        "directory",
        "sessions",
        "events",
        "retention",
    }
    assert actors["logger"]["records"] == 1
    assert actors["writer"]["rows_written"] >= 1
    assert actors["sessions"]["active"] >= 1
    mock = health["providers"]["mock"]
    assert mock["breaker_state"] == "closed"
    assert mock["calls"] == 1


def test_database_sizes_count_a_missing_write_ahead_log_as_zero(tmp_path: Path) -> None:
    database = tmp_path / "some.db"
    database.write_bytes(b"x" * 4096)
    files = _process_and_files(str(database))
    assert files["database"] == {"path": str(database), "size_bytes": 4096, "wal_bytes": 0}
    (tmp_path / "some.db-wal").write_bytes(b"y" * 100)
    assert _process_and_files(str(database))["database"]["wal_bytes"] == 100


async def test_recent_log_lines(dashboard: RunningService) -> None:
    logging.getLogger("llm_proxy.test").warning("a line for the dashboard")
    async with signed_in(dashboard) as admin:
        lines = (await admin.get("/api/system/logs")).json()["data"]
        (ours,) = [line for line in lines if line["message"] == "a line for the dashboard"]
        assert ours["level"] == "WARNING"
        assert ours["logger"] == "llm_proxy.test"
        assert {"ts_ms", "level", "logger", "message"} <= set(lines[0])
        few = (await admin.get("/api/system/logs", params={"limit": 2})).json()["data"]
        assert len(few) == 2
        for limit in ("0", "1001", "-1", "ten", "1e2", "²"):
            bad = await admin.get("/api/system/logs", params={"limit": limit})
            assert bad.status_code == 400, (limit, bad.text)


async def test_no_password_or_key_reaches_the_log_lines(
    dashboard: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    # Tests leave the root logger at WARNING: let the info lines through, as in production.
    caplog.set_level(logging.INFO)
    async with signed_in(dashboard) as admin:
        made = await admin.post("/api/clients", json={"name": "app"})
        token = made.json()["token"]
        await sdk(dashboard, key=token).chat.completions.create(model="mock", messages=HELLO)
        await admin.post("/api/auth/login", json={"username": "admin", "password": "wrong-one"})
        shown = (await admin.get("/api/system/logs", params={"limit": 1000})).text
    kept = str(dashboard.gateway.log_buffer.recent(1000))
    assert "INFO" in kept
    for secret in (ADMIN_PASSWORD, token, token[7:-4], CLIENT_KEY, "wrong-one"):
        assert secret not in shown
        assert secret not in kept


# -- backups ---------------------------------------------------------------------------------------


async def test_a_backup_is_a_sound_copy_of_the_live_database(dashboard: RunningService) -> None:
    for _ in range(3):
        await sdk(dashboard).chat.completions.create(model="mock", messages=HELLO)
    await logged(dashboard, 3)
    async with signed_in(dashboard) as admin:
        for name in ("one", "two"):
            assert (await admin.post("/api/clients", json={"name": name})).status_code == 201
        answer = await admin.post("/api/system/backup")
        assert answer.status_code == 201, answer.text
        made = answer.json()
        listed = (await admin.get("/api/system/backups")).json()["data"]
    path = Path(made["path"])
    assert path.parent == Path(dashboard.gateway.config.server.database).parent / "backups"
    assert path.stat().st_size == made["size_bytes"] > 0
    assert made["created_at"] > 0
    assert [entry["path"] for entry in listed] == [made["path"]]

    reads = dashboard.gateway.reads
    live_requests = await reads.run(count_requests)
    live_clients = await reads.run(partial(count_rows, table="clients"))
    assert live_requests == 3
    assert live_clients == 2
    copy = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert copy.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        assert count_rows(copy, "llm_requests") == live_requests
        assert count_rows(copy, "clients") == live_clients
    finally:
        copy.close()

    (row, *_) = await audit_rows(dashboard)
    assert (row.action, row.target, row.username) == ("system.backup", made["path"], "admin")
    assert row.detail == {"size_bytes": made["size_bytes"]}


async def test_two_backups_get_two_files(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        first = (await admin.post("/api/system/backup")).json()
        second = (await admin.post("/api/system/backup")).json()
        listed = (await admin.get("/api/system/backups")).json()["data"]
    assert first["path"] != second["path"]
    assert {entry["path"] for entry in listed} == {first["path"], second["path"]}


# -- settings --------------------------------------------------------------------------------------


async def test_settings_and_health_never_show_a_secret(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await start_gateway(
        {"providers": {"openai": {"base_url": fake_openai.base_url, "api_key": PROVIDER_KEY}}}
    )
    async with signed_in(gateway) as admin:
        settings = await admin.get("/api/settings")
        assert settings.status_code == 200, settings.text
        config = settings.json()["config"]
        assert config["providers"]["openai"]["api_key"] == "sk-…1234"
        assert config["providers"]["openai"]["base_url"] == fake_openai.base_url
        assert config["auth"]["tokens"] == [f"{CLIENT_KEY[:3]}…{CLIENT_KEY[-4:]}"]
        assert config["server"]["port"] == 0
        assert config["limits"]["default_client_requests_per_minute"] == 60
        bodies = [
            settings.text,
            (await admin.get("/api/system/health")).text,
            (await admin.get("/api/system/logs", params={"limit": 1000})).text,
        ]
    for body in bodies:
        assert PROVIDER_KEY not in body
        assert PROVIDER_KEY[3:-4] not in body
        assert CLIENT_KEY not in body


async def test_a_password_in_a_base_url_is_masked(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(
        {
            "providers": {
                "ollama": {"base_url": "http://user:hunter2-secret@127.0.0.1:9/x?api_key=abc123"}
            }
        }
    )
    async with signed_in(gateway) as admin:
        answer = await admin.get("/api/settings")
    shown = answer.json()["config"]["providers"]["ollama"]["base_url"]
    assert "hunter2-secret" not in answer.text
    assert "abc123" not in shown
    assert shown.startswith("http://…@127.0.0.1:9/x?api_key=")


@on_each_backend
async def test_settings_are_stored_and_audited(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        assert (await admin.get("/api/settings")).json()["settings"] == {}
        values = {"ui.theme": "dark", "usage.default_range_days": 7, "alerts": {"on": True}}
        changed = await admin.put("/api/settings", json=values)
        assert changed.status_code == 200, changed.text
        assert changed.json()["settings"] == values
        assert (await admin.get("/api/settings")).json()["settings"] == values
        again = await admin.put("/api/settings", json={"ui.theme": "light"})
        assert again.json()["settings"]["ui.theme"] == "light"

        for body in (
            {"auth_generation": 5},  # the server's own bookkeeping
            {"Bad Key": 1},
            {"smtp_password": "x"},
            {"openai.api_key": "sk-abc"},
            [1, 2],
            "text",
        ):
            bad = await admin.put("/api/settings", json=body)
            assert bad.status_code == 400, (body, bad.text)
            assert bad.json()["error"]["type"] == "invalid_request_error"
        # One bad entry changes nothing.
        mixed = await admin.put("/api/settings", json={"ui.theme": "blue", "auth_generation": 1})
        assert mixed.status_code == 400
        assert (await admin.get("/api/settings")).json()["settings"]["ui.theme"] == "light"

    rows = [row for row in await audit_rows(dashboard) if row.action == "settings.update"]
    assert [row.detail for row in reversed(rows)] == [
        {"keys": sorted(values)},
        {"keys": ["ui.theme"]},
    ]
    assert all(row.username == "admin" for row in rows)


# -- roles -----------------------------------------------------------------------------------------


async def test_viewers_read_the_system_pages_but_cannot_change_anything(
    dashboard: RunningService,
) -> None:
    async with signed_in(dashboard) as admin:
        await add_viewer(admin)
        async with signed_in(dashboard, "vera", VIEWER_PASSWORD) as viewer:
            for path in (
                "/api/system/health",
                "/api/system/logs",
                "/api/system/backups",
                "/api/settings",
            ):
                answer = await viewer.get(path)
                assert answer.status_code == 200, (path, answer.text)
            for method, path, body in [
                ("POST", "/api/system/backup", None),
                ("PUT", "/api/settings", {"ui.theme": "dark"}),
            ]:
                answer = await viewer.request(method, path, json=body)
                assert answer.status_code == 403, (method, path, answer.text)
                assert answer.json()["error"]["code"] == "admin_required"
        assert (await admin.get("/api/system/backups")).json()["data"] == []
        assert (await admin.get("/api/settings")).json()["settings"] == {}
