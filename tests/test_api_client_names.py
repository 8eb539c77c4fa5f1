"""Clients by name: the live feed, the usage breakdown and series, the request log and a call's
details name each call's client (its id beside it); a rename shows everywhere at once."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from proxy.service import RunningService
from storage.clients import update_client
from tests.conftest import StartGateway, logged, on_each_backend, sdk, signed_in

HELLO = [{"role": "user", "content": "hello"}]


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> RunningService:
    return await start_gateway(
        {
            "limits": {"default_client_requests_per_minute": 0},
            "providers": {"ollama": {"enabled": False}},
        }
    )


async def create_client(admin: httpx.AsyncClient, name: str) -> tuple[str, str]:
    made = await admin.post("/api/clients", json={"name": name})
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["token"]


async def next_request(socket: Any) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            event = json.loads(await socket.get_message())
            if event["type"] == "request":
                return event  # type: ignore[no-any-return]


def feed(gateway: RunningService, admin: httpx.AsyncClient) -> Any:
    url = gateway.base_url.replace("http://", "ws://", 1) + "/api/ws"
    headers = [(b"authorization", admin.headers["authorization"].encode())]
    return open_websocket_url(url, extra_headers=headers, disconnect_timeout=2)


async def api(admin: httpx.AsyncClient, path: str) -> Any:
    answer = await admin.get(path)
    assert answer.status_code == 200, answer.text
    return answer.json()


@on_each_backend
async def test_every_view_names_the_client(gateway: RunningService) -> None:
    async with signed_in(gateway) as admin, feed(gateway, admin) as socket:
        client_id, key = await create_client(admin, "Team Alpha")
        await sdk(gateway, key).chat.completions.create(model="mock", messages=HELLO)
        event = await next_request(socket)
        assert (event["client_id"], event["client_name"]) == (client_id, "Team Alpha")
        await logged(gateway)

        (row,) = (await api(admin, "/api/usage/requests"))["data"]
        assert (row["client_id"], row["client_name"]) == (client_id, "Team Alpha")
        detail = await api(admin, f"/api/usage/requests/{row['id']}")
        assert (detail["client_id"], detail["client_name"]) == (client_id, "Team Alpha")
        (top,) = (await api(admin, "/api/usage/clients"))["data"]
        assert (top["key"], top["name"]) == (client_id, "Team Alpha")
        series = await api(admin, "/api/usage/timeseries?group_by=client")
        assert series["names"] == {client_id: "Team Alpha"}
        # Other dimensions have no names: their keys are what they are called.
        (provider,) = (await api(admin, "/api/usage/providers"))["data"]
        assert "name" not in provider
        assert "names" not in await api(admin, "/api/usage/timeseries?group_by=model")

        renamed = await admin.put(f"/api/clients/{client_id}", json={"name": "Team Beta"})
        assert renamed.status_code == 200, renamed.text
        await sdk(gateway, key).chat.completions.create(model="mock", messages=HELLO)
        event = await next_request(socket)
        assert (event["client_id"], event["client_name"]) == (client_id, "Team Beta")
        await logged(gateway, 2)
        rows = (await api(admin, "/api/usage/requests"))["data"]
        # A call keeps its client's id: the older call shows the new name too.
        assert [r["client_name"] for r in rows] == ["Team Beta", "Team Beta"]
        (top,) = (await api(admin, "/api/usage/clients"))["data"]
        assert top["name"] == "Team Beta"


async def test_static_and_deleted_clients_have_no_name(gateway: RunningService) -> None:
    async with signed_in(gateway) as admin, feed(gateway, admin) as socket:
        # The configured static key's calls keep their "static" label.
        await sdk(gateway).chat.completions.create(model="mock", messages=HELLO)
        event = await next_request(socket)
        assert (event["client_id"], event["client_name"]) == ("static", None)
        client_id, key = await create_client(admin, "Short lived")
        await sdk(gateway, key).chat.completions.create(model="mock", messages=HELLO)
        await next_request(socket)
        await logged(gateway, 2)
        assert (await admin.delete(f"/api/clients/{client_id}")).status_code == 200
        rows = (await api(admin, "/api/usage/requests"))["data"]
        # A deleted client's calls stay in the log under its id, without a name.
        assert [(r["client_id"], r["client_name"]) for r in rows] == [
            (client_id, None),
            ("static", None),
        ]
        detail = await api(admin, f"/api/usage/requests/{rows[0]['id']}")
        assert detail["client_name"] is None
        tops = (await api(admin, "/api/usage/clients"))["data"]
        assert {(t["key"], t["name"]) for t in tops} == {(client_id, None), ("static", None)}


async def test_a_rename_made_elsewhere_reaches_the_live_feed(gateway: RunningService) -> None:
    """As by ``llm-proxy clients update`` in another process: no refresh is asked for, the
    directory's poll of the change counter notices it."""
    async with signed_in(gateway) as admin, feed(gateway, admin) as socket:
        client_id, key = await create_client(admin, "Before")
        await gateway.gateway.writer.execute(
            partial(update_client, client_id=client_id, now_ms=now_ms(), name="After")
        )
        with trio.fail_after(10):
            while True:
                await sdk(gateway, key).chat.completions.create(model="mock", messages=HELLO)
                event = await next_request(socket)
                if event["client_name"] == "After":
                    break
                assert event["client_name"] == "Before"  # until the next poll (0.5 s)
                await trio.sleep(0.2)
