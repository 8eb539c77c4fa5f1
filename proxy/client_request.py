"""What a request of any client protocol gives the parts that limit, route, call and log it.

Each protocol keeps the client's body as sent (``raw``) beside a view of the few fields the
gateway acts on: chat (:class:`proxy.chat.ChatRequest`) and the Responses API
(:class:`proxy.responses.ResponsesRequest`). An upstream that speaks the protocol gets it passed
through (:meth:`proxy.providers.base.WireAdapter.passthrough_for`); any other gets the chat form
of it, which its adapter translates.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol


class ClientRequest(Protocol):
    """A decoded request of one client protocol."""

    #: The protocol's name, which an adapter that speaks it natively recognises.
    PROTOCOL: ClassVar[str]
    #: The body as the client sent it, decoded.
    raw: dict[str, Any]
    #: Whether it carries images (their fetching and memory are budgeted).
    has_images: bool

    @property
    def model(self) -> str:
        """The model name the client asked for."""

    @property
    def stream(self) -> bool:
        """Whether the client wants SSE."""

    @property
    def max_answer_tokens(self) -> int | None:
        """The client's bound on the answer's tokens, if it gave one."""
