"""Upstream text never carries a configured secret out of the gateway (issue 13, item 4).

An upstream error body that echoes the request's ``Authorization`` header (a debugging proxy, a
misconfigured server) used to reach the API client, the log, ``llm_requests`` and the dashboard.
Every provider key and every static ``[auth] tokens`` entry, as is, URL-encoded or JSON-escaped,
must be gone from all of them, for every status and for errors inside a stream.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, logged, signed_in
from tests.fakes.hostile_upstream import Answer, HostileUpstream

OPENAI_KEY = "sk-proj-Op3rat0r/openai+key=0123456789"
GEMINI_KEY = "AIzaSyOperatorGemini_key-0123456789"
OLLAMA_KEY = "ollama-proxy-key/0123456789+abc"
STATIC_TOKEN = "static+token/of=the-gateway-0123456789"
SECRETS = (OPENAI_KEY, GEMINI_KEY, OLLAMA_KEY, STATIC_TOKEN, CLIENT_KEY)
VIEWER = ("vera", "a-long-enough-viewer-password")


def lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def forms(secret: str) -> set[str]:
    """The ways an upstream may echo a secret that the gateway promises to catch."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        lower_hex(quote(secret, safe="")),
        secret.replace("/", "\\/"),
        json.dumps(secret)[1:-1],
    }


def leaks(text: str) -> list[str]:
    """Which secret forms ``text`` holds (as a short label, not the secret)."""
    return sorted(
        f"{secret[:8]}…:{form[:12]}…"
        for secret in SECRETS
        for form in forms(secret)
        if form in text
    )


def json_error(status: int, message: str, **fields: object) -> Answer:
    body = json.dumps({"error": {"message": message, "type": "server_error", **fields}})
    return Answer((body.encode(),), status=status)


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)


CHUNK = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "delta": {"content": "partial"}, "finish_reason": None}],
}


@pytest.fixture
async def upstreams(nursery: trio.Nursery) -> dict[str, HostileUpstream]:
    started = {name: HostileUpstream() for name in ("openai", "gemini", "ollama")}
    for upstream in started.values():
        await nursery.start(upstream.run)
    return started


@pytest.fixture
async def gateway(
    start_gateway: StartGateway, upstreams: dict[str, HostileUpstream]
) -> RunningService:
    keys = {"openai": OPENAI_KEY, "gemini": GEMINI_KEY, "ollama": OLLAMA_KEY}
    providers = {
        name: {
            "base_url": up.base_url,
            "api_key": keys[name],
            "timeout_s": 5,
            "breaker_failures": 99,
        }
        for name, up in upstreams.items()
    }
    return await start_gateway(
        {
            "auth": {"tokens": [CLIENT_KEY, STATIC_TOKEN]},
            "limits": {"default_client_requests_per_minute": 0},
            "providers": providers,
        }
    )


async def chat(gateway: RunningService, model: str, *, stream: bool = False) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        return await client.post(
            "/v1/chat/completions",
            json={
                "model": model,
                "messages": [{"role": "user", "content": "hi"}],
                "stream": stream,
            },
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
        )


