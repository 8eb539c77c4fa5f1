"""Embeddings requests as the gateway sees them: the client's raw body and the few fields it acts
on (``POST /v1/embeddings``).

As for chat (:mod:`proxy.chat`), the body is kept as the client sent it beside
:class:`EmbeddingsView`, the fields the gateway reads (checked, with field-level errors): the model
it routes by, the input, the encoding the client wants the vectors in, and their dimensions. An
upstream that serves OpenAI's embeddings (OpenAI) gets the body as sent; any other gets its own
embeddings call built from the view (:meth:`proxy.providers.base.WireAdapter.embeddings_call`).
There is no chat form of an embeddings request: it is never translated through chat.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Literal

import msgspec
from msgspec import Struct

from proxy.chat_form import PositiveInt, param_of
from proxy.errors import InvalidRequest
from proxy.request_body import decode_object

__all__ = ["MAX_INPUTS", "EmbeddingsRequest", "EmbeddingsView", "decode_embeddings_request"]

MAX_INPUTS: Final = 2048
"""The most inputs one request may embed (OpenAI's own bound)."""


class EmbeddingsView(Struct, frozen=True):
    """The fields of an embeddings request the gateway acts on; the rest stays in the raw body."""

    model: str
    input: Any = None
    encoding_format: Literal["float", "base64"] | None = None  # null or absent: float
    dimensions: PositiveInt | None = None
    user: str | None = None


class EmbeddingsRequest:
    """An embeddings request as the client sent it (``raw``), with the gateway's view of it."""

    __slots__ = ("has_images", "raw", "view")

    #: The client protocol: an adapter serving OpenAI's embeddings passes it through.
    PROTOCOL: ClassVar[str] = "openai-embeddings"

    def __init__(self, raw: dict[str, Any], view: EmbeddingsView) -> None:
        self.raw = raw
        self.view = view
        self.has_images = False  # embeddings take text (or tokens) only

    @property
    def model(self) -> str:
        """The model name the client asked for."""
        return self.view.model

    @property
    def stream(self) -> bool:
        """Embeddings are never streamed."""
        return False

    @property
    def max_answer_tokens(self) -> int:
        """An embedding is no text: the call costs its input tokens only."""
        return 0

    @property
    def base64(self) -> bool:
        """Whether the client wants each vector as base64 of little-endian float32."""
        return self.view.encoding_format == "base64"


def decode_embeddings_request(body: bytes) -> EmbeddingsRequest:
    """Parse an embeddings body and check what the gateway acts on; a failure names the field."""
    raw = decode_object(body)
    for required in ("model", "input"):
        if required not in raw:
            raise InvalidRequest(f"Missing required parameter: '{required}'.", param=required)
    try:
        view = msgspec.convert(raw, EmbeddingsView)
    except msgspec.ValidationError as exc:
        message, param = param_of(exc)
        raise InvalidRequest(f"Invalid request: {message}", param=param) from None
    if not view.model:
        raise InvalidRequest("'model' must not be empty.", param="model")
    _check_input(view.input)
    return EmbeddingsRequest(raw, view)


def _check_input(value: object) -> None:
    """A string, a list of strings, a token array or a list of token arrays, bounded."""
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("'input' must not be an empty string.", param="input")
        return
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            "'input' must be a string, a non-empty list of strings, or token arrays.",
            param="input",
        )
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' holds {len(value)} items; at most {MAX_INPUTS} may be embedded at once.",
            param="input",
        )
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return  # one token array
    for index, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise InvalidRequest(
                    f"'input[{index}]' must not be empty.", param=f"input[{index}]"
                )
            continue
        tokens = isinstance(item, list) and item
        if tokens and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            continue
        raise InvalidRequest(
            f"'input[{index}]' must be a non-empty string or a non-empty token array.",
            param=f"input[{index}]",
        )
