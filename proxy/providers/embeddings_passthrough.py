"""OpenAI's embeddings passed through to an upstream that serves them (OpenAI).

The client's body goes to ``/embeddings`` as sent, with only the model renamed; the answer — the
vectors as floats or base64, as the client asked — comes back as the upstream's bytes, read only
for its usage through a small struct that skips the vectors.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from proxy.chat import TokenCount, Usage
from proxy.embeddings import EmbeddingsRequest
from proxy.providers.base import (
    ChunkParser,
    PassedAnswer,
    PassedEvent,
    Passthrough,
    UpstreamCall,
    decode_as,
)

__all__ = ["EmbeddingsPassthrough", "embeddings_usage"]

_encode = msgspec.json.Encoder().encode


class _UsageFacts(Struct):
    prompt_tokens: TokenCount = 0


class _AnswerFacts(Struct):
    """What the gateway reads from an embeddings answer; the vectors are skipped unread."""

    usage: _UsageFacts | None = None


_decode_answer = msgspec.json.Decoder(_AnswerFacts).decode


def embeddings_usage(prompt_tokens: int) -> Usage:
    """An embeddings call's usage in the gateway's terms: input tokens only."""
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=0, total_tokens=prompt_tokens)


class EmbeddingsPassthrough(Passthrough[EmbeddingsRequest]):
    """OpenAI's embeddings, passed through to one provider."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._headers = {"content-type": "application/json", "accept": "application/json"}

    def call(self, request: EmbeddingsRequest, upstream_model: str) -> UpstreamCall:
        """The client's body with our model name."""
        body: dict[str, Any] = dict(request.raw)
        body["model"] = upstream_model
        return UpstreamCall("POST", "/embeddings", self._headers, _encode(body))

    def answer(self, body: bytes) -> PassedAnswer:
        """The vectors as the upstream sent them, with the usage read beside them."""
        facts = decode_as(_decode_answer, self._provider, "embeddings", body)
        usage = embeddings_usage(facts.usage.prompt_tokens) if facts.usage is not None else None
        return PassedAnswer(body, usage)

    def event_parser(self, request: EmbeddingsRequest) -> ChunkParser[PassedEvent]:
        """Embeddings are never streamed."""
        raise TypeError("embeddings are not streamed")
