"""Gemini's batchEmbedContents: the calls built from texts and the vectors read from its answers."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from proxy.errors import InvalidRequest, ModelNotFound, UpstreamAuthFailed, UpstreamError
from proxy.providers.gemini import GeminiAdapter
from proxy.providers.gemini_embeddings import (
    MAX_BATCH,
    batches,
    embed_call,
    embed_calls,
    estimate_tokens,
    parse_embed,
)

HEADERS = {"content-type": "application/json", "accept": "application/json"}

# As the Gemini API answers batchEmbedContents (values cut to three for the test).
ANSWER = b"""{
  "embeddings": [
    {
      "values": [
        0.013168523,
        -0.008711934,
        -0.046782676
      ]
    },
    {
      "values": [
        -0.02452825,
        0.0035193264,
        0.010542183
      ]
    }
  ]
}
"""


def body_of(texts: list[str], model: str = "gemini-embedding-001", dims: int | None = None) -> Any:
    """The JSON body of the one call for ``texts``."""
    call = embed_call(texts, model, dims, HEADERS)
    assert call.method == "POST"
    assert call.headers == HEADERS
    return json.loads(call.body or b"")


def test_one_call_embeds_the_whole_list() -> None:
    call = embed_call(["first", "second"], "gemini-embedding-001", None, HEADERS)
    assert call.path == "/models/gemini-embedding-001:batchEmbedContents"
    assert json.loads(call.body or b"") == {
        "requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "first"}]}},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "second"}]}},
        ]
    }


def test_dimensions_become_output_dimensionality_on_every_request() -> None:
    body = body_of(["a", "b"], dims=768)
    assert [request["outputDimensionality"] for request in body["requests"]] == [768, 768]


def test_a_models_prefix_and_odd_characters_are_handled() -> None:
    call = embed_call(["a"], "models/text-embedding-004", None, HEADERS)
    assert call.path == "/models/text-embedding-004:batchEmbedContents"
    assert json.loads(call.body or b"")["requests"][0]["model"] == "models/text-embedding-004"
    odd = embed_call(["a"], "tuned/../x?y", None, HEADERS)
    assert odd.path == "/models/tuned%2F..%2Fx%3Fy:batchEmbedContents"


def test_text_is_sent_exactly() -> None:
    text = 'quote " newline \n emoji 🧭 nul \x00'
    assert body_of([text])["requests"][0]["content"]["parts"][0]["text"] == text


def test_more_than_a_batch_is_split_in_order() -> None:
    texts = [f"t{i}" for i in range(2 * MAX_BATCH + 5)]
    assert MAX_BATCH == 100
    assert [len(run) for run in batches(texts)] == [100, 100, 5]
    calls = embed_calls(texts, "gemini-embedding-001", 256, HEADERS)
    sent = [
        request["content"]["parts"][0]["text"]
        for call in calls
        for request in json.loads(call.body or b"")["requests"]
    ]
    assert sent == texts
    assert len(embed_calls(["one"], "gemini-embedding-001", None, HEADERS)) == 1
    with pytest.raises(ValueError, match="1 to 100"):
        embed_call(texts[:101], "gemini-embedding-001", None, HEADERS)


def test_answer_vectors_come_back_in_order_as_sent() -> None:
    assert parse_embed(ANSWER, "gemini", 2) == [
        [0.013168523, -0.008711934, -0.046782676],
        [-0.02452825, 0.0035193264, 0.010542183],
    ]


def test_vectors_of_a_chosen_size_are_scaled_to_unit_length() -> None:
    answer = b'{"embeddings": [{"values": [3, 4, 0]}, {"values": [0.5, 0.5, 0.5]}]}'
    vectors = parse_embed(answer, "gemini", 2, dimensions=3)
    assert vectors[0] == [0.6, 0.8, 0.0]
    assert math.isclose(math.fsum(x * x for x in vectors[1]), 1.0)
    # Without dimensions the model's full-size vectors are passed as given.
    assert parse_embed(answer, "gemini", 2)[0] == [3.0, 4.0, 0.0]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"not json", "malformed embeddings answer"),
        (b'{"embedding": {"values": [1.0]}}', "malformed embeddings answer"),
        (b'{"embeddings": [{"values": ["x"]}]}', "malformed embeddings answer"),
        (b'{"embeddings": [{"values": [1.0]}]}', "1 vectors for 2 inputs"),
        (b'{"embeddings": [{"values": [1.0]}, {"values": []}]}', "vector 1 is empty"),
        (b'{"embeddings": [{"values": [1.0]}, {"values": [1.0, 2.0]}]}', "vector 1 has 2"),
    ],
)
def test_a_malformed_answer_is_an_upstream_error(body: bytes, detail: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_embed(body, "gemini", 2)
    assert caught.value.status == 502
    assert detail in caught.value.message
    assert "gemini" in caught.value.message


def test_vectors_of_another_size_than_asked_are_refused() -> None:
    with pytest.raises(UpstreamError) as caught:
        parse_embed(ANSWER, "gemini", 2, dimensions=256)
    assert caught.value.code == "upstream_dimensions_mismatch"
    assert "3 dimensions where 256 were asked" in caught.value.message


def test_usage_is_estimated_from_the_texts() -> None:
    assert estimate_tokens(["a" * 40, "bb"]) == 11


# -- errors, through the adapter's own map_error --------------------------------------------------

ADAPTER = GeminiAdapter("gemini", "key")


def test_an_unknown_model_is_model_not_found() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 404,
                "message": "models/nope is not found for API version v1beta, or is not "
                "supported for embedContent. Call ListModels to see the list of available "
                "models and their supported methods.",
                "status": "NOT_FOUND",
            }
        }
    ).encode()
    error = ADAPTER.map_error(404, {}, body)
    assert isinstance(error, ModelNotFound)
    assert error.code == "model_not_found"


def test_too_many_requests_in_a_batch_is_a_400() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 400,
                "message": "* BatchEmbedContentsRequest.requests: at most 100 requests can be "
                "in one batch\n",
                "status": "INVALID_ARGUMENT",
            }
        }
    ).encode()
    error = ADAPTER.map_error(400, {}, body)
    assert isinstance(error, InvalidRequest)
    assert "at most 100 requests" in error.message


def test_a_bad_gateway_key_is_never_the_client_s_401() -> None:
    body = json.dumps(
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            }
        }
    ).encode()
    assert isinstance(ADAPTER.map_error(400, {}, body), UpstreamAuthFailed)
