"""OpenAI's embeddings answer, built by the gateway for vectors that did not come in that shape.

An OpenAI upstream's answer passes through as its bytes; Gemini's, Ollama's and the mock's vectors
are answered here as OpenAI's ``CreateEmbeddingResponse``, with the floats as the upstream gave
them (``encoding_format: "float"``) or as OpenAI's base64: the vector's little-endian float32
bytes. Both carry the same float32 values, exactly as OpenAI's own two forms do: the openai SDK
asks for base64 by default and decodes it with ``array("f")``.
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import sys

import msgspec

from proxy.errors import InvalidRequest

__all__ = [
    "ENCODING_FORMATS",
    "MOCK_EMBEDDING_DIMENSIONS",
    "MOCK_MAX_DIMENSIONS",
    "embeddings_body",
    "encode_base64",
    "mock_prompt_tokens",
    "mock_vector",
]

#: The values of ``encoding_format`` OpenAI takes; ``float`` is its default.
ENCODING_FORMATS = ("float", "base64")
#: The mock's vector length when the client gives no ``dimensions``: small enough for demos and
#: load tests, large enough that unrelated texts come out nearly orthogonal.
MOCK_EMBEDDING_DIMENSIONS = 256
#: The most ``dimensions`` the mock makes (OpenAI's largest model has 3072).
MOCK_MAX_DIMENSIONS = 4096

_BIG_ENDIAN = sys.byteorder == "big"


class _Embedding(msgspec.Struct):
    """One item of ``data``: the vector as floats or as base64."""

    object: str
    index: int
    embedding: list[float] | str


class _Usage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class _EmbeddingsAnswer(msgspec.Struct):
    """OpenAI's ``CreateEmbeddingResponse``, its fields in OpenAI's order."""

    object: str
    data: list[_Embedding]
    model: str
    usage: _Usage


_encode = msgspec.json.Encoder().encode


def encode_base64(vector: list[float]) -> str:
    """``vector`` as OpenAI's base64: its values as little-endian float32, base64-encoded."""
    values = array.array("f", vector)
    if _BIG_ENDIAN:
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def embeddings_body(
    vectors: list[list[float]], *, model: str, prompt_tokens: int, encoding_format: str
) -> bytes:
    """OpenAI's embeddings answer for ``vectors`` (in input order), as JSON bytes."""
    if encoding_format == "float":
        items = [_Embedding("embedding", i, vector) for i, vector in enumerate(vectors)]
    elif encoding_format == "base64":
        items = [
            _Embedding("embedding", i, encode_base64(vector)) for i, vector in enumerate(vectors)
        ]
    else:
        raise InvalidRequest(
            f"'encoding_format' must be 'float' or 'base64', not {encoding_format!r}.",
            param="encoding_format",
        )
    usage = _Usage(prompt_tokens, prompt_tokens)
    return _encode(_EmbeddingsAnswer("list", items, model, usage))


def mock_vector(text: str, dimensions: int) -> list[float]:
    """The mock's embedding of ``text``: the same for the same text in every process and release,
    of unit length, its coordinates spread evenly over both signs, and float32-exact (so its
    float and base64 answers decode to identical Python floats)."""
    if not 1 <= dimensions <= MOCK_MAX_DIMENSIONS:
        raise InvalidRequest(
            f"'dimensions' must be between 1 and {MOCK_MAX_DIMENSIONS} for the mock provider, "
            f"not {dimensions}.",
            param="dimensions",
        )
    # SHAKE-256 of the text (and the length, so each length is its own vector) gives as many
    # pseudo-random bytes as needed, the same everywhere, unlike hash() or random's generators.
    seed = f"{dimensions}:".encode() + text.encode("utf-8", "surrogatepass")
    raw = array.array("i", hashlib.shake_256(seed).digest(4 * dimensions))
    if _BIG_ENDIAN:
        raw.byteswap()
    # Signed 32-bit integers centred on zero: each coordinate uniform in [-1, 1).
    values = [value + 0.5 for value in raw]
    scale = 1.0 / math.hypot(*values)  # never zero: no value is
    return array.array("f", [value * scale for value in values]).tolist()


def mock_prompt_tokens(texts: list[str]) -> int:
    """The mock's usage for ``texts``: one token per whitespace-separated word, as its chat
    answers count, and at least one per text (no input is free)."""
    return sum(max(1, len(text.split())) for text in texts)
