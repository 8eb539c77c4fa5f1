"""Providers' reachability: the last call's outcome and age, and the probe of idle providers.

Real gateways against the fakes (or against nothing at all: a closed port, a server that never
answers), read back through ``/api/providers``, ``/api/system/health`` and ``/metrics``.
"""

from __future__ import annotations

import socket
from functools import partial
from typing import Any

import openai
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import StartGateway, sdk, signed_in
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.compat_upstreams import DEEPSEEK_LISTED, XAI_LISTED
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_upstream import ErrorReply, FakeOpenAI
from tests.test_metrics import scrape, value

PING = [{"role": "user", "content": "hello there gateway"}]
INTERVAL_S = 0.5  # the probe interval of these tests


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def only(provider: str, settings: dict[str, Any], interval: float = INTERVAL_S) -> dict[str, Any]:
    """Config data with ``provider`` alone enabled (besides what the defaults leave off)."""
    return {
        "providers": {
            "reachability_probe_interval_s": interval,
            "ollama": {"enabled": False},
            "mock": {"enabled": False},
            provider: {"timeout_s": 5, **settings},
        }
    }


async def reachability(gateway: RunningService, provider: str) -> dict[str, Any]:
    """What ``/api/providers`` says of ``provider``'s reachability."""
    async with signed_in(gateway) as client:
        answer = await client.get("/api/providers")
    assert answer.status_code == 200, answer.text
    row = next(p for p in answer.json()["data"] if p["name"] == provider)
    shown: dict[str, Any] = row["statistics"]["reachability"]  # live, as the other figures
    return shown


async def wait_for_state(
    gateway: RunningService, provider: str, state: str, within: float
) -> tuple[dict[str, Any], list[str]]:
    """Poll until the state is ``state``; every state seen on the way."""
    seen: list[str] = []
    with trio.fail_after(within):
        while True:
            shown = await reachability(gateway, provider)
            seen.append(shown["state"])
            if shown["state"] == state:
                return shown, seen
            await trio.sleep(0.05)


