"""Anthropic Messages requests as the gateway sees them: the client's raw body, the few fields it
acts on, and the protocol headers a passthrough sends on (``POST /v1/messages``).

As for chat (:mod:`proxy.chat`) and the Responses API (:mod:`proxy.responses`), the body is kept
as the client sent it beside :class:`MessagesView`, the fields the gateway reads (checked, with
field-level errors): the model it routes by, whether to stream, the bound on the answer and the
messages (for their images). Everything else is the upstream's to judge when the call is passed
through (Anthropic), or the translator's (:mod:`proxy.messages_to_chat`) when it is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import msgspec
from msgspec import Struct

from proxy.chat_form import param_of
from proxy.errors import InvalidRequest
from proxy.request_body import decode_object

__all__ = [
    "MessagesHeaders",
    "MessagesRequest",
    "MessagesView",
    "content_blocks",
    "decode_messages_request",
]


class MessagesView(Struct, frozen=True):
    """The fields of a Messages request the gateway acts on; the rest stays in the raw body."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None  # required, except by count_tokens, which refuses it
    stream: bool | None = None


class MessagesHeaders(Struct, frozen=True):
    """What the client said about the protocol itself, sent on as is when passed through:
    Claude Code's features hang on ``anthropic-beta``, and the API version changes what a body
    may hold."""

    version: str | None = None
    """``anthropic-version``."""
    beta: str | None = None
    """``anthropic-beta``: comma-separated beta names."""
    beta_query: bool = False
    """Whether the path carried ``?beta=true`` (the SDKs' ``client.beta.messages``)."""


class MessagesRequest:
    """A Messages request as the client sent it (``raw``), with the gateway's view of it."""

    __slots__ = ("has_images", "headers", "raw", "view")

    #: The client protocol: an adapter speaking it natively (Anthropic) passes it through.
    PROTOCOL: ClassVar[str] = "anthropic-messages"

    def __init__(
        self, raw: dict[str, Any], view: MessagesView, headers: MessagesHeaders | None = None
    ) -> None:
        self.raw = raw
        self.view = view
        self.headers = headers or MessagesHeaders()
        self.has_images = any(block.get("type") == "image" for block in content_blocks(view))

    @property
    def model(self) -> str:
        """The model name the client asked for."""
        return self.view.model

    @property
    def stream(self) -> bool:
        """Whether the client wants SSE."""
        return self.view.stream is True

    @property
    def max_answer_tokens(self) -> int | None:
        """The client's bound on the answer, thinking included (required by the protocol)."""
        return self.view.max_tokens

    def with_headers(self, headers: MessagesHeaders) -> MessagesRequest:
        """The same request with the protocol headers it came with."""
        return MessagesRequest(self.raw, self.view, headers)


def decode_messages_request(body: bytes, *, counting: bool = False) -> MessagesRequest:
    """Parse a Messages body and check what the gateway acts on; a failure names the field.
    ``counting``: a ``count_tokens`` body, which has no ``max_tokens``."""
    raw = decode_object(body)
    for required in ("model", "messages") if counting else ("model", "max_tokens", "messages"):
        if required not in raw:
            raise InvalidRequest(f"{required}: Field required", param=required)
    try:
        view = msgspec.convert(raw, MessagesView)
    except msgspec.ValidationError as exc:
        message, param = param_of(exc)
        raise InvalidRequest(f"Invalid request: {message}", param=param) from None
    if not view.model:
        raise InvalidRequest("model: must not be empty", param="model")
    if view.max_tokens is not None and view.max_tokens < 0:
        raise InvalidRequest(
            "max_tokens: Input should be greater than or equal to 0", param="max_tokens"
        )
    if not view.messages:
        raise InvalidRequest("messages: at least one message is required", param="messages")
    return MessagesRequest(raw, view)


def content_blocks(view: MessagesView) -> Iterator[dict[str, Any]]:
    """Every content block of the messages that is an object, and those nested in tool results
    (which may carry images too)."""
    for message in view.messages:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            yield block
            nested = block.get("content") if block.get("type") == "tool_result" else None
            if isinstance(nested, list):
                yield from (inner for inner in nested if isinstance(inner, dict))
