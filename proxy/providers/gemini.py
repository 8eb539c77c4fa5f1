"""Google Gemini's native REST API (``generateContent``), translated to and from OpenAI's shape.

The adapter ties the parts together: :mod:`~proxy.providers.gemini_request` builds the body
(every field translated or refused by name), :mod:`~proxy.providers.gemini_response` reads whole
answers, :mod:`~proxy.providers.gemini_stream` streamed ones, :mod:`~proxy.providers.gemini_errors`
maps Google's RPC errors, and :mod:`~proxy.providers.gemini_calls` keeps the thought signatures
tool calls must carry back on the next turn.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

import msgspec

from proxy.chat import ChatChunk, ChatRequest, ChatResponse
from proxy.embedding_inputs import estimate_tokens
from proxy.embeddings import EmbeddingsRequest
from proxy.errors import GatewayError
from proxy.providers import gemini_embeddings
from proxy.providers.base import (
    ChunkParser,
    ListedModel,
    PassedAnswer,
    UpstreamCall,
    WireAdapter,
    decode_as,
)
from proxy.providers.embeddings_translated import answer_of, request_texts
from proxy.providers.gemini_calls import SKIP_SIGNATURE, CallMemory
from proxy.providers.gemini_errors import map_error
from proxy.providers.gemini_request import build_body
from proxy.providers.gemini_response import AnswerReader
from proxy.providers.gemini_stream import GeminiChunkParser

__all__ = ["GEMINI_MODELS", "SKIP_SIGNATURE", "CallMemory", "GeminiAdapter"]

GEMINI_MODELS = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-3-flash-preview",
    "gemini-3.1-pro-preview",
)

_encode = msgspec.json.Encoder().encode


class _ModelInfo(msgspec.Struct, rename="camel"):
    name: str
    supported_generation_methods: list[str] = []


class _ModelPage(msgspec.Struct, rename="camel"):
    models: list[_ModelInfo] = []


_decode_models = msgspec.json.Decoder(_ModelPage).decode


class GeminiAdapter(WireAdapter):
    """Gemini's ``generateContent``/``streamGenerateContent`` with the key in ``x-goog-api-key``."""

    needs_inline_images = True
    honours_parallel_tool_calls = False  # Gemini has no such setting

    def __init__(self, provider: str, api_key: str | None) -> None:
        super().__init__(provider, api_key)
        headers = {"content-type": "application/json", "accept": "application/json"}
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}
        self.calls = CallMemory()
        self._reader = AnswerReader(provider, self.calls)

    def credential_headers(self) -> Mapping[str, str]:
        """The key in ``x-goog-api-key``, never in the URL (``?key=``) where logs would keep it."""
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    @property
    def fallback_models(self) -> tuple[str, ...]:
        """Models listed when the upstream cannot be asked."""
        return GEMINI_MODELS

    def chat_call(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        """``:generateContent``, or ``:streamGenerateContent?alt=sse`` when streaming."""
        model = urllib.parse.quote(upstream_model.removeprefix("models/"), safe="")
        body = _encode(build_body(request, upstream_model, self.calls, self.provider))
        if request.stream:
            path = f"/models/{model}:streamGenerateContent?alt=sse"
            return UpstreamCall("POST", path, self._stream_headers, body)
        return UpstreamCall("POST", f"/models/{model}:generateContent", self._headers, body)

    def embeddings_calls(
        self, request: EmbeddingsRequest, upstream_model: str
    ) -> list[UpstreamCall]:
        """``:batchEmbedContents``, one call per hundred texts (Google's bound per call)."""
        texts = request_texts(request, self.provider)
        return gemini_embeddings.embed_calls(
            texts, upstream_model, request.view.dimensions, self._headers
        )

    def parse_embeddings(
        self, bodies: list[bytes], request: EmbeddingsRequest, upstream_model: str
    ) -> PassedAnswer:
        """The batches' vectors in order; Google counts no tokens, so they are estimated."""
        texts = request_texts(request, self.provider)
        vectors: list[list[float]] = []
        for body, run in zip(bodies, gemini_embeddings.batches(texts), strict=True):
            vectors += gemini_embeddings.parse_embed(
                body, self.provider, len(run), dimensions=request.view.dimensions
            )
        return answer_of(vectors, request, upstream_model, estimate_tokens(texts))

    def parse_response(self, body: bytes, upstream_model: str) -> ChatResponse:
        """A ``GenerateContentResponse``: one choice per candidate."""
        return self._reader.response(body, upstream_model)

    def chunk_parser(self, upstream_model: str) -> ChunkParser[ChatChunk]:
        """A parser for one SSE stream of ``GenerateContentResponse`` events."""
        return GeminiChunkParser(self._reader, upstream_model)

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """A Google RPC error body (or anything else) mapped per reference §2.5."""
        return map_error(self.provider, status, headers, body)

    def models_call(self) -> UpstreamCall:
        """``GET /models`` with the largest page, so one request lists everything."""
        return UpstreamCall("GET", "/models?pageSize=1000", self._headers)

    def parse_models(self, body: bytes) -> list[ListedModel]:
        """Chat and embedding models (``generateContent``, ``embedContent``), without the
        ``models/`` prefix; Google gives no creation time."""
        page = decode_as(_decode_models, self.provider, "model list", body)
        served = {"generateContent", "embedContent"}
        return [
            ListedModel(model.name.removeprefix("models/"))
            for model in page.models
            if served & set(model.supported_generation_methods)
        ]