async def test_nothing_listening_is_unreachable_within_one_interval(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    gateway = await start_gateway(
        only("openai", {"base_url": f"http://127.0.0.1:{port}/v1", "api_key": "sk-test-key-abc"})
    )
    shown, seen = await wait_for_state(gateway, "openai", "unreachable", within=INTERVAL_S * 4)
    assert "reachable" not in seen  # never shown healthy before anyone asked it
    assert set(seen) <= {"unknown", "unreachable"}
    assert shown["via"] == "probe"
    assert shown["reason"] == "connection refused"
    assert shown["status"] is None
    assert 0 <= shown["age_s"] < INTERVAL_S * 4
    # Said once, when it was found out, not at every probe.
    await trio.sleep(INTERVAL_S * 3)
    said = "provider=openai unreachable: connection refused"
    assert caplog.text.count(said) == 1

    async with signed_in(gateway) as client:
        health = (await client.get("/api/system/health")).json()
    assert health["providers"]["openai"]["reachability"]["state"] == "unreachable"
    _, samples, _ = await scrape(gateway)
    assert value(samples, "llm_proxy_provider_reachable", provider="openai") == 0


async def test_ollama_with_nothing_listening_never_shows_reachable(
    start_gateway: StartGateway,
) -> None:
    port = closed_port()
    gateway = await start_gateway(only("ollama", {"base_url": f"http://127.0.0.1:{port}"}))
    shown, seen = await wait_for_state(gateway, "ollama", "unreachable", within=INTERVAL_S * 4)
    assert "reachable" not in seen
    assert shown["reason"] == "connection refused"


async def test_a_call_that_answered_shows_reachable_without_any_probe(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    # An interval far longer than the test: whatever is known comes from the call itself.
    gateway = await start_gateway(
        only("openai", {"base_url": fake_openai.base_url, "api_key": fake_openai.api_key}, 3600)
    )
    assert (await reachability(gateway, "openai"))["state"] == "unknown"
    await sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=PING)
    shown = await reachability(gateway, "openai")
    assert shown["state"] == "reachable"
    assert shown["via"] == "call"
    assert shown["status"] == 200
    assert shown["reason"] is None
    assert shown["age_s"] < 5
    assert not [r for r in fake_openai.received if r.path.endswith("/models")]
    _, samples, _ = await scrape(gateway)
    assert value(samples, "llm_proxy_provider_reachable", provider="openai") == 1


async def test_a_refused_key_shows_unreachable_with_the_upstream_status(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await start_gateway(
        only("openai", {"base_url": fake_openai.base_url, "api_key": "sk-wrong-key-123456"}, 3600)
    )
    with pytest.raises(Exception, match="credentials"):
        await sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=PING)
    shown = await reachability(gateway, "openai")
    assert (shown["state"], shown["via"], shown["status"], shown["reason"]) == (
        "unreachable",
        "call",
        401,
        "key refused",
    )


async def test_no_probe_while_real_calls_keep_the_provider_fresh(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await start_gateway(
        only("openai", {"base_url": fake_openai.base_url, "api_key": fake_openai.api_key})
    )
    client = sdk(gateway)
    with trio.move_on_after(INTERVAL_S * 5):
        while True:
            await client.chat.completions.create(model="gpt-4o-mini", messages=PING)
            await trio.sleep(INTERVAL_S / 5)
    assert not [r for r in fake_openai.received if r.path.endswith("/models")]
    assert (await reachability(gateway, "openai"))["via"] == "call"
    # Left idle, it is probed: one cheap GET of the model list, with the provider's key.
    with trio.fail_after(INTERVAL_S * 4):
        while not [r for r in fake_openai.received if r.path.endswith("/models")]:
            await trio.sleep(0.05)
    probe = next(r for r in fake_openai.received if r.path.endswith("/models"))
    assert (probe.method, probe.path) == ("GET", "/v1/models")
    assert probe.headers["authorization"] == f"Bearer {fake_openai.api_key}"
    with trio.fail_after(2):
        while (shown := await reachability(gateway, "openai"))["via"] != "probe":
            await trio.sleep(0.05)
    assert (shown["state"], shown["status"]) == ("reachable", 200)


async def _never_answer(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()


async def test_the_probe_has_a_deadline(start_gateway: StartGateway, nursery: trio.Nursery) -> None:
    serve = partial(trio.serve_tcp, _never_answer, 0, host="127.0.0.1")
    listeners = await nursery.start(serve)
    port = listeners[0].socket.getsockname()[1]
    gateway = await start_gateway(
        only("openai", {"base_url": f"http://127.0.0.1:{port}/v1", "api_key": "sk-test-key-abc"})
    )
    shown, seen = await wait_for_state(gateway, "openai", "unreachable", within=INTERVAL_S * 6)
    assert "reachable" not in seen
    assert (shown["via"], shown["reason"]) == ("probe", "timeout")


async def test_a_provider_switched_off_is_never_probed(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await start_gateway(
        only("openai", {"base_url": fake_openai.base_url, "api_key": fake_openai.api_key})
    )
    async with signed_in(gateway) as client:
        answer = await client.put("/api/providers/openai", json={"enabled": False})
        assert answer.status_code == 200, answer.text
    fake_openai.received.clear()
    await trio.sleep(INTERVAL_S * 4)
    assert not [r for r in fake_openai.received if r.path.endswith("/models")]


@pytest.mark.parametrize(
    ("provider", "path"),
    [
        ("gemini", "/v1beta/models"),
        ("ollama", "/api/tags"),
        ("anthropic", "/v1/models"),
        ("deepseek", "/models"),
        ("grok", "/models"),
    ],
)
async def test_each_upstream_is_probed_at_its_model_list(
    start_gateway: StartGateway, nursery: trio.Nursery, provider: str, path: str
) -> None:
    fake: FakeOpenAI | FakeGemini | FakeOllama | FakeAnthropic
    if provider == "gemini":
        fake = FakeGemini()
    elif provider == "ollama":
        fake = FakeOllama()
    elif provider == "anthropic":
        fake = FakeAnthropic()
    elif provider == "deepseek":
        fake = FakeOpenAI(listed=DEEPSEEK_LISTED)
    elif provider == "grok":
        fake = FakeOpenAI(listed=XAI_LISTED)
    else:
        fake = FakeOpenAI()
    await nursery.start(fake.run)
    # DeepSeek's and xAI's base URLs are OpenAI-compatible ones: the fake's ends in /v1.
    settings = {"base_url": fake.base_url}
    if fake.api_key is not None:
        settings["api_key"] = fake.api_key
    gateway = await start_gateway(only(provider, settings))
    shown, _ = await wait_for_state(gateway, provider, "reachable", within=INTERVAL_S * 6)
    assert shown["status"] == 200
    listed = [r for r in fake.received if r.method == "GET"]
    assert listed, "the probe never reached the fake"
    assert listed[0].path.endswith(path)


async def test_the_mock_is_always_reachable(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(only("mock", {}))
    shown, _ = await wait_for_state(gateway, "mock", "reachable", within=INTERVAL_S * 4)
    assert (shown["via"], shown["status"]) == ("probe", 200)


async def _html_page(stream: trio.SocketStream) -> None:
    await stream.receive_some(65536)
    page = b"<html>Sign in to the hotel Wi-Fi</html>"
    await stream.send_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (len(page), page)
    )
    await stream.aclose()


async def test_a_200_that_is_no_model_list_is_not_reachable(
    start_gateway: StartGateway, nursery: trio.Nursery
) -> None:
    listeners = await nursery.start(partial(trio.serve_tcp, _html_page, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    gateway = await start_gateway(
        only("openai", {"base_url": f"http://127.0.0.1:{port}/v1", "api_key": "sk-test-key-abc"})
    )
    shown, seen = await wait_for_state(gateway, "openai", "unreachable", within=INTERVAL_S * 4)
    assert "reachable" not in seen
    assert (shown["via"], shown["reason"]) == ("probe", "bad answer")


@pytest.mark.parametrize(
    ("status", "state", "reason"),
    [(503, "unreachable", "server error"), (429, "reachable", "rate limited")],
)
async def test_an_upstream_error_says_what_the_upstream_answered(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, status: int, state: str, reason: str
) -> None:
    # A 5xx is the upstream failing; a 429 is an upstream that answers, only busy.
    gateway = await start_gateway(
        only("openai", {"base_url": fake_openai.base_url, "api_key": fake_openai.api_key}, 3600)
    )
    fake_openai.enqueue(ErrorReply(status, message="not now"))
    with pytest.raises(openai.APIStatusError):
        await sdk(gateway).chat.completions.create(model="gpt-4o-mini", messages=PING)
    shown = await reachability(gateway, "openai")
    assert (shown["state"], shown["via"], shown["status"], shown["reason"]) == (
        state,
        "call",
        status,
        reason,
    )


async def test_the_settings_show_the_probe_interval(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(only("mock", {}, 42))
    async with signed_in(gateway) as client:
        shown = (await client.get("/api/settings")).json()["config"]["providers"]
    assert shown["reachability_probe_interval_s"] == 42
    assert shown["mock"]["enabled"] is True
