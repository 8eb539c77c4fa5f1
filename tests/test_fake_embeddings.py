"""Tests of the fakes' embeddings endpoints: OpenAI's through the official SDK and raw httpx,
Gemini's `embedContent`/`batchEmbedContents` and Ollama's `/api/embed` through raw httpx."""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import trio

from tests.fakes.gemini_embeddings import (
    MAX_BATCH_REQUESTS,
    MAX_INPUT_TOKENS,
    gemini_embedding_of,
)
from tests.fakes.gemini_upstream import DEFAULT_API_KEY as GEMINI_KEY
from tests.fakes.gemini_upstream import CutStream as GeminiCut
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.gemini_upstream import Garbage as GeminiGarbage
from tests.fakes.gemini_upstream import rate_limited as gemini_rate_limited
from tests.fakes.gemini_upstream import server_error as gemini_server_error
from tests.fakes.ollama_embeddings import CONTEXT_LENGTHS, ollama_embedding_of
from tests.fakes.ollama_upstream import CutStream as OllamaCut
from tests.fakes.ollama_upstream import ErrorReply as OllamaError
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.ollama_upstream import Garbage as OllamaGarbage
from tests.fakes.openai_embeddings import (
    EMBEDDING_MODELS,
    MAX_INPUTS,
    MAX_TOKENS_PER_INPUT,
    embedding_of,
    float32_base64,
)
from tests.fakes.openai_upstream import (
    CutStream,
    FakeOpenAI,
    Garbage,
    Stall,
    bad_key,
    rate_limited,
    server_error,
)
from tests.fakes.vectors import normalised

KEY = "sk-upstream-test-key"
AUTH = {"authorization": f"Bearer {KEY}"}


def norm(vector: list[float]) -> float:
    """The Euclidean length of a vector."""
    return math.sqrt(sum(x * x for x in vector))


# -- OpenAI -----------------------------------------------------------------------------------


@pytest.fixture
async def fake(nursery: trio.Nursery) -> FakeOpenAI:
    """A running fake OpenAI; the pytest-trio nursery cancels it at the end of the test."""
    upstream = FakeOpenAI(api_key=KEY)
    await nursery.start(upstream.run)
    return upstream


