"""Responses API requests as the gateway sees them: the client's raw body and the few fields it
acts on (``POST /v1/responses``).

As for chat (:mod:`proxy.chat`), the body is kept as the client sent it, beside
:class:`ResponsesView`, the fields the gateway reads (checked, with field-level errors): the model
it routes by, whether to stream, whether to store, the conversation it continues and the bound on
the answer. Everything else is the upstream's to judge when the call is passed through (OpenAI,
xAI), or the translator's (:mod:`proxy.responses_to_chat`) when it is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import msgspec
from msgspec import Struct

from proxy.chat_form import PositiveInt, param_of
from proxy.errors import InvalidRequest
from proxy.request_body import decode_object


class ResponsesView(Struct, frozen=True):
    """The fields of a Responses request the gateway acts on; the rest stays in the raw body."""

    model: str
    input: str | list[dict[str, Any]] | None = None
    stream: bool | None = None  # null means false, as for chat
    store: bool | None = None  # null or absent: OpenAI's default, true
    previous_response_id: str | None = None
    instructions: str | None = None
    max_output_tokens: PositiveInt | None = None


class ResponsesRequest:
    """A Responses request as the client sent it (``raw``), with the gateway's view of it."""

    __slots__ = ("has_images", "raw", "view")

    #: The client protocol: an adapter speaking it natively (OpenAI, xAI) passes it through.
    PROTOCOL: ClassVar[str] = "openai-responses"

    def __init__(self, raw: dict[str, Any], view: ResponsesView) -> None:
        self.raw = raw
        self.view = view
        self.has_images = any(part.get("type") == "input_image" for part in input_parts(view))

    @property
    def model(self) -> str:
        """The model name the client asked for."""
        return self.view.model

    @property
    def stream(self) -> bool:
        """Whether the client wants SSE."""
        return self.view.stream is True

    @property
    def stored(self) -> bool:
        """Whether the response is to be kept for ``GET`` and ``previous_response_id``."""
        return self.view.store is not False

    @property
    def max_answer_tokens(self) -> int | None:
        """The client's bound on the answer, reasoning included."""
        return self.view.max_output_tokens

    def with_raw(self, raw: dict[str, Any]) -> ResponsesRequest:
        """The same request with a rewritten body."""
        return ResponsesRequest(raw, self.view)


def decode_responses_request(body: bytes) -> ResponsesRequest:
    """Parse a Responses body and check what the gateway acts on; a failure names the field."""
    raw = decode_object(body)
    if "model" not in raw:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    try:
        view = msgspec.convert(raw, ResponsesView)
    except msgspec.ValidationError as exc:
        message, param = param_of(exc)
        raise InvalidRequest(f"Invalid request: {message}", param=param) from None
    if not view.model:
        raise InvalidRequest("'model' must not be empty.", param="model")
    if view.previous_response_id is not None and not view.previous_response_id:
        raise InvalidRequest(
            "'previous_response_id' must not be empty.", param="previous_response_id"
        )
    return ResponsesRequest(raw, view)


def input_parts(view: ResponsesView) -> Iterator[dict[str, Any]]:
    """Every content part of the input's items that is an object (message contents and the
    array outputs of function calls)."""
    if not isinstance(view.input, list):
        return
    for item in view.input:
        for key in ("content", "output"):
            value = item.get(key)
            if isinstance(value, list):
                yield from (part for part in value if isinstance(part, dict))
