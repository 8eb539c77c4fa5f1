"""Ollama's ``POST /api/embed``: an OpenAI embeddings request's texts and Ollama's vectors.

The whole list goes in one call (``input`` takes a list; Ollama batches it itself), with
``dimensions`` passed as Ollama's own field of that name. ``truncate`` is sent as false: Ollama's
default (true) silently embeds only the start of a text longer than the model's context, which
a retrieval index would keep as the whole text's vector without anyone knowing. OpenAI refuses
such a text with a 400, and so does Ollama without truncation, which the adapter's ``map_error``
hands on as the client's 400.

Usage is Ollama's ``prompt_eval_count`` (the tokens of every input); an answer without it (an
older server, a proxy in front) is estimated from the texts as for Gemini.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import msgspec

from proxy.embedding_inputs import estimate_tokens
from proxy.errors import UpstreamError
from proxy.providers.base import UpstreamCall, decode_as, malformed
from proxy.providers.embedding_vectors import checked_vectors

__all__ = ["Embedded", "embed_call", "parse_embed"]


@dataclasses.dataclass(frozen=True, slots=True)
class Embedded:
    """The vectors of one answer, in input order, and the prompt tokens they cost."""

    vectors: list[list[float]]
    prompt_tokens: int


class _EmbedRequest(msgspec.Struct, omit_defaults=True):
    model: str
    input: list[str]
    truncate: bool
    dimensions: int | None = None


class _EmbedAnswer(msgspec.Struct):
    embeddings: list[list[float]] | None = None
    prompt_eval_count: int | None = None
    error: str | None = None


_encode = msgspec.json.Encoder().encode
_decode_answer = msgspec.json.Decoder(_EmbedAnswer).decode


def embed_call(
    texts: list[str], upstream_model: str, dimensions: int | None, headers: Mapping[str, str]
) -> UpstreamCall:
    """``POST /api/embed`` for every text at once.

    ``headers`` are the adapter's JSON headers; a key, if any, is added by the actor's backend.
    """
    body = _EmbedRequest(upstream_model, texts, truncate=False, dimensions=dimensions)
    return UpstreamCall("POST", "/api/embed", headers, _encode(body))


def parse_embed(
    body: bytes, provider: str, texts: list[str], *, dimensions: int | None = None
) -> Embedded:
    """The vectors of an ``/api/embed`` answer to ``texts`` and their prompt tokens;
    UpstreamError for an error or anything that is not one vector per text."""
    answer = decode_as(_decode_answer, provider, "embeddings answer", body)
    if answer.error is not None:
        raise UpstreamError(f"Upstream {provider} failed: {answer.error}")
    if answer.embeddings is None:
        raise malformed(provider, "embeddings answer", "it has no embeddings")
    vectors = checked_vectors(
        answer.embeddings, provider=provider, count=len(texts), dimensions=dimensions
    )
    tokens = answer.prompt_eval_count
    if tokens is None or tokens < 0:
        tokens = estimate_tokens(texts)
    return Embedded(vectors, tokens)
