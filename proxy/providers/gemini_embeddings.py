"""Gemini's ``batchEmbedContents``: an OpenAI embeddings request's texts and Google's vectors.

One call embeds up to :data:`MAX_BATCH` texts (Google refuses more: "at most 100 requests can be
in one batch"). OpenAI takes up to 2048 inputs and its clients send that many (LangChain batches
1,000 texts a request by default), so a longer list is split into consecutive calls of at most
100, sent in order and answered as one list, rather than refused: the client keeps OpenAI's
bounds whichever provider serves it.

``dimensions`` becomes ``outputDimensionality``. Google's shortened vectors are not of unit
length (only the model's full size is normalised, its docs say); OpenAI's always are and clients
compare them by dot product, so vectors asked for at a chosen size are scaled to length 1.

Gemini reports no token counts for embeddings: usage is estimated from the texts with
:func:`~proxy.embedding_inputs.estimate_tokens` (a quarter of their UTF-8 bytes, rounded up).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

import msgspec

from proxy.embedding_inputs import estimate_tokens
from proxy.providers.base import UpstreamCall, decode_as
from proxy.providers.embedding_vectors import checked_vectors, unit_length

__all__ = ["MAX_BATCH", "batches", "embed_call", "embed_calls", "estimate_tokens", "parse_embed"]

#: The most texts Google takes in one ``batchEmbedContents`` call.
MAX_BATCH = 100


class _Part(msgspec.Struct):
    text: str


class _Content(msgspec.Struct):
    parts: list[_Part]


class _EmbedRequest(msgspec.Struct, rename="camel", omit_defaults=True):
    model: str
    content: _Content
    output_dimensionality: int | None = None


class _BatchRequest(msgspec.Struct):
    requests: list[_EmbedRequest]


class _Values(msgspec.Struct):
    values: list[float]


class _BatchAnswer(msgspec.Struct):
    embeddings: list[_Values]


_encode = msgspec.json.Encoder().encode
_decode_answer = msgspec.json.Decoder(_BatchAnswer).decode


def batches(texts: list[str]) -> list[list[str]]:
    """``texts`` in consecutive runs of at most :data:`MAX_BATCH`, one per upstream call."""
    return [texts[start : start + MAX_BATCH] for start in range(0, len(texts), MAX_BATCH)]


def embed_calls(
    texts: list[str], upstream_model: str, dimensions: int | None, headers: Mapping[str, str]
) -> list[UpstreamCall]:
    """The calls that embed ``texts``, one per :func:`batches` run; their answers, parsed with
    :func:`parse_embed` and joined in order, are the vectors of ``texts``."""
    return [embed_call(run, upstream_model, dimensions, headers) for run in batches(texts)]


def embed_call(
    texts: list[str], upstream_model: str, dimensions: int | None, headers: Mapping[str, str]
) -> UpstreamCall:
    """``POST /models/{model}:batchEmbedContents`` for at most :data:`MAX_BATCH` texts.

    ``headers`` are the adapter's JSON headers; the key is added by the actor's backend.
    """
    if not 1 <= len(texts) <= MAX_BATCH:
        raise ValueError(f"one batchEmbedContents call takes 1 to {MAX_BATCH} texts")
    name = upstream_model.removeprefix("models/")
    # Every request of the batch must name the model of the path, in its resource form.
    resource = f"models/{name}"
    body = _BatchRequest(
        [_EmbedRequest(resource, _Content([_Part(text)]), dimensions) for text in texts]
    )
    path = f"/models/{urllib.parse.quote(name, safe='')}:batchEmbedContents"
    return UpstreamCall("POST", path, headers, _encode(body))


def parse_embed(
    body: bytes, provider: str, count: int, *, dimensions: int | None = None
) -> list[list[float]]:
    """The ``count`` vectors of one ``batchEmbedContents`` answer, in order, scaled to unit
    length when ``dimensions`` was asked; UpstreamError for anything else."""
    answer = decode_as(_decode_answer, provider, "embeddings answer", body)
    vectors = checked_vectors(
        [item.values for item in answer.embeddings],
        provider=provider,
        count=count,
        dimensions=dimensions,
    )
    if dimensions is None:
        return vectors
    return [unit_length(vector) for vector in vectors]
