"""Anthropic's Messages API (``/v1/messages``): Claude, translated to and from OpenAI's shape.

The adapter ties the parts together: :mod:`~proxy.providers.anthropic_request` builds the body
(every field translated or refused by name), :mod:`~proxy.providers.anthropic_response` reads
whole answers, :mod:`~proxy.providers.anthropic_stream` streamed ones,
:mod:`~proxy.providers.anthropic_errors` maps Anthropic's errors, and
:mod:`~proxy.providers.anthropic_thinking` carries thinking blocks across tool turns. The base
URL has no ``/v1`` (Anthropic's own convention); the key goes in ``x-api-key``. A Messages
request from a client passes through as is (:mod:`~proxy.providers.messages_passthrough`).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from proxy.chat import ChatChunk, ChatRequest, ChatResponse
from proxy.errors import GatewayError
from proxy.messages import MessagesRequest
from proxy.providers.anthropic_errors import map_error
from proxy.providers.anthropic_request import build_body
from proxy.providers.anthropic_response import AnswerReader
from proxy.providers.anthropic_stream import AnthropicChunkParser
from proxy.providers.anthropic_thinking import ThinkingMemory
from proxy.providers.base import (
    ChunkParser,
    ListedModel,
    Passthrough,
    UpstreamCall,
    WireAdapter,
    decode_as,
)
from proxy.providers.messages_passthrough import MessagesPassthrough

__all__ = ["ANTHROPIC_MODELS", "DEFAULT_API_VERSION", "AnthropicAdapter"]

#: Listed when the upstream cannot be asked: the current models' aliases (the SDK's list).
ANTHROPIC_MODELS = (
    "claude-opus-5-5",
    "claude-sonnet-5-5",
    "claude-haiku-5-5",
    "claude-opus-4-8",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-opus-4-5",
    "claude-sonnet-4-5",
)
DEFAULT_API_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"
MODELS_PAGE = 1000  # the largest page Anthropic gives

_encode = msgspec.json.Encoder().encode


class _ModelInfo(msgspec.Struct):
    id: str
    created_at: str | None = None


class _ModelPage(msgspec.Struct):
    data: list[_ModelInfo] = []
    has_more: bool = False
    last_id: str | None = None


_decode_models = msgspec.json.Decoder(_ModelPage).decode


def _created(value: str | None) -> int | None:
    """Unix seconds of an RFC 3339 ``created_at``; None when it is absent or unreadable."""
    if not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


class AnthropicAdapter(WireAdapter):
    """``POST /v1/messages`` with ``x-api-key`` and the pinned ``anthropic-version``."""

    needs_inline_images = False  # Claude fetches image URLs itself (``url`` sources)
    honours_parallel_tool_calls = True  # tool_choice.disable_parallel_tool_use

    def __init__(
        self, provider: str, api_key: str | None, *, api_version: str = DEFAULT_API_VERSION
    ) -> None:
        super().__init__(provider, api_key)
        self.api_version = api_version
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": api_version,
        }
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}
        self.thinking = ThinkingMemory()
        self._reader = AnswerReader(provider, self.thinking)
        self._messages = MessagesPassthrough(provider, api_version=api_version)

    def credential_headers(self) -> Mapping[str, str]:
        """The key in ``x-api-key`` (one header, never both it and a Bearer token)."""
        return {"x-api-key": self._api_key} if self._api_key else {}

    @property
    def fallback_models(self) -> tuple[str, ...]:
        """Models listed when the upstream cannot be asked."""
        return ANTHROPIC_MODELS

    def passthrough_for(self, protocol: str) -> Passthrough[Any] | None:
        """The Messages API passes through as is (Claude Code's betas and all)."""
        return self._messages if protocol == MessagesRequest.PROTOCOL else None

    def chat_call(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        """``POST /v1/messages``, streaming when the request is."""
        body = _encode(build_body(request, upstream_model, self.thinking, self.provider))
        headers = self._stream_headers if request.stream else self._headers
        return UpstreamCall("POST", MESSAGES_PATH, headers, body)

    def parse_response(self, body: bytes, upstream_model: str) -> ChatResponse:
        """A Messages ``message``: one choice."""
        return self._reader.response(body, upstream_model)

    def chunk_parser(self, upstream_model: str) -> ChunkParser[ChatChunk]:
        """A parser for one Messages event stream."""
        return AnthropicChunkParser(self._reader, upstream_model)

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """Anthropic's error body (or anything else) mapped per reference §4."""
        return map_error(self.provider, status, headers, body)

    def models_call(self) -> UpstreamCall:
        """``GET /v1/models`` with the largest page."""
        return UpstreamCall("GET", f"/v1/models?limit={MODELS_PAGE}", self._headers)

    def next_models_call(self, body: bytes) -> UpstreamCall | None:
        """The next page after ``body`` (``has_more``, from ``last_id``); None after the last."""
        page = decode_as(_decode_models, self.provider, "model list", body)
        if not page.has_more or not page.last_id:
            return None
        after = urllib.parse.quote(page.last_id, safe="")
        path = f"/v1/models?limit={MODELS_PAGE}&after_id={after}"
        return UpstreamCall("GET", path, self._headers)

    def parse_models(self, body: bytes) -> list[ListedModel]:
        """The models of one page, with their creation times."""
        page = decode_as(_decode_models, self.provider, "model list", body)
        return [ListedModel(model.id, _created(model.created_at)) for model in page.data]
