"""``/v1/embeddings`` end to end with the official ``openai`` SDK: passed through to the OpenAI
fake, embedded by Gemini's and Ollama's own APIs (their fakes), and by the in-process mock; single
and batch, float and base64 (the SDK decodes base64 itself: both must give the same floats);
logged with endpoint ``embeddings``, limited and priced like every call."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, http, logged, sdk
from tests.fakes.gemini_upstream import DEFAULT_API_KEY as GEMINI_KEY
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.openai_embeddings import embedding_of
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI
from tests.fakes.openai_wire import rate_limited

SMALL = "text-embedding-3-small"
TEXTS = ["The quick brown fox.", "jumps over", "the lazy dog, twice."]


@pytest.fixture
async def gateway(
    start_gateway: StartGateway,
    fake_openai: FakeOpenAI,
    fake_gemini: FakeGemini,
    fake_ollama: FakeOllama,
) -> RunningService:
    return await start_gateway(
        {
            "providers": {
                "openai": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY},
                "deepseek": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY},
                "gemini": {"base_url": fake_gemini.base_url, "api_key": GEMINI_KEY},
                "ollama": {"base_url": fake_ollama.base_url},
                "mock": {"enabled": True},
            },
            "models": {"embed": {"provider": "openai", "model": SMALL}},
        }
    )


def _close(left: list[float], right: list[float]) -> bool:
    return len(left) == len(right) and all(
        abs(a - b) < 1e-6 for a, b in zip(left, right, strict=True)
    )


async def test_one_input_passes_through_to_openai(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    answer = await sdk(gateway).embeddings.create(
        model="embed", input="hello", encoding_format="float"
    )
    assert answer.object == "list"
    (item,) = answer.data
    assert (item.index, item.object) == (0, "embedding")
    assert item.embedding == embedding_of("hello", SMALL)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == 1
    sent = fake_openai.received[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {"model": SMALL, "input": "hello", "encoding_format": "float"}
    (row,) = await logged(gateway)
    assert (row["endpoint"], row["provider"], row["model"]) == ("embeddings", "openai", "embed")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (1, 0)
    assert float(row["cost_usd"] or 0) > 0  # type: ignore[arg-type]


async def test_a_batch_in_base64_decodes_to_the_same_floats(
    gateway: RunningService, fake_openai: FakeOpenAI
) -> None:
    client = sdk(gateway)
    floats = await client.embeddings.create(
        model=SMALL, input=TEXTS, dimensions=256, encoding_format="float"
    )
    # The SDK asks for base64 by default and decodes it itself.
    decoded = await client.embeddings.create(model=SMALL, input=TEXTS, dimensions=256)
    assert fake_openai.received[-1].body["encoding_format"] == "base64"
    assert [d.index for d in decoded.data] == [0, 1, 2]
    for plain, packed in zip(floats.data, decoded.data, strict=True):
        assert len(plain.embedding) == 256
        assert _close(plain.embedding, packed.embedding)


@pytest.mark.parametrize("model", ["gemini-embedding-001", "ollama/nomic-embed-text", "mock"])
async def test_every_provider_answers_in_openais_shape_float_and_base64(
    gateway: RunningService, model: str
) -> None:
    client = sdk(gateway)
    floats = await client.embeddings.create(model=model, input=TEXTS, encoding_format="float")
    decoded = await client.embeddings.create(model=model, input=TEXTS)
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert floats.model
    for plain, packed in zip(floats.data, decoded.data, strict=True):
        assert plain.embedding
        assert _close(plain.embedding, packed.embedding)
    # The same text, the same vector; another text, another.
    again = await client.embeddings.create(model=model, input=TEXTS[0], encoding_format="float")
    assert _close(again.data[0].embedding, floats.data[0].embedding)
    assert not _close(floats.data[0].embedding, floats.data[1].embedding)
    assert floats.usage.prompt_tokens > 0
    rows = await logged(gateway, 3)
    assert {row["endpoint"] for row in rows} == {"embeddings"}


async def test_dimensions_reach_gemini_and_the_mock(
    gateway: RunningService, fake_gemini: FakeGemini
) -> None:
    client = sdk(gateway)
    answer = await client.embeddings.create(
        model="gemini-embedding-001", input=TEXTS, dimensions=128, encoding_format="float"
    )
    assert {len(d.embedding) for d in answer.data} == {128}
    sent = fake_gemini.received[-1]
    assert sent.path.endswith(":batchEmbedContents")
    assert [r["outputDimensionality"] for r in sent.body["requests"]] == [128] * 3
    mocked = await client.embeddings.create(
        model="mock", input="x", dimensions=64, encoding_format="float"
    )
    assert len(mocked.data[0].embedding) == 64


async def test_token_arrays_go_to_openai_only(gateway: RunningService) -> None:
    client = sdk(gateway)
    answer = await client.embeddings.create(model=SMALL, input=[[1, 2, 3]], encoding_format="float")
    assert answer.usage.prompt_tokens == 3
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="gemini-embedding-001", input=[[1, 2, 3]])
    assert caught.value.body["param"] == "input"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": SMALL}, "input"),
        ({"model": SMALL, "input": ""}, "input"),
        ({"model": SMALL, "input": []}, "input"),
        ({"model": SMALL, "input": ["a", ""]}, "input[1]"),
        ({"model": SMALL, "input": ["a", 5]}, "input[1]"),
        ({"model": SMALL, "input": ["a"] * 2049}, "input"),
        ({"model": SMALL, "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"model": SMALL, "input": "a", "dimensions": 0}, "dimensions"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    gateway: RunningService, body: dict[str, Any], param: str
) -> None:
    async with http(gateway) as client:
        answer = await client.post(
            "/v1/embeddings", json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param


async def test_a_provider_without_embeddings_is_a_400(gateway: RunningService) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).embeddings.create(model="deepseek-chat", input="x")
    assert "serves no embeddings" in caught.value.message


async def test_upstream_errors_and_fallbacks_as_for_chat(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    gateway = await start_gateway(
        {
            "providers": {
                "openai": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY},
                "mock": {"enabled": True},
                "ollama": {"enabled": False},
            },
            "fallbacks": {SMALL: ["mock"]},
        }
    )
    fake_openai.enqueue(rate_limited(retry_after="3"))
    answer = await sdk(gateway).embeddings.create(model=SMALL, input="hi", encoding_format="float")
    assert answer.data[0].embedding  # the mock took over after the 429
    (row,) = await logged(gateway)
    assert (row["provider"], row["attempts"]) == ("mock", 2)
