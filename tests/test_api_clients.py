"""``/api/clients``: keys shown once and usable at once, masked after, revoked at once; roles."""

from __future__ import annotations

from functools import partial

import httpx
import openai
import pytest

from proxy.service import RunningService
from storage.audit import AuditRow, list_audit
from tests.conftest import StartGateway, logged, on_each_backend, sdk, signed_in

VIEWER_PASSWORD = "a-long-enough-viewer-password"
HELLO = [{"role": "user", "content": "hello there gateway"}]


@pytest.fixture
async def dashboard(start_gateway: StartGateway) -> RunningService:
    # No provider key: the mock provider answers model "mock".
    return await start_gateway()


async def call(gateway: RunningService, key: str) -> str:
    answer = await sdk(gateway, key=key).chat.completions.create(model="mock", messages=HELLO)
    return answer.choices[0].message.content or ""


async def audit_rows(gateway: RunningService) -> list[AuditRow]:
    return await gateway.gateway.reads.run(partial(list_audit, limit=1000))


async def new_client(admin: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    made = await admin.post("/api/clients", json={"name": "billing app", **fields})
    assert made.status_code == 201, made.text
    body: dict[str, object] = made.json()
    return body


@on_each_backend
async def test_a_new_key_works_at_once_and_a_revoked_one_is_refused_at_once(
    dashboard: RunningService,
) -> None:
    async with signed_in(dashboard) as admin:
        client = await new_client(admin, description="invoices", key_name="prod")
        token = str(client["token"])
        assert token.startswith("sk-")
        key = client["key"]
        assert isinstance(key, dict)
        assert key["masked"] == f"{token[:7]}…{token[-4:]}"
        assert key["name"] == "prod"
        assert client["key_count"] == 1
        assert client["effective_rate_limit_per_minute"] == 60  # the configured default
        client_id = client["id"]

        # No waiting for the directory's poll: the route refreshed it.
        assert "hello there gateway" in await call(dashboard, token)

        listed = await admin.get(f"/api/clients/{client_id}/tokens")
        assert listed.status_code == 200
        assert token not in listed.text
        assert token[7:-4] not in listed.text
        (shown,) = listed.json()["data"]
        assert shown["masked"] == key["masked"]
        assert shown["revoked"] is False
        assert "token" not in shown

        revoked = await admin.delete(f"/api/clients/{client_id}/tokens/{key['id']}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked"] is True
        with pytest.raises(openai.AuthenticationError):
            await call(dashboard, token)

        second = await admin.post(f"/api/clients/{client_id}/tokens", json={"name": "ci"})
        assert second.status_code == 201, second.text
        second_token = second.json()["token"]
        assert second_token != token
        assert "hello there gateway" in await call(dashboard, second_token)
        listed = await admin.get(f"/api/clients/{client_id}/tokens")
        assert [t["revoked"] for t in listed.json()["data"]] == [True, False]
        assert second_token not in listed.text
        # Revoking twice keeps the first revocation.
        again = await admin.delete(f"/api/clients/{client_id}/tokens/{key['id']}")
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]


