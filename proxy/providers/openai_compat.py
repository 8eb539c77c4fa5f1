"""OpenAI and OpenAI-compatible upstreams (DeepSeek, xAI): their quirks, errors and model lists.

A chat client's call passes through (:mod:`proxy.providers.chat_passthrough`). A call translated
from another client protocol reaches them in the internal chat form, which is OpenAI's chat, and
its answer is read into our chat types here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.chat import ChatChunk, ChatRequest, ChatResponse, PromptTokensDetails, Usage
from proxy.embeddings import EmbeddingsRequest
from proxy.errors import GatewayError
from proxy.providers.base import (
    UNREADABLE,
    ChunkParser,
    ListedModel,
    Passthrough,
    UpstreamCall,
    WireAdapter,
    decode_as,
    malformed,
    unix_time,
)
from proxy.providers.chat_passthrough import (
    ChatPassthrough,
    OpenAIEventParser,
    check_finish,
    error_fields,
    stream_error,
)
from proxy.providers.embeddings_passthrough import EmbeddingsPassthrough
from proxy.providers.responses_passthrough import ResponsesPassthrough
from proxy.providers.upstream_errors import map_status
from proxy.responses import ResponsesRequest

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
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        fix_usage = _FIX_USAGE.get(flavor)
        self._chat = ChatPassthrough(
            provider, rename_max_tokens=flavor == "openai", fix_usage=fix_usage
        )
        # OpenAI and xAI serve /responses; DeepSeek does not, so its calls are translated.
        self._responses = ResponsesPassthrough(provider) if flavor in _SERVES_RESPONSES else None
        # Of the three, only OpenAI serves /embeddings today.
        self._embeddings = EmbeddingsPassthrough(provider) if flavor == "openai" else None

    @property
    def fallback_models(self) -> tuple[str, ...]:
        """Models listed when the upstream cannot be asked."""
        return self._fallback_models

    def passthrough_for(self, protocol: str) -> Passthrough[Any] | None:
        """OpenAI chat passes through as is; so do the Responses API and embeddings where they
        are served."""
        if protocol == ChatRequest.PROTOCOL:
            return self._chat
        if protocol == ResponsesRequest.PROTOCOL:
            return self._responses
        if protocol == EmbeddingsRequest.PROTOCOL:
            return self._embeddings
        return None

    def chat_call(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        """A translated call: the internal form is OpenAI's chat, so the body goes up as is."""
        return self._chat.call(request, upstream_model)

    def parse_response(self, body: bytes, upstream_model: str) -> ChatResponse:
        """A ``chat.completion`` body (DeepSeek may pad it with leading blank lines)."""
        response = decode_as(_decode_response, self.provider, "response", body)
        normalize_usage(response.usage, self._flavor)
        for choice in response.choices:
            check_finish(self.provider, choice.finish_reason)
        return response

    def chunk_parser(self, upstream_model: str) -> ChunkParser[ChatChunk]:
        """A parser for one SSE stream of ``chat.completion.chunk`` events."""
        return OpenAIChunkParser(self.provider, self._flavor)

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


def normalize_usage(usage: Usage | None, flavor: str) -> None:
    """Bring a translated answer's usage to OpenAI's meaning, in place (see :data:`_FIX_USAGE`)."""
    fix = _FIX_USAGE.get(flavor)
    if usage is None or fix is None:
        return
    patch = fix(usage)
    if not patch:
        return
    completion = patch.get("completion_tokens")
    if isinstance(completion, int):
        usage.completion_tokens = completion
    details = patch.get("prompt_tokens_details")
    if isinstance(details, Mapping):
        usage.prompt_tokens_details = PromptTokensDetails(
            cached_tokens=details["cached_tokens"],
            audio_tokens=usage.prompt_tokens_details.audio_tokens
            if usage.prompt_tokens_details
            else 0,
        )


def deepseek_usage(usage: Usage) -> Mapping[str, Any] | None:
    """DeepSeek counts cache hits in its own ``prompt_cache_hit_tokens`` (older answers lack
    ``cached_tokens``): give them where OpenAI's clients read them too."""
    hit = usage.prompt_cache_hit_tokens
    if isinstance(hit, int) and hit and not usage.cached_tokens:
        return {"prompt_tokens_details": {"cached_tokens": hit}}
    return None


def xai_usage(usage: Usage) -> Mapping[str, Any] | None:
    """xAI leaves reasoning out of ``completion_tokens`` (its total is prompt + completion +
    reasoning), where OpenAI counts it in."""
    reasoning = usage.reasoning_tokens
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    if reasoning and usage.total_tokens == prompt + completion + reasoning:
        return {"completion_tokens": completion + reasoning}
    return None


_FIX_USAGE = {"deepseek": deepseek_usage, "grok": xai_usage}
_SERVES_RESPONSES = frozenset({"openai", "grok"})


class OpenAIChunkParser(OpenAIEventParser[ChatChunk]):
    """OpenAI's stream read into our types, for a translated call."""

    def __init__(self, provider: str, flavor: str) -> None:
        super().__init__(provider)
        self._flavor = flavor

    def _item(self, payload: bytes) -> ChatChunk:
        try:
            chunk = _decode_chunk(payload)
        except msgspec.ValidationError as exc:
            # An error event has no chunk fields; only then is it worth a second parse.
            raise stream_error(self._provider, payload, exc) from None
        except UNREADABLE as exc:
            raise malformed(self._provider, "stream event", exc) from None
        normalize_usage(chunk.usage, self._flavor)
        for choice in chunk.choices:
            check_finish(self._provider, choice.finish_reason)
        return chunk
