"""The OpenAI Chat Completions protocol, spoken to OpenAI and to OpenAI-compatible upstreams.

The request body is the client's own dict with the model renamed, so parameters the gateway does
not model still reach the upstream. Streams always ask for usage (we log it); whether the client
sees the usage chunk is decided by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.chat import ChatChunk, ChatRequest, ChatResponse, PromptTokensDetails, Usage
from proxy.errors import GatewayError, UpstreamError, UpstreamUnavailable
from proxy.providers.base import (
    UNREADABLE,
    ChunkParser,
    ListedModel,
    UpstreamCall,
    WireAdapter,
    decode_as,
    decode_json,
    malformed,
    unix_time,
)
from proxy.providers.upstream_errors import map_status
from proxy.sse import Event, SSEDecoder, SSEError

_encode = msgspec.json.Encoder().encode
_BAD_KEY = re.compile(r"\b(incorrect|invalid) api key", re.IGNORECASE)
_decode_chunk = msgspec.json.Decoder(ChatChunk).decode
_decode_response = msgspec.json.Decoder(ChatResponse).decode


class _ModelEntry(msgspec.Struct):
    id: str
    created: Any = None  # OpenAI's and xAI's Unix time; DeepSeek sends none


class _ModelsBody(msgspec.Struct):
    data: list[_ModelEntry]


_decode_models = msgspec.json.Decoder(_ModelsBody).decode

OPENAI_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-5",
    "gpt-5-mini",
    "o3",
    "o4-mini",
)


class OpenAICompatAdapter(WireAdapter):
    """OpenAI's wire format; ``flavor`` selects the per-provider differences."""

    def __init__(
        self,
        provider: str,
        api_key: str | None,
        *,
        flavor: str = "openai",
        fallback_models: tuple[str, ...] = OPENAI_MODELS,
    ) -> None:
        super().__init__(provider, api_key)
        self._flavor = flavor
        self._fallback_models = fallback_models
        headers = {"content-type": "application/json", "accept": "application/json"}
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}

    @property
    def fallback_models(self) -> tuple[str, ...]:
        """Models listed when the upstream cannot be asked."""
        return self._fallback_models

    def chat_call(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        """The client's body with our model name, usage always requested on streams."""
        body: dict[str, Any] = dict(request.raw)
        body["model"] = upstream_model
        if self._flavor == "openai" and "max_tokens" in body:
            # OpenAI deprecated max_tokens and reasoning models reject it; the new name means
            # the same bound (including reasoning), so translating loses nothing.
            max_tokens = body.pop("max_tokens")
            body.setdefault("max_completion_tokens", max_tokens)
        if request.stream:
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
            return UpstreamCall("POST", "/chat/completions", self._stream_headers, _encode(body))
        return UpstreamCall("POST", "/chat/completions", self._headers, _encode(body))

    def parse_response(self, body: bytes, upstream_model: str) -> ChatResponse:
        """A ``chat.completion`` body (DeepSeek may pad it with leading blank lines)."""
        response = decode_as(_decode_response, self.provider, "response", body)
        normalize_usage(response.usage)
        for choice in response.choices:
            check_finish(self.provider, choice.finish_reason)
        return response

    def chunk_parser(self, upstream_model: str) -> ChunkParser:
        """A parser for one SSE stream of ``chat.completion.chunk`` events."""
        return OpenAIChunkParser(self.provider)

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """An OpenAI error body (or anything else) mapped by status."""
        message, code, param = error_fields(body)
        if status == 400 and message and _BAD_KEY.search(message):
            # xAI answers a wrong key with 400; it is the gateway's key, not the client's request.
            status = 401
        return map_status(
            self.provider,
            status,
            message or f"HTTP {status}",
            headers=headers,
            code=code,
            param=param,
        )

    def models_call(self) -> UpstreamCall:
        """``GET /models``."""
        return UpstreamCall("GET", "/models", self._headers)

    def parse_models(self, body: bytes) -> list[ListedModel]:
        """Ids and creation times of ``{"data": [{"id": ..., "created": ...}]}``."""
        page = decode_as(_decode_models, self.provider, "model list", body)
        return [ListedModel(entry.id, unix_time(entry.created)) for entry in page.data]


def normalize_usage(usage: Usage | None) -> None:
    """Bring an OpenAI-compatible upstream's usage to OpenAI's meaning, in place.

    DeepSeek counts cache hits in ``prompt_cache_hit_tokens`` (older answers lack
    ``cached_tokens``); xAI leaves reasoning out of ``completion_tokens`` (its total is
    prompt + completion + reasoning), where OpenAI counts it in.
    """
    if usage is None:
        return
    hit = usage.prompt_cache_hit_tokens
    if hit is not None:
        if not usage.cached_tokens:
            usage.prompt_tokens_details = PromptTokensDetails(cached_tokens=hit)
        usage.prompt_cache_hit_tokens = usage.prompt_cache_miss_tokens = None
    reasoning = usage.reasoning_tokens
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    if reasoning and usage.total_tokens == prompt + completion + reasoning:
        usage.completion_tokens = completion + reasoning


def check_finish(provider: str, finish_reason: str | None) -> None:
    """DeepSeek ends an answer it could not complete with its own reason: that is an outage."""
    if finish_reason == "insufficient_system_resource":
        raise UpstreamUnavailable(
            f"Upstream {provider} ran out of capacity and cut the answer short "
            "(insufficient_system_resource).",
            code="insufficient_system_resource",
        )


def error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """``(message, code, param)`` of an error body: OpenAI's shape, xAI's string, or text."""
    try:
        parsed = msgspec.json.decode(body)
    except UNREADABLE:
        text = body[:500].decode(errors="replace").strip()
        return (text or None), None, None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            code = error.get("code")
            param = error.get("param")
            return (
                str(message) if message is not None else None,
                str(code) if code is not None else None,
                str(param) if param is not None else None,
            )
        if isinstance(error, str):
            return error, None, None
    return body[:500].decode(errors="replace"), None, None


class OpenAIChunkParser(ChunkParser):
    """SSE ``data:`` events of chunks, an optional in-stream error, and ``[DONE]``."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._sse = SSEDecoder()
        self._done = False

    def _feed(self, data: bytes, chunks: list[ChatChunk]) -> None:
        try:
            events = self._sse.feed(data)
        except SSEError as exc:
            raise malformed(self._provider, "stream", exc) from None
        # Complete events before a bad line of this read are parsed first (the base class
        # delivers their chunks, then the error).
        self._parse_events(events, chunks)
        if self._sse.failure is not None:
            raise malformed(self._provider, "stream", self._sse.failure)

    def _parse_events(self, events: list[Event], chunks: list[ChatChunk]) -> None:
        for event in events:
            if self._done:
                continue
            if event.data == "[DONE]":
                self._done = True
                continue
            payload = event.data.encode()
            try:
                chunk = _decode_chunk(payload)
            except msgspec.ValidationError as exc:
                # An error event has no chunk fields; only then is it worth a second parse.
                raise self._stream_error(payload, exc) from None
            except UNREADABLE as exc:
                raise malformed(self._provider, "stream event", exc) from None
            normalize_usage(chunk.usage)
            for choice in chunk.choices:
                check_finish(self._provider, choice.finish_reason)
            chunks.append(chunk)

    def _finish(self, chunks: list[ChatChunk]) -> None:
        # The stream ended: fine only after [DONE].
        self._sse.close()
        if not self._done:
            raise UpstreamError(
                f"Upstream {self._provider} ended the stream before it was complete.",
                code="upstream_stream_cut",
            )

    def _stream_error(self, payload: bytes, exc: Exception) -> GatewayError:
        parsed = decode_json(self._provider, "stream event", payload)
        if isinstance(parsed, dict) and "error" in parsed:
            message, code, _ = error_fields(payload)
            return UpstreamError(
                f"Upstream {self._provider} failed mid-stream: {message or 'unknown error'}",
                code=code,
            )
        return malformed(self._provider, "stream event", exc)