@pytest.fixture
async def http(fake: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    """A raw httpx client pointed at the fake OpenAI."""
    async with httpx.AsyncClient(base_url=fake.base_url, headers=AUTH, timeout=5.0) as client:
        yield client


@pytest.fixture
async def sdk(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official openai SDK pointed at the fake OpenAI."""
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0, timeout=5.0)
    try:
        yield client
    finally:
        await client.close()


async def test_sdk_float_single(fake: FakeOpenAI, sdk: openai.AsyncOpenAI) -> None:
    answer = await sdk.embeddings.create(
        model="text-embedding-3-small", input="the quick brown fox", encoding_format="float"
    )
    assert answer.object == "list"
    assert answer.model == "text-embedding-3-small"
    assert [d.index for d in answer.data] == [0]
    assert answer.data[0].object == "embedding"
    vector = answer.data[0].embedding
    assert len(vector) == 1536
    assert norm(vector) == pytest.approx(1.0, abs=1e-6)
    assert vector == embedding_of("the quick brown fox", "text-embedding-3-small")
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (4, 4)
    assert fake.received[-1].path == "/v1/embeddings"
    assert fake.received[-1].body["encoding_format"] == "float"


async def test_sdk_batch_base64_decodes_to_the_float_answer(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI
) -> None:
    texts = ["alpha beta", "gamma", "alpha beta"]
    floats = await sdk.embeddings.create(
        model="text-embedding-3-large", input=texts, encoding_format="float"
    )
    # Without encoding_format the SDK asks for base64 and decodes the float32 bytes itself.
    decoded = await sdk.embeddings.create(model="text-embedding-3-large", input=texts)
    assert fake.received[-1].body["encoding_format"] == "base64"
    assert [d.embedding for d in decoded.data] == [d.embedding for d in floats.data]
    assert [d.index for d in decoded.data] == [0, 1, 2]
    assert len(floats.data[0].embedding) == 3072
    assert floats.data[0].embedding == floats.data[2].embedding  # same text, same vector
    assert floats.data[0].embedding != floats.data[1].embedding
    assert decoded.usage.prompt_tokens == 2 + 1 + 2


async def test_raw_base64_is_little_endian_float32(
    fake: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    body = {"model": "text-embedding-3-small", "input": "hi", "encoding_format": "base64"}
    response = await http.post("/embeddings", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["openai-model"] == "text-embedding-3-small"
    assert response.headers["x-request-id"].startswith("req_")
    answer = response.json()
    encoded = answer["data"][0]["embedding"]
    expected = embedding_of("hi", "text-embedding-3-small")
    assert encoded == float32_base64(expected)
    raw = base64.b64decode(encoded)
    assert len(raw) == 4 * 1536
    assert list(struct.unpack("<1536f", raw)) == expected
    assert answer["usage"] == {"prompt_tokens": 1, "total_tokens": 1}


async def test_token_arrays_are_inputs(sdk: openai.AsyncOpenAI) -> None:
    one = await sdk.embeddings.create(
        model="text-embedding-3-small", input=[1, 2, 3], encoding_format="float"
    )
    assert len(one.data) == 1
    assert one.data[0].embedding == embedding_of([1, 2, 3], "text-embedding-3-small")
    assert one.usage.prompt_tokens == 3
    many = await sdk.embeddings.create(
        model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]], encoding_format="float"
    )
    assert [d.embedding for d in many.data] == [
        embedding_of([1, 2, 3], "text-embedding-3-small"),
        embedding_of([4, 5], "text-embedding-3-small"),
    ]
    assert many.usage.prompt_tokens == 5


async def test_dimensions_truncate_and_renormalise(sdk: openai.AsyncOpenAI) -> None:
    full = embedding_of("shorten me", "text-embedding-3-large")
    answer = await sdk.embeddings.create(
        model="text-embedding-3-large", input="shorten me", dimensions=256, encoding_format="float"
    )
    short = answer.data[0].embedding
    assert len(short) == 256
    assert norm(short) == pytest.approx(1.0, abs=1e-6)
    scale = norm(full[:256])
    assert short == pytest.approx([x / scale for x in full[:256]], abs=1e-6)
    assert short == embedding_of("shorten me", "text-embedding-3-large", 256)


async def test_ada_002_answers_its_v2_name_and_refuses_dimensions(
    sdk: openai.AsyncOpenAI,
) -> None:
    answer = await sdk.embeddings.create(
        model="text-embedding-ada-002", input="x", encoding_format="float"
    )
    assert answer.model == "text-embedding-ada-002-v2"
    assert len(answer.data[0].embedding) == 1536
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=8)
    assert "does not support specifying dimensions" in caught.value.message


async def test_embedding_models_are_listed_and_refuse_chat(
    sdk: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    listed = {model.id: model for model in (await sdk.models.list()).data}
    assert set(EMBEDDING_MODELS) <= set(listed)
    assert {"gpt-4o", "gpt-4o-mini"} <= set(listed)
    small = await sdk.models.retrieve("text-embedding-3-small")
    assert (small.id, small.owned_by) == ("text-embedding-3-small", "system")
    chat = {"model": "text-embedding-3-small", "messages": [{"role": "user", "content": "hi"}]}
    refused = await http.post("/chat/completions", json=chat)
    assert refused.status_code == 404
    error = error_of(refused)
    assert error["message"].startswith("This is not a chat model")
    assert error["param"] == "model"


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The `error` object of an OpenAI error answer."""
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    ("extra", "status", "param", "code", "words"),
    [
        ({"model": "gpt-4o"}, 400, None, None, "not allowed to generate embeddings"),
        ({"model": "no-such-embedder"}, 404, None, "model_not_found", "`no-such-embedder`"),
        ({"model": ""}, 400, None, None, "must provide a model"),
        ({"input": ""}, 400, None, None, "'$.input' is invalid"),
        ({"input": []}, 400, None, None, "'$.input' is invalid"),
        ({"input": ["ok", ""]}, 400, None, None, "'$.input' is invalid"),
        ({"input": [[1, 2], []]}, 400, None, None, "'$.input' is invalid"),
        ({"input": ["ok", 3]}, 400, None, None, "'$.input' is invalid"),
        ({"input": {"text": "x"}}, 400, None, None, "'$.input' is invalid"),
        ({"input": None}, 400, "input", "missing_required_parameter", "'input'"),
        ({"encoding_format": "int8"}, 400, "encoding_format", "invalid_value", "'int8'"),
        ({"dimensions": 0}, 400, "dimensions", "integer_below_min_value", ">= 1"),
        ({"dimensions": 1537}, 400, "dimensions", "integer_above_max_value", "<= 1536"),
        ({"dimensions": "8"}, 400, "dimensions", "invalid_type", "expected an integer"),
        (
            {"temperature": 0},
            400,
            None,
            None,
            "Unrecognized request argument supplied: temperature",
        ),
    ],
)
async def test_invalid_requests_are_refused_as_openai_does(
    fake: FakeOpenAI,
    http: httpx.AsyncClient,
    extra: dict[str, Any],
    status: int,
    param: str | None,
    code: str | None,
    words: str,
) -> None:
    body = {"model": "text-embedding-3-small", "input": "hello", **extra}
    response = await http.post("/embeddings", json=body)
    assert response.status_code == status
    error = error_of(response)
    assert (error["param"], error["code"]) == (param, code)
    assert words in error["message"]
    assert error["type"] == "invalid_request_error"


async def test_input_count_and_length_limits(http: httpx.AsyncClient) -> None:
    model = "text-embedding-3-small"
    at_limit = await http.post("/embeddings", json={"model": model, "input": ["a"] * MAX_INPUTS})
    assert at_limit.status_code == 200
    assert len(at_limit.json()["data"]) == MAX_INPUTS
    over = await http.post("/embeddings", json={"model": model, "input": ["a"] * (MAX_INPUTS + 1)})
    assert over.status_code == 400
    assert error_of(over)["code"] == "array_above_max_length"
    assert error_of(over)["param"] == "input"
    longest = " ".join(["w"] * MAX_TOKENS_PER_INPUT)
    fits = await http.post("/embeddings", json={"model": model, "input": longest})
    assert fits.status_code == 200
    too_long = await http.post("/embeddings", json={"model": model, "input": longest + " w"})
    assert too_long.status_code == 400
    assert "maximum context length is 8192 tokens" in error_of(too_long)["message"]
    tokens = await http.post("/embeddings", json={"model": model, "input": [0] * 8193})
    assert tokens.status_code == 400
    # 37 inputs of 8192 tokens each: 303,104 tokens, past the 300,000 a request may hold.
    total = await http.post("/embeddings", json={"model": model, "input": [longest] * 37})
    assert total.status_code == 400
    assert error_of(total)["code"] == "max_tokens_per_request"


async def test_scripted_failures_come_from_the_chat_queue(
    fake: FakeOpenAI, sdk: openai.AsyncOpenAI, http: httpx.AsyncClient
) -> None:
    fake.enqueue(rate_limited("7", model="text-embedding-3-small"), server_error(), bad_key())
    with pytest.raises(openai.RateLimitError) as limited:
        await sdk.embeddings.create(model="text-embedding-3-small", input="x")
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError):
        await sdk.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.AuthenticationError):
        await sdk.embeddings.create(model="text-embedding-3-small", input="x")
    fake.enqueue(Garbage())
    garbage = await http.post("/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    assert garbage.text == "<html>oops</html>"
    fake.enqueue(CutStream())
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    assert [r.path for r in fake.received] == ["/v1/embeddings"] * 5
    assert [s.status for s in fake.sent] == [429, 500, 401, 200, 200]


async def test_a_stall_holds_the_answer(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    fake.enqueue(Stall(5.0))
    body = {"model": "text-embedding-3-small", "input": "x"}
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/embeddings", json=body, timeout=httpx.Timeout(5.0, read=0.2))
    with trio.fail_after(2):
        while fake.disconnects != 1:
            await trio.sleep(0.01)
    fake.enqueue(Stall(0.05))
    response = await http.post("/embeddings", json=body)
    assert len(response.json()["data"][0]["embedding"]) == 1536


async def test_the_key_is_checked_first(fake: FakeOpenAI) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url, timeout=5.0) as client:
        body = {"model": "text-embedding-3-small", "input": "x"}
        response = await client.post(
            "/embeddings", json=body, headers={"authorization": "Bearer no"}
        )
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"


# -- Gemini -----------------------------------------------------------------------------------


@pytest.fixture
async def gemini(fake_gemini: FakeGemini) -> AsyncIterator[httpx.AsyncClient]:
    """A raw httpx client pointed at the fake Gemini, with its key."""
    headers = {"x-goog-api-key": GEMINI_KEY}
    async with httpx.AsyncClient(base_url=fake_gemini.base_url, headers=headers) as client:
        yield client


def batch(model: str, *texts: str, **extra: Any) -> dict[str, Any]:
    """A batchEmbedContents body: one request per text, each naming the model."""
    return {
        "requests": [
            {"model": f"models/{model}", "content": {"parts": [{"text": t}]}, **extra}
            for t in texts
        ]
    }


def rpc_error(response: httpx.Response) -> dict[str, Any]:
    """The `error` object of a Google RPC error answer."""
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == response.status_code
    return error


async def test_gemini_batch_embeds_every_text(
    fake_gemini: FakeGemini, gemini: httpx.AsyncClient
) -> None:
    body = batch("gemini-embedding-001", "first text", "second", "first text")
    response = await gemini.post("/models/gemini-embedding-001:batchEmbedContents", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    answer = response.json()
    assert set(answer) == {"embeddings"}  # no token counts: the Gemini API gives none
    values = [e["values"] for e in answer["embeddings"]]
    assert [len(v) for v in values] == [3072, 3072, 3072]
    assert values[0] == gemini_embedding_of("first text", "gemini-embedding-001")
    assert values[0] == values[2]
    assert values[0] != values[1]
    assert norm(values[1]) == pytest.approx(1.0, abs=1e-6)
    assert fake_gemini.received[-1].body == body


async def test_gemini_embed_content_answers_one_embedding(gemini: httpx.AsyncClient) -> None:
    body = {"content": {"parts": [{"text": "just one"}]}, "taskType": "RETRIEVAL_QUERY"}
    response = await gemini.post("/models/text-embedding-004:embedContent", json=body)
    assert response.status_code == 200
    values = response.json()["embedding"]["values"]
    assert len(values) == 768
    assert values == gemini_embedding_of("just one", "text-embedding-004", None, "RETRIEVAL_QUERY")
    # The task type shapes the vector, as it does at Google.
    assert values != gemini_embedding_of("just one", "text-embedding-004")


async def test_gemini_output_dimensionality_cuts_without_renormalising(
    gemini: httpx.AsyncClient,
) -> None:
    body = batch("gemini-embedding-001", "short one", outputDimensionality=768)
    response = await gemini.post("/models/gemini-embedding-001:batchEmbedContents", json=body)
    values = response.json()["embeddings"][0]["values"]
    assert values == gemini_embedding_of("short one", "gemini-embedding-001")[:768]
    assert norm(values) < 0.9  # a quarter of a 3072-dim unit vector: about 0.5 long


async def test_gemini_truncates_long_texts_silently(gemini: httpx.AsyncClient) -> None:
    words = [f"w{i}" for i in range(MAX_INPUT_TOKENS + 5)]
    long, kept = " ".join(words), " ".join(words[:MAX_INPUT_TOKENS])
    response = await gemini.post(
        "/models/text-embedding-004:batchEmbedContents", json=batch("text-embedding-004", long)
    )
    assert response.status_code == 200
    values = response.json()["embeddings"][0]["values"]
    assert values == gemini_embedding_of(kept, "text-embedding-004")


@pytest.mark.parametrize(
    ("path_model", "body", "words"),
    [
        ("gemini-embedding-001", batch("text-embedding-004", "x"), "must be identical"),
        ("gemini-embedding-001", {"requests": []}, "requests is not specified"),
        (
            "gemini-embedding-001",
            batch("gemini-embedding-001", *["x"] * (MAX_BATCH_REQUESTS + 1)),
            "at most 100 requests",
        ),
        ("gemini-embedding-001", batch("gemini-embedding-001", ""), "text content is empty"),
        (
            "gemini-embedding-001",
            {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": []}}]},
            "parts must not be empty",
        ),
        (
            "gemini-embedding-001",
            {"requests": [{"content": {"parts": [{"text": "x"}]}}]},
            "model is not specified",
        ),
        (
            "gemini-embedding-001",
            batch("gemini-embedding-001", "x", outputDimensionality=64),
            "[128, 3072]",
        ),
        (
            "text-embedding-004",
            batch("text-embedding-004", "x", outputDimensionality=769),
            "[1, 768]",
        ),
        ("gemini-embedding-001", batch("gemini-embedding-001", "x", taskType="NOPE"), '"NOPE"'),
        ("gemini-embedding-001", batch("gemini-embedding-001", "x", dims=3), 'name "dims"'),
        ("gemini-embedding-001", {"input": "x"}, 'name "input"'),
    ],
)
async def test_gemini_batch_refusals(
    gemini: httpx.AsyncClient, path_model: str, body: dict[str, Any], words: str
) -> None:
    response = await gemini.post(f"/models/{path_model}:batchEmbedContents", json=body)
    assert response.status_code == 400
    error = rpc_error(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert words in error["message"]


async def test_gemini_batch_of_100_is_accepted(gemini: httpx.AsyncClient) -> None:
    body = batch("text-embedding-004", *[f"text {i}" for i in range(MAX_BATCH_REQUESTS)])
    response = await gemini.post("/models/text-embedding-004:batchEmbedContents", json=body)
    assert response.status_code == 200
    assert len(response.json()["embeddings"]) == MAX_BATCH_REQUESTS


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "no-such-model"])
async def test_gemini_embedding_with_a_model_that_does_not_embed_is_not_found(
    gemini: httpx.AsyncClient, model: str
) -> None:
    response = await gemini.post(
        f"/models/{model}:embedContent", json={"content": {"parts": [{"text": "x"}]}}
    )
    assert response.status_code == 404
    error = rpc_error(response)
    assert error["status"] == "NOT_FOUND"
    assert f"models/{model} is not found" in error["message"]
    assert "embedContent" in error["message"]


async def test_gemini_embedding_models_do_not_generate(gemini: httpx.AsyncClient) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    response = await gemini.post("/models/gemini-embedding-001:generateContent", json=body)
    assert response.status_code == 404
    error = rpc_error(response)
    assert error["status"] == "NOT_FOUND"
    assert "not supported for generateContent" in error["message"]


async def test_gemini_embed_key_and_scripted_failures(
    fake_gemini: FakeGemini, gemini: httpx.AsyncClient
) -> None:
    path = "/models/gemini-embedding-001:batchEmbedContents"
    body = batch("gemini-embedding-001", "x")
    wrong = await gemini.post(path, json=body, headers={"x-goog-api-key": "wrong"})
    assert wrong.status_code == 400
    assert rpc_error(wrong)["details"][0]["reason"] == "API_KEY_INVALID"
    fake_gemini.enqueue(gemini_rate_limited("12s"), gemini_server_error(), GeminiGarbage())
    limited = await gemini.post(path, json=body)
    assert limited.status_code == 429
    assert rpc_error(limited)["details"][-1]["retryDelay"] == "12s"
    assert (await gemini.post(path, json=body)).status_code == 500
    assert (await gemini.post(path, json=body)).text == "<html>oops</html>"
    fake_gemini.enqueue(GeminiCut())
    with pytest.raises(httpx.RemoteProtocolError):
        await gemini.post(path, json=body)
    assert (await gemini.post(path, json=body)).status_code == 200
    assert len(fake_gemini.received) == 6


# -- Ollama -----------------------------------------------------------------------------------


@pytest.fixture
async def ollama(fake_ollama: FakeOllama) -> AsyncIterator[httpx.AsyncClient]:
    """A raw httpx client pointed at the fake Ollama."""
    async with httpx.AsyncClient(base_url=fake_ollama.base_url) as client:
        yield client


async def test_ollama_embeds_a_list_in_one_call(
    fake_ollama: FakeOllama, ollama: httpx.AsyncClient
) -> None:
    body = {"model": "nomic-embed-text", "input": ["one two", "three", "one two"]}
    response = await ollama.post("/api/embed", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    answer = response.json()
    assert set(answer) == {
        "model",
        "embeddings",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
    }
    assert answer["model"] == "nomic-embed-text"  # as the client named it
    vectors = answer["embeddings"]
    assert [len(v) for v in vectors] == [768, 768, 768]
    assert vectors[0] == ollama_embedding_of("one two", "nomic-embed-text:latest")
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert norm(vectors[1]) == pytest.approx(1.0, abs=1e-6)
    assert answer["prompt_eval_count"] == 5
    assert isinstance(answer["total_duration"], int)
    assert fake_ollama.received[-1].body == body


async def test_ollama_single_string_and_dimensions(ollama: httpx.AsyncClient) -> None:
    one = await ollama.post("/api/embed", json={"model": "mxbai-embed-large", "input": "hi"})
    assert one.json()["embeddings"] == [ollama_embedding_of("hi", "mxbai-embed-large:latest")]
    body = {"model": "mxbai-embed-large:latest", "input": "hi", "dimensions": 256}
    short = (await ollama.post("/api/embed", json=body)).json()["embeddings"][0]
    assert len(short) == 256
    assert norm(short) == pytest.approx(1.0, abs=1e-6)  # Ollama normalises the cut vector
    assert short == ollama_embedding_of("hi", "mxbai-embed-large:latest", 256)
    # A larger dimensions is ignored, as Ollama does.
    body["dimensions"] = 5000
    assert len((await ollama.post("/api/embed", json=body)).json()["embeddings"][0]) == 1024


async def test_ollama_empty_input_loads_the_model(ollama: httpx.AsyncClient) -> None:
    empties: list[str | list[str]] = ["", []]
    for empty in empties:
        response = await ollama.post(
            "/api/embed", json={"model": "nomic-embed-text", "input": empty}
        )
        assert response.status_code == 200
        assert response.json()["embeddings"] == []
        assert response.json()["prompt_eval_count"] == 0


async def test_ollama_truncates_past_the_context_unless_told_not_to(
    ollama: httpx.AsyncClient,
) -> None:
    words = [f"w{i}" for i in range(CONTEXT_LENGTHS["mxbai-embed-large:latest"] + 3)]
    body: dict[str, Any] = {"model": "mxbai-embed-large", "input": " ".join(words)}
    cut = (await ollama.post("/api/embed", json=body)).json()
    assert cut["prompt_eval_count"] == 512
    assert cut["embeddings"][0] == ollama_embedding_of(
        " ".join(words[:512]), "mxbai-embed-large:latest"
    )
    refused = await ollama.post("/api/embed", json={**body, "truncate": False})
    assert refused.status_code == 400
    assert refused.json() == {"error": "input exceeds maximum context length"}


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"model": "all-minilm", "input": "x"}, 404, 'model "all-minilm" not found'),
        ({"input": "x"}, 400, "model is required"),
        ({"model": "nomic-embed-text", "input": [1, 2]}, 400, "invalid input type"),
        ({"model": "nomic-embed-text", "input": {"t": "x"}}, 400, "invalid input type"),
        ({"model": "nomic-embed-text", "input": "x", "truncate": "no"}, 400, "truncate"),
        ({"model": "nomic-embed-text", "input": "x", "dimensions": "8"}, 400, "dimensions"),
    ],
)
async def test_ollama_embed_refusals(
    ollama: httpx.AsyncClient, body: dict[str, Any], status: int, error: str
) -> None:
    response = await ollama.post("/api/embed", json=body)
    assert response.status_code == status
    assert error in response.json()["error"]


