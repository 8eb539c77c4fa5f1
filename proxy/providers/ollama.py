"""Ollama's native chat API (``POST /api/chat``, NDJSON streams), translated to and from OpenAI's.

The native API is used rather than Ollama's ``/v1`` layer because it takes per-request
``options``, ``think`` levels, schema ``format`` and ``logprobs``, and reports the exact
``done_reason``, token counts and "model not found" errors (reference §5.3). The adapter ties the
parts together: :mod:`~proxy.providers.ollama_request` builds the body (every field translated or
refused by name), :mod:`~proxy.providers.ollama_response` reads whole answers and
:mod:`~proxy.providers.ollama_stream` NDJSON streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import msgspec
from msgspec import Struct

from proxy.chat import ChatChunk, ChatRequest, ChatResponse
from proxy.embeddings import EmbeddingsRequest
from proxy.errors import GatewayError, UpstreamError
from proxy.providers import ollama_embeddings
from proxy.providers.base import (
    ChunkParser,
    ListedModel,
    PassedAnswer,
    UpstreamCall,
    WireAdapter,
    decode_as,
    malformed,
)
from proxy.providers.embeddings_translated import answer_of, request_texts
from proxy.providers.ollama_request import build_body
from proxy.providers.ollama_response import decode_line, error_message, response_of, rfc3339_time
from proxy.providers.ollama_stream import MAX_LINE_BYTES, OllamaChunkParser
from proxy.providers.upstream_errors import map_status

__all__ = ["MAX_LINE_BYTES", "OllamaAdapter"]


class _Tag(Struct):
    name: str
    modified_at: str | None = None  # RFC 3339 with nanoseconds: when it was pulled or built


class _Tags(Struct):
    models: list[_Tag] | None


_encode = msgspec.json.Encoder().encode
_decode_tags = msgspec.json.Decoder(_Tags).decode


class OllamaAdapter(WireAdapter):
    """Ollama's native ``/api/chat``; an api_key is sent as Bearer for proxies in front of it."""

    needs_inline_images: ClassVar[bool] = True
    routes_listed_models: ClassVar[bool] = True
    honours_parallel_tool_calls: ClassVar[bool] = False  # Ollama has no such setting

    def __init__(self, provider: str, api_key: str | None) -> None:
        super().__init__(provider, api_key)
        headers = {"content-type": "application/json", "accept": "application/json"}
        self._headers = headers
        self._stream_headers = {**headers, "accept": "application/x-ndjson"}

    @property
    def fallback_models(self) -> tuple[str, ...]:
        """Nothing: a local server that does not answer has no models we could know of."""
        return ()

    def embeddings_calls(
        self, request: EmbeddingsRequest, upstream_model: str
    ) -> list[UpstreamCall]:
        """``/api/embed``, every text in one call."""
        texts = request_texts(request, self.provider)
        return [
            ollama_embeddings.embed_call(
                texts, upstream_model, request.view.dimensions, self._headers
            )
        ]

    def parse_embeddings(
        self, bodies: list[bytes], request: EmbeddingsRequest, upstream_model: str
    ) -> PassedAnswer:
        """The vectors, with Ollama's own count of the prompt's tokens."""
        (body,) = bodies
        texts = request_texts(request, self.provider)
        embedded = ollama_embeddings.parse_embed(
            body, self.provider, texts, dimensions=request.view.dimensions
        )
        return answer_of(embedded.vectors, request, upstream_model, embedded.prompt_tokens)

    def chat_call(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        """``POST /api/chat`` with the request translated to Ollama's body."""
        body = _encode(build_body(request, upstream_model, self.provider))
        headers = self._stream_headers if request.stream else self._headers
        return UpstreamCall("POST", "/api/chat", headers, body)

    def parse_response(self, body: bytes, upstream_model: str) -> ChatResponse:
        """A ``stream: false`` answer: one object shaped like the final line of a stream."""
        line = decode_line(self.provider, "response", body)
        if line.error is not None:
            raise UpstreamError(f"Upstream {self.provider} failed: {line.error}")
        if line.message is None:
            raise malformed(self.provider, "response", "it has no message")
        return response_of(line, upstream_model)

    def chunk_parser(self, upstream_model: str) -> ChunkParser[ChatChunk]:
        """A parser for one NDJSON stream."""
        return OllamaChunkParser(self.provider, upstream_model)

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """``{"error": "<string>"}`` mapped by status; 404 means an unknown (unpulled) model."""
        message, structured = error_message(body)
        if status == 404 and not structured:
            # Ollama names the model in a JSON 404. A plain-text 404 ("404 page not found") comes
            # from its router: the path is wrong, usually a base_url ending in /v1.
            return UpstreamError(
                f"Upstream {self.provider} has no chat endpoint at its base_url (404: "
                f"{message or 'not found'}); the base_url must not end in /v1.",
                code="upstream_endpoint_not_found",
            )
        return map_status(self.provider, status, message or f"HTTP {status}", headers=headers)

    def models_call(self) -> UpstreamCall:
        """``GET /api/tags``: the models pulled on the server."""
        return UpstreamCall("GET", "/api/tags", self._headers)

    def parse_models(self, body: bytes) -> list[ListedModel]:
        """Names as Ollama lists them, tag included (``llama3.2:latest``), with the time each
        was last modified as their creation time (what Ollama's own /v1/models reports)."""
        tags = decode_as(_decode_tags, self.provider, "model list", body)
        return [ListedModel(tag.name, rfc3339_time(tag.modified_at)) for tag in tags.models or ()]
