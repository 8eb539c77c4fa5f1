"""A passed-through stream of named SSE events (the Responses API's, Anthropic Messages'): each
event read as it came, nothing taken after the protocol's own end, a stream without that end cut.
What each event means is the protocol's parser's (:meth:`NamedEventParser._item`)."""

from __future__ import annotations

import abc

from proxy.errors import UpstreamError
from proxy.providers.base import ChunkParser, PassedEvent, malformed
from proxy.sse import SSEDecoder, SSEError

__all__ = ["NamedEventParser"]


class NamedEventParser(ChunkParser[PassedEvent]):
    """Each SSE event becomes a passed event (its name and data as they came) through
    :meth:`_item`, which sets :attr:`_ended` at the protocol's end of the answer."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._sse = SSEDecoder()
        self._ended = False

    @abc.abstractmethod
    def _item(self, name: str, payload: bytes) -> PassedEvent:
        """The passed event for one SSE event; raise a GatewayError for an unreadable one."""

    def _feed(self, data: bytes, items: list[PassedEvent]) -> None:
        try:
            events = self._sse.feed(data)
        except SSEError as exc:
            raise malformed(self._provider, "stream", exc) from None
        for event in events:
            if self._ended:
                continue  # nothing follows the end; a stray event is not the client's
            items.append(self._item(event.event, event.data.encode()))
        if self._sse.failure is not None:
            raise malformed(self._provider, "stream", self._sse.failure)

    def _finish(self, items: list[PassedEvent]) -> None:
        self._sse.close()
        if not self._ended:
            raise UpstreamError(
                f"Upstream {self._provider} ended the stream before it was complete.",
                code="upstream_stream_cut",
            )
