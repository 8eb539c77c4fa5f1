"""OpenAI's embeddings answer built by the gateway: float and base64, and the mock's vectors."""

from __future__ import annotations

import array
import base64
import json
import math
import struct

import pytest
from openai import NOT_GIVEN
from openai.lib._parsing._embeddings import parse_embedding_response
from openai.types import CreateEmbeddingResponse

from proxy.embedding_answers import (
    MOCK_EMBEDDING_DIMENSIONS,
    MOCK_MAX_DIMENSIONS,
    embeddings_body,
    encode_base64,
    mock_prompt_tokens,
    mock_vector,
)
from proxy.errors import InvalidRequest

# As Gemini and Ollama print them: float32 values in their shortest decimal form.
#: The mock's vector of "hello" at 4 dimensions, as base64; pinned so that it never changes.
PINNED_HELLO_4 = "MectPlo9ib15O0Q/B58dvw=="
VECTORS = [[0.013168523, -0.008711934, 0.0046497797], [-0.02452825, 0.0, 1.0]]


def float32(values: list[float]) -> list[float]:
    """``values`` rounded to float32, as Python floats."""
    return array.array("f", values).tolist()


def sdk_decoded(body: bytes) -> CreateEmbeddingResponse:
    """The answer as the openai SDK gives it to a caller that left ``encoding_format`` unset
    (it then asks for base64 and decodes it itself, with ``array('f')``)."""
    # The SDK builds its models without validation (``construct``), as here.
    parsed = CreateEmbeddingResponse.construct(**json.loads(body))
    return parse_embedding_response(parsed, encoding_format=NOT_GIVEN)


def test_float_answer_is_openai_s_shape() -> None:
    body = embeddings_body(
        VECTORS, model="text-embedding-004", prompt_tokens=7, encoding_format="float"
    )
    assert json.loads(body) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": VECTORS[0]},
            {"object": "embedding", "index": 1, "embedding": VECTORS[1]},
        ],
        "model": "text-embedding-004",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }
    answer = CreateEmbeddingResponse.model_validate_json(body)
    assert [item.embedding for item in answer.data] == VECTORS


def test_base64_is_little_endian_float32_as_openai_sends_it() -> None:
    encoded = encode_base64([1.0, -2.5, 0.1])
    raw = base64.b64decode(encoded)
    assert len(raw) == 12
    assert struct.unpack("<3f", raw) == (1.0, -2.5, float32([0.1])[0])
    assert encode_base64([1.0]) == "AACAPw=="  # 0x3f800000, little-endian
    assert encode_base64([]) == ""


def test_sdk_decodes_base64_to_the_float_answer_s_values() -> None:
    as_float = embeddings_body(VECTORS, model="m", prompt_tokens=3, encoding_format="float")
    as_base64 = embeddings_body(VECTORS, model="m", prompt_tokens=3, encoding_format="base64")
    assert isinstance(json.loads(as_base64)["data"][0]["embedding"], str)
    floats = [item.embedding for item in sdk_decoded(as_float).data]
    decoded = [item.embedding for item in sdk_decoded(as_base64).data]
    # Exactly the same float32 values: what OpenAI's own float and base64 answers carry.
    assert decoded == [float32(vector) for vector in floats]
    assert sdk_decoded(as_base64).usage.prompt_tokens == 3


def test_float32_exact_vectors_come_back_identical_both_ways() -> None:
    vector = mock_vector("identical", 64)
    as_float = embeddings_body([vector], model="m", prompt_tokens=1, encoding_format="float")
    as_base64 = embeddings_body([vector], model="m", prompt_tokens=1, encoding_format="base64")
    assert sdk_decoded(as_float).data[0].embedding == vector
    assert sdk_decoded(as_base64).data[0].embedding == vector


def test_an_unknown_encoding_format_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        embeddings_body(VECTORS, model="m", prompt_tokens=1, encoding_format="int8")
    assert caught.value.param == "encoding_format"
    assert "'float' or 'base64'" in caught.value.message


def test_a_large_batch_is_one_valid_document() -> None:
    vectors = [mock_vector(f"text {i}", 1536) for i in range(256)]
    body = embeddings_body(vectors, model="m", prompt_tokens=512, encoding_format="base64")
    answer = sdk_decoded(body)
    assert [item.index for item in answer.data] == list(range(256))
    assert answer.data[255].embedding == vectors[255]


# -- the mock's vectors -------------------------------------------------------------------------


def test_mock_vector_is_deterministic_unit_length_and_float32_exact() -> None:
    vector = mock_vector("the same text", MOCK_EMBEDDING_DIMENSIONS)
    assert MOCK_EMBEDDING_DIMENSIONS == 256
    assert len(vector) == 256
    assert vector == mock_vector("the same text", 256)
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-5)
    assert vector == float32(vector)


def test_mock_vector_is_stable_across_releases() -> None:
    # Pinned: a vector store filled through the mock must stay valid after an upgrade.
    assert encode_base64(mock_vector("hello", 4)) == PINNED_HELLO_4


def test_mock_vectors_of_different_texts_are_spread() -> None:
    vectors = [mock_vector(f"document {i}", 256) for i in range(50)]
    for i, first in enumerate(vectors):
        for second in vectors[i + 1 :]:
            cosine = sum(a * b for a, b in zip(first, second, strict=True))
            assert abs(cosine) < 0.35
    # Values of both signs in every coordinate, across texts.
    for column in zip(*vectors, strict=True):
        assert min(column) < 0 < max(column)


def test_mock_dimensions_are_honoured_within_bounds() -> None:
    assert len(mock_vector("x", 1)) == 1
    assert mock_vector("x", 1) in ([1.0], [-1.0])
    assert len(mock_vector("x", MOCK_MAX_DIMENSIONS)) == MOCK_MAX_DIMENSIONS
    # A shorter vector is not a prefix of a longer one: each length is its own unit vector.
    assert math.isclose(math.fsum(x * x for x in mock_vector("x", 3)), 1.0, rel_tol=1e-6)
    for wrong in (0, -1, MOCK_MAX_DIMENSIONS + 1):
        with pytest.raises(InvalidRequest) as caught:
            mock_vector("x", wrong)
        assert caught.value.param == "dimensions"


def test_mock_usage_is_one_token_per_word_and_at_least_one_per_text() -> None:
    assert mock_prompt_tokens(["the quick brown fox", "jumps"]) == 5
    assert mock_prompt_tokens(["   "]) == 1
    assert mock_prompt_tokens([]) == 0
