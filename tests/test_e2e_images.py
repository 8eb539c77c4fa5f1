"""Images end to end: URLs pass through to upstreams that fetch them, and are fetched (safely) by
the gateway for upstreams that need the bytes inline."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest

from proxy.service import RunningService
from tests.conftest import StartGateway, logged, sdk
from tests.fakes.image_server import CAT_PNG, FakeImageServer
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI


def looking_at(url: str) -> list[Any]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
            ],
        }
    ]


def ollama_gateway(start_gateway: StartGateway, fake: FakeOllama, *, allow_private: bool) -> Any:
    return start_gateway(
        {
            "providers": {"ollama": {"base_url": fake.base_url}},
            "images": {"allow_private_networks": allow_private, "fetch_timeout_s": 2},
        }
    )


async def test_remote_image_is_fetched_and_sent_inline_to_ollama(
    start_gateway: StartGateway, fake_ollama: FakeOllama, image_host: FakeImageServer
) -> None:
    gateway: RunningService = await ollama_gateway(start_gateway, fake_ollama, allow_private=True)
    await sdk(gateway).chat.completions.create(
        model="ollama/llama3.2", messages=looking_at(f"{image_host.base_url}/cat.png")
    )
    chat = [r.body for r in fake_ollama.received if r.path == "/api/chat"][-1]
    assert chat["messages"][0]["images"] == [base64.b64encode(CAT_PNG).decode()]
    assert image_host.hits["/cat.png"] == 1
    (row,) = await logged(gateway)
    assert row["has_images"] is True


async def test_private_address_is_refused_without_a_request(
    start_gateway: StartGateway, fake_ollama: FakeOllama, image_host: FakeImageServer
) -> None:
    gateway: RunningService = await ollama_gateway(start_gateway, fake_ollama, allow_private=False)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).chat.completions.create(
            model="ollama/llama3.2",
            messages=looking_at(f"http://localhost:{image_host.port}/cat.png"),
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["param"] == "messages[0].content[1].image_url"
    # Only that the address is refused: not what localhost resolves to, nor what kind it is.
    assert error["message"].endswith("the address of localhost is not allowed")
    assert "127.0.0.1" not in error["message"]
    assert "::1" not in error["message"]
    assert "loopback" not in error["message"]
    assert image_host.hits["/cat.png"] == 0
    assert not [r for r in fake_ollama.received if r.path == "/api/chat"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/page.html", "text/html"), ("/missing", "404")],
)
async def test_broken_image_is_a_400_naming_the_part(
    start_gateway: StartGateway,
    fake_ollama: FakeOllama,
    image_host: FakeImageServer,
    path: str,
    reason: str,
) -> None:
    gateway: RunningService = await ollama_gateway(start_gateway, fake_ollama, allow_private=True)
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).chat.completions.create(
            model="ollama/llama3.2", messages=looking_at(f"{image_host.base_url}{path}")
        )
    assert "messages[0].content[1].image_url" in caught.value.message
    assert reason in caught.value.message


async def test_openai_gets_the_url_itself(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, image_host: FakeImageServer
) -> None:
    gateway = await start_gateway(
        {"providers": {"openai": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY}}}
    )
    url = f"{image_host.base_url}/cat.png"
    await sdk(gateway).chat.completions.create(model="gpt-4o", messages=looking_at(url))
    part = fake_openai.received[-1].body["messages"][0]["content"][1]
    assert part == {"type": "image_url", "image_url": {"url": url, "detail": "low"}}
    assert image_host.hits["/cat.png"] == 0
