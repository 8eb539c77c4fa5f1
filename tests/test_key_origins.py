"""Provider keys go only to the origins they are bound to (issue 13, item 3).

A key from the file, the environment or a systemd credential may travel only to the origin of the
``base_url`` configured beside it (or the built-in default) and to the origins the file lists in
``allowed_base_urls``. The dashboard cannot move it elsewhere, a stored override from before is not
applied at start, and the one place that attaches keys to requests checks the origin as well.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import httpx
import openai
import pytest
import trio

from proxy.service import RunningService
from storage.provider_settings import put_provider_settings
from tests.conftest import StartGateway, sdk, signed_in
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI

KEYS = {"openai": "sk-operator-openai-key-0123456789", "gemini": "AIza-operator-gemini-key-98765"}
KEY_HEADERS = {"openai": "authorization", "gemini": "x-goog-api-key"}
MODELS = {"openai": "gpt-4o-mini", "gemini": "gemini-2.5-flash"}
HELLO = [{"role": "user", "content": "hello there gateway"}]


# -- end to end ------------------------------------------------------------------------------------


async def start_fake(kind: str, nursery: trio.Nursery) -> FakeOpenAI | FakeGemini:
    """A fake upstream that accepts the operator's key (so a leak would even "work")."""
    fake: FakeOpenAI | FakeGemini = (
        FakeOpenAI(api_key=KEYS[kind]) if kind == "openai" else FakeGemini(api_key=KEYS[kind])
    )
    await nursery.start(fake.run)
    return fake


def provider_config(kind: str, home: str, **extra: object) -> dict[str, Any]:
    return {
        "providers": {
            kind: {"base_url": home, "api_key": KEYS[kind], "timeout_s": 5, **extra},
        }
    }


def keys_received(fake: FakeOpenAI | FakeGemini, kind: str) -> list[str]:
    """Every request header (any name) or query that carried the operator's key."""
    return [
        f"{request.method} {request.path}"
        for request in fake.received
        if any(KEYS[kind] in value for value in request.headers.values())
        or KEYS[kind] in request.query
    ]


def origin_text(url: str) -> str:
    """How the gateway names an origin: scheme, host and explicit port."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}"


@pytest.mark.parametrize("kind", ["openai", "gemini"])
async def test_the_dashboard_cannot_send_a_provider_key_to_another_origin(
    kind: str, start_gateway: StartGateway, nursery: trio.Nursery
) -> None:
    home = await start_fake(kind, nursery)
    attacker = await start_fake(kind, nursery)  # 127.0.0.1 too, on another port
    gateway = await start_gateway(provider_config(kind, home.base_url))
    async with signed_in(gateway) as admin:
        moved = await admin.put(f"/api/providers/{kind}", json={"base_url": attacker.base_url})
        tested = await admin.post(f"/api/providers/{kind}/test", json={"model": MODELS[kind]})
        shown = (await admin.get(f"/api/providers/{kind}")).json()
    assert keys_received(attacker, kind) == []
    assert attacker.received == []
    assert moved.status_code == 400, moved.text
    error = moved.json()["error"]
    assert error["code"] == "base_url_not_allowed"
    assert error["param"] == "base_url"
    assert origin_text(attacker.base_url) in error["message"]
    assert f"[providers.{kind}] allowed_base_urls" in error["message"]
    assert KEYS[kind] not in moved.text
    # Nothing was stored or applied: the test call went home, with the key.
    assert tested.json()["ok"] is True, tested.text
    assert keys_received(home, kind)
    assert shown["base_url"] == home.base_url
    assert shown["overrides"] is None
    assert shown["key_origins"] == [origin_text(home.base_url)]


async def test_allowed_base_urls_let_the_dashboard_move_a_key_there(
    start_gateway: StartGateway, nursery: trio.Nursery
) -> None:
    home = await start_fake("openai", nursery)
    backup = await start_fake("openai", nursery)
    gateway = await start_gateway(
        provider_config("openai", home.base_url, allowed_base_urls=[backup.base_url + "/"])
    )
    async with signed_in(gateway) as admin:
        moved = await admin.put("/api/providers/openai", json={"base_url": backup.base_url})
        tested = await admin.post("/api/providers/openai/test", json={"model": "gpt-4o-mini"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["base_url"] == backup.base_url
    assert moved.json()["base_url_refused"] is None
    assert moved.json()["key_origins"] == [origin_text(home.base_url), origin_text(backup.base_url)]
    assert tested.json()["ok"] is True, tested.text
    assert keys_received(backup, "openai") == ["POST /v1/chat/completions"]


async def test_a_stored_override_no_longer_allowed_is_not_applied_at_start(
    start_gateway: StartGateway, nursery: trio.Nursery
) -> None:
    home = await start_fake("openai", nursery)
    elsewhere = await start_fake("openai", nursery)
    first = await start_gateway(provider_config("openai", home.base_url))
    # A row stored before keys were bound to origins (the API refuses it now).
    await first.gateway.writer.execute(
        partial(
            put_provider_settings,
            provider="openai",
            base_url=elsewhere.base_url,
            max_concurrency=9,
            now_ms=int(time.time() * 1000),
        )
    )
    first.stop()
    with trio.fail_after(10):
        await first.stopped.wait()
    again = await start_gateway(provider_config("openai", home.base_url))
    actor = again.gateway.providers["openai"]
    assert actor.config.base_url == home.base_url
    assert actor.statistics().max_concurrency == 9  # the rest of the row still applies
    warnings = [
        str(line["message"])
        for line in again.gateway.log_buffer.recent(1000)
        if line["level"] == "WARNING" and "openai" in str(line["message"])
    ]
    assert any(
        origin_text(elsewhere.base_url) in line and "allowed_base_urls" in line for line in warnings
    ), warnings
    completion = await sdk(again).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert completion.choices[0].message.content == "echo: hello there gateway"
    async with signed_in(again) as admin:
        shown = (await admin.get("/api/providers/openai")).json()
    assert shown["base_url"] == home.base_url
    assert shown["overrides"]["base_url"] == elsewhere.base_url
    assert origin_text(elsewhere.base_url) in shown["base_url_refused"]
    assert keys_received(elsewhere, "openai") == []


@pytest.mark.parametrize("kind", ["openai", "gemini"])
async def test_the_send_site_attaches_no_key_for_an_unbound_origin(
    kind: str, start_gateway: StartGateway, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever moves a running provider (a bug, a future route), the key stays home."""
    caplog.set_level(logging.WARNING)
    home = await start_fake(kind, nursery)
    attacker = await start_fake(kind, nursery)
    gateway: RunningService = await start_gateway(provider_config(kind, home.base_url))
    actor = gateway.gateway.providers[kind]
    actor.reconfigure(base_url=attacker.base_url)  # bypasses every check above this one
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(gateway).chat.completions.create(model=MODELS[kind], messages=HELLO)
    with pytest.raises(openai.APIStatusError):
        await sdk(gateway).chat.completions.create(model=MODELS[kind], messages=HELLO, stream=True)
    await actor.refresh_models()
    async with signed_in(gateway) as admin:
        tested = (await admin.post(f"/api/providers/{kind}/test")).json()
    assert keys_received(attacker, kind) == []
    assert attacker.received == []
    assert caught.value.status_code == 503
    body: Any = caught.value.body
    assert body["code"] == "base_url_not_allowed"
    assert origin_text(attacker.base_url) in body["message"]
    assert tested["ok"] is False
    assert tested["code"] == "base_url_not_allowed"
    assert KEYS[kind] not in caplog.text
