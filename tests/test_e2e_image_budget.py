"""Images fetched for Gemini and Ollama, end to end, against a flood: the memory they may hold
and the fetch slots one client may take are bounded, for the gateway and for each client."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from proxy.service import RunningService
from storage import create_client
from tests.conftest import StartGateway, http, signed_in
from tests.fakes.image_server import FakeImageServer
from tests.fakes.ollama_upstream import FakeOllama, StallMidStream

GUARD_S = 10  # only turns a hang into a failure: every wait below ends by an event
IMAGE = 1_500_000  # bytes of each large image: 2,000,000 as base64
INLINED = 2_000_000


async def client_key(gateway: RunningService, name: str) -> str:
    """A new client's API key, known to the running gateway at once."""
    _client, _token, key = await gateway.gateway.writer.execute(
        partial(create_client, name=name, now_ms=int(time.time() * 1000))
    )
    await gateway.gateway.directory.refresh()
    return key


def looking_at(*urls: str, stream: bool = False) -> dict[str, Any]:
    """A chat body for Ollama asking about these image URLs."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": "What is this?"}]
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return {
        "model": "ollama/llama3.2",
        "messages": [{"role": "user", "content": parts}],
        "stream": stream,
    }


async def call(gateway: RunningService, key: str, body: dict[str, Any]) -> httpx.Response:
    """POST one chat call with ``key``."""
    async with http(gateway) as client:
        return await client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )


def chats(fake: FakeOllama) -> int:
    """Chat calls the fake upstream has received (it also sees the model list polled)."""
    return sum(1 for request in fake.received if request.path == "/api/chat")


async def until(condition: Any) -> None:
    """Wait (by polling an in-process counter) until ``condition()`` holds."""
    with trio.fail_after(GUARD_S):
        while not condition():
            await trio.sleep(0.01)


def ollama_gateway(start_gateway: StartGateway, fake: FakeOllama, **images: object) -> Any:
    return start_gateway(
        {
            "providers": {"ollama": {"base_url": fake.base_url, "timeout_s": 30}},
            "images": {"allow_private_networks": True, "fetch_timeout_s": 20, **images},
            "limits": {"default_client_requests_per_minute": 0},
        }
    )


async def test_one_clients_fetches_leave_another_client_a_slot_at_once(
    start_gateway: StartGateway, fake_ollama: FakeOllama, image_host: FakeImageServer
) -> None:
    gateway = await ollama_gateway(start_gateway, fake_ollama)
    flooder, bystander = await client_key(gateway, "flooder"), await client_key(gateway, "other")
    held = f"{image_host.base_url}/held.png"
    answers: list[int] = []

    async def flood(r: int) -> None:
        body = looking_at(*(f"{held}?r={r}&i={i}" for i in range(5)))
        answers.append((await call(gateway, flooder, body)).status_code)

    async with trio.open_nursery() as nursery:
        for r in range(4):  # 20 images, more than the gateway's 16 fetch slots
            nursery.start_soon(flood, r)
        await until(lambda: image_host.held >= 4)
        # Let the flood take every fetch slot it can get before the other client arrives.
        await trio.testing.wait_all_tasks_blocked(cushion=0.1)
        assert image_host.held == 4  # images.max_concurrent_fetches_per_client

        with trio.fail_after(GUARD_S):
            alone = await call(gateway, bystander, looking_at(f"{image_host.base_url}/cat.png"))
        # Answered while every one of the flood's fetches is still held by the image host.
        assert alone.status_code == 200, alone.text
        assert image_host.held == 4
        assert answers == []
        image_host.release.set()
    assert answers == [200] * 4
    assert image_host.held_queries.count("r=0&i=0") == 1


async def test_image_bytes_in_memory_are_bounded_for_each_client_and_for_the_gateway(
    start_gateway: StartGateway, fake_ollama: FakeOllama, image_host: FakeImageServer
) -> None:
    gateway = await ollama_gateway(
        start_gateway,
        fake_ollama,
        max_bytes=2_000_000,
        max_bytes_in_flight=4 * INLINED,
        max_bytes_in_flight_per_client=2 * INLINED,
    )
    keys = {name: await client_key(gateway, name) for name in ("a", "b", "c")}
    large = f"{image_host.base_url}/large.png?bytes={IMAGE}"
    fake_ollama.hold = trio.Event()  # the upstream takes the call, then answers on release
    first: dict[str, httpx.Response] = {}

    async def holds_its_images(name: str) -> None:
        body = looking_at(f"{large}&{name}=1", f"{large}&{name}=2")
        first[name] = await call(gateway, keys[name], body)

    async with trio.open_nursery() as nursery:
        # Client a's call holds 2 images (its whole share) until the upstream answers.
        nursery.start_soon(holds_its_images, "a")
        await until(lambda: chats(fake_ollama) == 1)
        with trio.fail_after(GUARD_S):
            over_share = await call(gateway, keys["a"], looking_at(f"{large}&a=3"))
        assert over_share.status_code == 429, over_share.text
        assert int(over_share.headers["retry-after"]) >= 1
        error = over_share.json()["error"]
        assert error["type"] == "rate_limit_error"
        assert "max_bytes_in_flight_per_client" in error["message"]

        # Client b takes the rest of the gateway's budget; client c finds none left: 503.
        nursery.start_soon(holds_its_images, "b")
        await until(lambda: chats(fake_ollama) == 2)
        with trio.fail_after(GUARD_S):
            over_budget = await call(gateway, keys["c"], looking_at(f"{large}&c=1"))
        assert over_budget.status_code == 503, over_budget.text
        assert int(over_budget.headers["retry-after"]) >= 1
        assert "max_bytes_in_flight" in over_budget.json()["error"]["message"]
        fake_ollama.hold.set()

    assert [first[name].status_code for name in "ab"] == [200, 200]
    stats = gateway.gateway.images.statistics()
    assert stats.peak_bytes_reserved == 4 * INLINED  # never more than max_bytes_in_flight
    assert stats.bytes_reserved == 0
    assert (stats.refused_client_share, stats.refused_budget) == (1, 1)
    # Nobody waits for what the refused calls had reserved: c's call goes through now.
    assert (await call(gateway, keys["c"], looking_at(f"{large}&c=2"))).status_code == 200


async def test_a_streamed_calls_images_are_released_once_the_upstream_has_them(
    start_gateway: StartGateway, fake_ollama: FakeOllama, image_host: FakeImageServer
) -> None:
    gateway = await ollama_gateway(start_gateway, fake_ollama)
    key = await client_key(gateway, "streamer")
    fake_ollama.enqueue(StallMidStream(after_chunks=1, seconds=GUARD_S))
    body = looking_at(f"{image_host.base_url}/large.png?bytes={IMAGE}", stream=True)
    async with http(gateway) as client:
        request = client.build_request(
            "POST", "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )
        response = await client.send(request, stream=True)
        try:
            assert response.status_code == 200
            stats = gateway.gateway.images.statistics()
            # The answer is still streaming (stalled): its images no longer count.
            assert stats.peak_bytes_reserved == INLINED
            assert stats.bytes_reserved == 0
        finally:
            await response.aclose()


@pytest.mark.parametrize("stream", [False, True])
async def test_the_image_statistics_are_in_health_and_metrics(
    start_gateway: StartGateway,
    fake_ollama: FakeOllama,
    image_host: FakeImageServer,
    stream: bool,
) -> None:
    gateway = await ollama_gateway(start_gateway, fake_ollama)
    key = await client_key(gateway, "x")
    answer = await call(gateway, key, looking_at(f"{image_host.base_url}/cat.png", stream=stream))
    assert answer.status_code == 200
    async with signed_in(gateway) as admin:
        health = (await admin.get("/api/system/health")).json()
        metrics = (await admin.get("/metrics")).text
    assert health["images"]["bytes_reserved"] == 0
    assert health["images"]["peak_bytes_reserved"] > 0
    assert health["images"]["max_bytes_in_flight"] == 256_000_000
    assert "llm_proxy_image_bytes_reserved 0" in metrics
    peak = [line for line in metrics.splitlines() if line.startswith("llm_proxy_image_bytes_peak")]
    assert peak
    assert float(peak[0].split()[-1]) > 0