async def test_ollama_lists_and_resolves_its_embedding_models(ollama: httpx.AsyncClient) -> None:
    names = [m["name"] for m in (await ollama.get("/api/tags")).json()["models"]]
    assert {"nomic-embed-text:latest", "mxbai-embed-large:latest"} <= set(names)
    # A generative model embeds too (Ollama pools its states); an embedding model does not chat.
    llama = await ollama.post("/api/embed", json={"model": "llama3.2", "input": "x"})
    assert len(llama.json()["embeddings"][0]) == 3072
    chat = {"model": "nomic-embed-text", "messages": [{"role": "user", "content": "hi"}]}
    refused = await ollama.post("/api/chat", json=chat)
    assert refused.status_code == 400
    assert refused.json() == {"error": '"nomic-embed-text" does not support chat'}


async def test_ollama_legacy_embeddings_endpoint(ollama: httpx.AsyncClient) -> None:
    body = {"model": "nomic-embed-text", "prompt": "old style"}
    vector = (await ollama.post("/api/embeddings", json=body)).json()["embedding"]
    assert len(vector) == 768
    assert norm(vector) > 2  # the legacy endpoint does not normalise
    same_direction = ollama_embedding_of("old style", "nomic-embed-text:latest")
    assert normalised(vector) == pytest.approx(same_direction, abs=1e-6)
    empty = await ollama.post("/api/embeddings", json={"model": "nomic-embed-text", "prompt": ""})
    assert empty.json() == {"embedding": []}


async def test_ollama_embed_scripted_failures(
    fake_ollama: FakeOllama, ollama: httpx.AsyncClient
) -> None:
    body = {"model": "nomic-embed-text", "input": "x"}
    fake_ollama.enqueue(OllamaError(500), OllamaGarbage(), OllamaCut())
    failed = await ollama.post("/api/embed", json=body)
    assert failed.status_code == 500
    assert "error" in failed.json()
    assert (await ollama.post("/api/embed", json=body)).text == "<html>oops</html>"
    with pytest.raises(httpx.RemoteProtocolError):
        await ollama.post("/api/embed", json=body)
    assert (await ollama.post("/api/embed", json=body)).status_code == 200
    assert [r.path for r in fake_ollama.received] == ["/api/embed"] * 4