async def test_an_upstream_echoing_secrets_reaches_no_client_log_row_or_viewer(
    gateway: RunningService,
    upstreams: dict[str, HostileUpstream],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    openai_up, gemini_up, ollama_up = upstreams["openai"], upstreams["gemini"], upstreams["ollama"]
    openai_up.enqueue(
        # 500 echoing the request's own headers
        json_error(
            500,
            f"internal error; request headers: {{'Authorization': 'Bearer {OPENAI_KEY}', "
            f"'x-api-key': '{STATIC_TOKEN}'}}",
        ),
        # 400 naming other providers' keys, URL-encoded, in message, param and code
        json_error(
            400,
            f"bad header x-goog-api-key={GEMINI_KEY} from ?key={quote(OLLAMA_KEY, safe='')}",
            param=OPENAI_KEY,
            code=f"bad_{quote_plus(STATIC_TOKEN)}",
        ),
        # a 502 HTML page quoted as text, the key JSON-escaped with escaped slashes
        Answer(
            (
                b"<html><pre>"
                + json.dumps({"authorization": f"Bearer {OPENAI_KEY}"}).replace("/", "\\/").encode()
                + lower_hex(quote(STATIC_TOKEN, safe="")).encode()
                + b"</pre></html>",
            ),
            status=502,
            content_type="text/html",
        ),
        # an error event inside a stream that already started
        Answer(
            (sse(CHUNK), sse({"error": {"message": f"upstream died holding Bearer {OPENAI_KEY}"}})),
            content_type="text/event-stream",
            interval_s=0.05,
        ),
    )
    gemini_up.enqueue(
        Answer(
            (
                json.dumps(
                    {
                        "error": {
                            "code": 429,
                            "message": f"Quota exceeded for key {GEMINI_KEY} ({CLIENT_KEY})",
                            "status": "RESOURCE_EXHAUSTED",
                        }
                    }
                ).encode(),
            ),
            status=429,
        )
    )
    # A 200 whose body is an error: Ollama's way, and a "malformed answer" message quotes it.
    ollama_up.enqueue(
        Answer((json.dumps({"error": f"proxy refused Bearer {OLLAMA_KEY}"}).encode(),))
    )

    answers = [
        await chat(gateway, "gpt-4o-mini"),
        await chat(gateway, "gpt-4o-mini"),
        await chat(gateway, "gpt-4o-mini"),
        await chat(gateway, "gpt-4o-mini", stream=True),
        await chat(gateway, "gemini-2.5-flash"),
        await chat(gateway, "ollama/llama3.2"),
    ]
    assert [a.status_code for a in answers] == [502, 400, 502, 200, 429, 502]

    # The model listing and the dashboard's test call see upstream errors too.
    openai_up.listings.append(json_error(500, f"listing failed for Bearer {OPENAI_KEY}"))
    openai_up.enqueue(json_error(500, f"test failed: {GEMINI_KEY} / {OPENAI_KEY}"))
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        listing = await client.get("/v1/models", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    async with signed_in(gateway) as admin:
        made = await admin.post(
            "/api/users", json={"username": VIEWER[0], "role": "viewer", "password": VIEWER[1]}
        )
        assert made.status_code == 201, made.text
        tested = await admin.post("/api/providers/openai/test")
        exports = [
            await admin.get("/api/usage/export", params={"format": "json"}),
            await admin.get("/api/usage/export", params={"format": "csv"}),
            await admin.get("/api/system/logs", params={"limit": 1000}),
        ]

    rows = await logged(gateway, len(answers))
    async with signed_in(gateway, *VIEWER) as viewer:
        page = await viewer.get("/api/usage/requests", params={"limit": 100})
        details = [await viewer.get(f"/api/usage/requests/{row['id']}") for row in rows]
    assert page.status_code == 200

    seen = {
        "client": "\n".join(a.text for a in [*answers, listing]),
        "test call": tested.text,
        "log": caplog.text,
        "log buffer": str(gateway.gateway.log_buffer.recent(10_000)),
        "llm_requests": str(rows),
        "viewer's request log": page.text + "".join(d.text for d in details),
        "exports and logs page": "".join(e.text for e in exports),
    }
    assert {where: leaks(text) for where, text in seen.items()} == {where: [] for where in seen}
    # What is left of each message still says what happened.
    assert "[redacted]" in answers[0].json()["error"]["message"]
    assert answers[1].json()["error"]["param"] == "[redacted]"
    assert '"error"' in answers[3].text
    assert "[redacted]" in answers[3].text
    assert tested.json()["ok"] is False
    assert "[redacted]" in tested.json()["error"]
    assert sum("[redacted]" in str(row["error_message"]) for row in rows) == len(answers)
