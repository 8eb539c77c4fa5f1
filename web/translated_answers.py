"""A translated call's answer read as chat, whichever way the chat upstream gave it: the
adapter's own ``ChatResponse`` / ``ChatChunk``, or the bytes a chat passthrough forwarded."""

from __future__ import annotations

import msgspec

from proxy.chat import ChatChunk, ChatResponse
from proxy.errors import UpstreamError
from proxy.providers.base import PassedAnswer, StreamItem

__all__ = ["chat_answer", "chat_chunk"]


def chat_answer(provider: str, answer: object) -> ChatResponse:
    """A translated call's answer as a chat response (a chat upstream passes its own bytes)."""
    if isinstance(answer, ChatResponse):
        return answer
    if isinstance(answer, PassedAnswer):
        try:
            return msgspec.json.decode(answer.body, type=ChatResponse)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise UpstreamError(
                f"Upstream {provider} answered a malformed response: {exc}"
            ) from None
    raise TypeError(f"not a chat answer: {type(answer).__name__}")


def chat_chunk(provider: str, item: StreamItem) -> ChatChunk:
    """One item of a translated call's stream as a chat chunk."""
    if isinstance(item, ChatChunk):
        return item
    try:
        return msgspec.json.decode(item.data or b"{}", type=ChatChunk)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise UpstreamError(f"Upstream {provider} sent a malformed stream event: {exc}") from None
