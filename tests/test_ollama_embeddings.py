"""Ollama's /api/embed: the call built from texts and the vectors and usage read from its answer."""

from __future__ import annotations

import json

import pytest

from proxy.errors import InvalidRequest, ModelNotFound, UpstreamError
from proxy.providers.ollama import OllamaAdapter
from proxy.providers.ollama_embeddings import Embedded, embed_call, parse_embed

HEADERS = {"content-type": "application/json", "accept": "application/json"}

# As Ollama answers /api/embed (its documentation's example).
ANSWER = b"""{
  "model": "all-minilm",
  "embeddings": [[
    0.010071029, -0.0017594862, 0.05007221, 0.04692972, 0.054916814,
    0.008599704, 0.105441414, -0.025878139, 0.12958129, 0.031952348
  ],[
    -0.0098027075, 0.06042469, 0.025257962, -0.006364387, 0.07272725,
    0.017194884, 0.09032035, -0.051705178, 0.09951512, 0.09072481
  ]],
  "total_duration": 14143917,
  "load_duration": 1019500,
  "prompt_eval_count": 8
}"""
TEXTS = ["Why is the sky blue?", "Why is the grass green?"]


def test_one_call_for_every_text_without_silent_truncation() -> None:
    call = embed_call(TEXTS, "all-minilm", None, HEADERS)
    assert (call.method, call.path, call.headers) == ("POST", "/api/embed", HEADERS)
    assert json.loads(call.body or b"") == {
        "model": "all-minilm",
        "input": TEXTS,
        "truncate": False,
    }


def test_dimensions_are_passed_as_ollama_s_field() -> None:
    call = embed_call(["a"], "nomic-embed-text:latest", 256, HEADERS)
    body = json.loads(call.body or b"")
    assert body["dimensions"] == 256
    assert body["model"] == "nomic-embed-text:latest"


def test_answer_gives_vectors_in_order_and_prompt_eval_count_as_usage() -> None:
    embedded = parse_embed(ANSWER, "ollama", TEXTS)
    assert isinstance(embedded, Embedded)
    assert embedded.prompt_tokens == 8
    assert [len(vector) for vector in embedded.vectors] == [10, 10]
    assert embedded.vectors[0][:2] == [0.010071029, -0.0017594862]
    assert embedded.vectors[1][-1] == 0.09072481


def test_usage_is_estimated_when_the_count_is_missing() -> None:
    answer = b'{"model": "m", "embeddings": [[0.1, 0.2], [0.3, 0.4]]}'
    # 20 and 23 bytes: 5 + 6 tokens.
    assert parse_embed(answer, "ollama", TEXTS).prompt_tokens == 11


def test_vectors_of_another_size_than_asked_are_refused() -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_embed(ANSWER, "ollama", TEXTS, dimensions=4)
    assert caught.value.code == "upstream_dimensions_mismatch"
    assert parse_embed(ANSWER, "ollama", TEXTS, dimensions=10).prompt_tokens == 8


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"<html>bad gateway</html>", "malformed embeddings answer"),
        (b'{"model": "m"}', "it has no embeddings"),
        (b'{"embeddings": [[0.1, null]]}', "malformed embeddings answer"),
        (b'{"embeddings": [[0.1]]}', "1 vectors for 2 inputs"),
        (b'{"embeddings": [[0.1], []]}', "vector 1 is empty"),
        (b'{"error": "llama runner process has terminated"}', "failed: llama runner"),
    ],
)
def test_a_malformed_or_failed_answer_is_an_upstream_error(body: bytes, detail: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_embed(body, "ollama", TEXTS)
    assert caught.value.status == 502
    assert detail in caught.value.message


# -- errors, through the adapter's own map_error --------------------------------------------------

ADAPTER = OllamaAdapter("ollama", None)


def test_a_model_not_pulled_is_model_not_found() -> None:
    body = b'{"error":"model \\"nomic-embed-text\\" not found, try pulling it first"}'
    error = ADAPTER.map_error(404, {}, body)
    assert isinstance(error, ModelNotFound)
    assert error.code == "model_not_found"
    assert error.param == "model"
    assert "nomic-embed-text" in error.message


def test_a_text_past_the_context_is_the_client_s_400() -> None:
    body = b'{"error":"the input length exceeds the context length"}'
    error = ADAPTER.map_error(400, {}, body)
    assert isinstance(error, InvalidRequest)
    assert "exceeds the context length" in error.message


def test_a_chat_only_model_is_the_client_s_400() -> None:
    body = b'{"error":"\\"llama3.2\\" does not support embeddings"}'
    error = ADAPTER.map_error(400, {}, body)
    assert isinstance(error, InvalidRequest)
    assert "does not support embeddings" in error.message