@on_each_backend
async def test_list_show_update_and_delete(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        client = await new_client(admin, rate_limit_per_minute=100, tokens_per_minute=5000)
        token, client_id = str(client["token"]), client["id"]
        await call(dashboard, token)
        await logged(dashboard)

        listed = await admin.get("/api/clients")
        assert listed.status_code == 200
        assert token not in listed.text
        (row,) = listed.json()["data"]
        assert row["id"] == client_id
        assert row["key_count"] == 1
        assert row["usage_24h"]["requests"] == 1

        shown = (await admin.get(f"/api/clients/{client_id}")).json()
        assert shown["name"] == "billing app"
        assert shown["rate_limit_per_minute"] == 100
        assert token not in str(shown)

        # Only the fields sent change.
        changed = await admin.put(f"/api/clients/{client_id}", json={"description": "new"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["description"] == "new"
        assert changed.json()["name"] == "billing app"
        assert changed.json()["rate_limit_per_minute"] == 100
        assert changed.json()["tokens_per_minute"] == 5000
        # null: back to the configured default.
        changed = await admin.put(f"/api/clients/{client_id}", json={"rate_limit_per_minute": None})
        assert changed.json()["rate_limit_per_minute"] is None
        assert changed.json()["effective_rate_limit_per_minute"] == 60
        assert changed.json()["tokens_per_minute"] == 5000
        nothing = await admin.put(f"/api/clients/{client_id}", json={})
        assert nothing.status_code == 200
        assert nothing.json()["updated_at"] == changed.json()["updated_at"]

        # An inactive client's keys stop working at once, and work again when it is back.
        off = await admin.put(f"/api/clients/{client_id}", json={"is_active": False})
        assert off.json()["is_active"] is False
        with pytest.raises(openai.AuthenticationError):
            await call(dashboard, token)
        await admin.put(f"/api/clients/{client_id}", json={"is_active": True})
        await call(dashboard, token)

        deleted = await admin.delete(f"/api/clients/{client_id}")
        assert deleted.status_code == 200
        assert (await admin.get(f"/api/clients/{client_id}")).status_code == 404
        assert (await admin.get("/api/clients")).json()["data"] == []
        with pytest.raises(openai.AuthenticationError):
            await call(dashboard, token)


async def test_a_changed_limit_applies_at_once(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        client = await new_client(admin)
        token, client_id = str(client["token"]), client["id"]
        await admin.put(f"/api/clients/{client_id}", json={"rate_limit_per_minute": 1})
        await call(dashboard, token)
        with pytest.raises(openai.RateLimitError):
            await call(dashboard, token)


@on_each_backend
async def test_usage_of_one_client(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        mine = await new_client(admin)
        other = await new_client(admin, name="other")
        for _ in range(2):
            await call(dashboard, str(mine["token"]))
        await call(dashboard, str(other["token"]))
        await logged(dashboard, 3)

        usage = await admin.get(f"/api/clients/{mine['id']}/usage")
        assert usage.status_code == 200, usage.text
        body = usage.json()
        assert body["client_id"] == mine["id"]
        assert body["requests"] == 2
        assert body["errors"] == 0
        assert [m["key"] for m in body["models"]] == ["mock"]

        now = body["until_ms"]
        earlier = await admin.get(
            f"/api/clients/{mine['id']}/usage", params={"from": 0, "to": 3_600_000}
        )
        assert earlier.json()["requests"] == 0
        for params in (
            {"from": "yesterday"},
            {"to": "-5"},
            {"from": now, "to": now},
            {"from": "9" * 30},
        ):
            bad = await admin.get(f"/api/clients/{mine['id']}/usage", params=params)
            assert bad.status_code == 400, (params, bad.text)
            assert bad.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_ids_are_404(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        client = await new_client(admin)
        other = await new_client(admin, name="other")
        other_key = other["key"]
        assert isinstance(other_key, dict)
        for method, path, body in [
            ("GET", "/api/clients/cl_nope", None),
            ("PUT", "/api/clients/cl_nope", {"name": "x"}),
            ("DELETE", "/api/clients/cl_nope", None),
            ("GET", "/api/clients/cl_nope/usage", None),
            ("GET", "/api/clients/cl_nope/tokens", None),
            ("POST", "/api/clients/cl_nope/tokens", {}),
            ("DELETE", "/api/clients/cl_nope/tokens/1", None),
            ("DELETE", f"/api/clients/{client['id']}/tokens/999999", None),
            ("DELETE", f"/api/clients/{client['id']}/tokens/abc", None),
            ("DELETE", f"/api/clients/{client['id']}/tokens/{'9' * 40}", None),
            # Another client's key is not this client's to revoke.
            ("DELETE", f"/api/clients/{client['id']}/tokens/{other_key['id']}", None),
        ]:
            answer = await admin.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
            # One error table with /v1: OpenAI types its 404s as invalid requests.
            assert answer.json()["error"]["type"] == "invalid_request_error"
        # The other client's key still works.
        await call(dashboard, str(other["token"]))


async def test_invalid_fields_are_400(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        client_id = (await new_client(admin))["id"]
        for body in [
            {},
            {"name": ""},
            {"name": "   "},
            {"name": "x" * 201},
            {"name": "line\nbreak"},
            {"name": 5},
            {"name": "ok", "rate_limit_per_minute": -1},
            {"name": "ok", "tokens_per_minute": 1.5},
            {"name": "ok", "rate_limit_per_minute": 2**70},
            {"name": "ok", "rate_limit_per_minute": True},
            {"name": "ok", "surprise": 1},
        ]:
            answer = await admin.post("/api/clients", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["error"]["type"] == "invalid_request_error"
        for body in [
            {"name": None},
            {"name": ""},
            {"description": None},
            {"is_active": "yes"},
            {"is_active": None},
            {"rate_limit_per_minute": -5},
            {"token": "sk-mine"},
        ]:
            answer = await admin.put(f"/api/clients/{client_id}", json=body)
            assert answer.status_code == 400, (body, answer.text)
        bad_json = await admin.post(
            "/api/clients", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert bad_json.status_code == 400
        long_name = await admin.post(f"/api/clients/{client_id}/tokens", json={"name": "x" * 500})
        assert long_name.status_code == 400
        assert (await admin.get("/api/clients")).json()["data"][0]["key_count"] == 1


async def test_viewers_read_clients_but_cannot_change_them(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        made = await admin.post(
            "/api/users",
            json={"username": "vera", "role": "viewer", "password": VIEWER_PASSWORD},
        )
        assert made.status_code == 201
        client = await new_client(admin)
        client_id, key = client["id"], client["key"]
        assert isinstance(key, dict)
        async with signed_in(dashboard, "vera", VIEWER_PASSWORD) as viewer:
            for path in (
                "/api/clients",
                f"/api/clients/{client_id}",
                f"/api/clients/{client_id}/usage",
                f"/api/clients/{client_id}/tokens",
            ):
                answer = await viewer.get(path)
                assert answer.status_code == 200, (path, answer.text)
                assert str(client["token"]) not in answer.text
            for method, path, body in [
                ("POST", "/api/clients", {"name": "sneaky"}),
                ("PUT", f"/api/clients/{client_id}", {"is_active": False}),
                ("DELETE", f"/api/clients/{client_id}", None),
                ("POST", f"/api/clients/{client_id}/tokens", {}),
                ("DELETE", f"/api/clients/{client_id}/tokens/{key['id']}", None),
            ]:
                answer = await viewer.request(method, path, json=body)
                assert answer.status_code == 403, (method, path, answer.text)
                assert answer.json()["error"]["code"] == "admin_required"
        # Nothing changed.
        assert (await admin.get(f"/api/clients/{client_id}")).json()["is_active"] is True
        assert len((await admin.get("/api/clients")).json()["data"]) == 1
        await call(dashboard, str(client["token"]))


@on_each_backend
async def test_every_change_is_audited_without_the_key(dashboard: RunningService) -> None:
    async with signed_in(dashboard) as admin:
        before = len(await audit_rows(dashboard))
        client = await new_client(admin)
        client_id, key = client["id"], client["key"]
        assert isinstance(key, dict)
        await admin.put(f"/api/clients/{client_id}", json={"name": "renamed"})
        second = (await admin.post(f"/api/clients/{client_id}/tokens", json={})).json()
        await admin.delete(f"/api/clients/{client_id}/tokens/{key['id']}")
        await admin.delete(f"/api/clients/{client_id}")
        rows = (await audit_rows(dashboard))[: len(await audit_rows(dashboard)) - before]
        assert [(row.action, row.target, row.username) for row in reversed(rows)] == [
            ("client.create", client_id, "admin"),
            ("client.update", client_id, "admin"),
            ("client.token.create", client_id, "admin"),
            ("client.token.revoke", client_id, "admin"),
            ("client.delete", client_id, "admin"),
        ]
        assert rows[-1].detail["name"] == "billing app"
        assert rows[-2].detail == {"name": "renamed"}
        for row in rows:
            for token in (str(client["token"]), second["token"]):
                assert token not in str(row.detail)
                assert token[7:-4] not in str(row.detail)
