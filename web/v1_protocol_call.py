"""A ``/v1`` call of a client protocol that is passed through to the upstreams that speak it
and translated through chat for every other (the Responses API, Anthropic's Messages API).

What the two share is how a stream is relayed: a passed-through stream forwards each of the
upstream's events (its name and bytes) as they come; a translated one feeds each chat chunk to
the protocol's event builder (:class:`EventBuilder`) and sends what it makes. And how a stream
that failed after it began is told: the builder's own failure events, nothing when the upstream
already sent its own end, else the protocol's error event (:meth:`_error_event`).
"""

from __future__ import annotations

import abc
from time import perf_counter
from typing import Protocol

from actors.provider_backend import ChunkStream
from proxy.chat import ChatChunk, Usage
from proxy.errors import GatewayError
from proxy.providers.base import PassedEvent, StreamItem
from web.asgi import SSE_HEADERS, Receive, Scope, Send
from web.translated_answers import chat_chunk
from web.v1_call import RequestT, V1Call
from web.v1_deps import V1Deps

__all__ = ["END", "EventBuilder", "ProtocolCall", "body_piece", "frame"]

END = {"type": "http.response.body", "body": b"", "more_body": False}


class EventBuilder(Protocol):
    """A protocol's event sequence built from a chat stream, each event as SSE bytes."""

    def start(self) -> list[bytes]:
        """The events that open the answer."""

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        """The events one chat chunk makes."""

    def finish(self, usage: Usage | None) -> list[bytes]:
        """The events that close a complete answer."""

    def fail(self, error: GatewayError) -> list[bytes]:
        """The events that close an answer failing after it began."""


def body_piece(payload: bytes) -> dict[str, object]:
    """One piece of a streamed body."""
    return {"type": "http.response.body", "body": payload, "more_body": True}


def frame(event: PassedEvent) -> bytes:
    """A passed-through event as SSE, under the name the upstream gave it."""
    data = event.data or b""
    if event.event:
        return b"event: " + event.event.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


class ProtocolCall(V1Call[RequestT]):
    """The stream relays and the failure after the start, for a passed-or-translated protocol."""

    def __init__(self, deps: V1Deps, scope: Scope, receive: Receive, send: Send) -> None:
        super().__init__(deps, scope, receive, send)
        # What a failure after the first byte needs to be told in the protocol's own terms.
        self._events: EventBuilder | None = None
        self._ended_by_upstream = False

    @abc.abstractmethod
    def _error_event(self, error: GatewayError) -> bytes:
        """The protocol's event for a passed-through stream that ended without its own end."""

    async def _on_passed(self, event: PassedEvent) -> None:
        """See a passed-through event before it is forwarded (nothing, unless overridden)."""

    async def _before_last_events(self, events: EventBuilder) -> None:
        """Act once a translated answer is complete, before its closing events leave."""

    async def _send_error_after_start(self, error: GatewayError) -> None:
        if self._events is not None:
            for event in self._events.fail(error):
                await self.send(body_piece(event))
        elif not self._ended_by_upstream:
            await self.send(body_piece(self._error_event(error)))
        await self.send(END)

    async def _start_stream(self) -> None:
        self.ttft_s = perf_counter() - self.started
        headers = [*SSE_HEADERS, *self._headers()]
        await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        self.response_started = True

    async def _relay_passed(self, items: ChunkStream, item: StreamItem | None) -> None:
        """Forward a passed-through stream, from its first item, as the upstream's events."""
        await self._start_stream()
        keep_text = self.deps.config.logging.store_bodies
        pieces: list[str] = []
        try:
            while item is not None:
                assert isinstance(item, PassedEvent), "a passed-through stream is events"
                if item.usage is not None:
                    self.usage = item.usage
                if keep_text and item.text:
                    pieces.append(item.text)
                if item.data is not None:
                    await self._on_passed(item)
                    if item.terminal:
                        self._ended_by_upstream = True
                    await self.send(body_piece(frame(item)))
                try:
                    item = await items.__anext__()  # read here, not by a helper: per event
                except StopAsyncIteration:
                    break
        finally:
            if keep_text:
                self.response_text = "".join(pieces)
        self._done = True
        await self.send(END)

    async def _relay_translated(
        self, items: ChunkStream, item: StreamItem | None, events: EventBuilder, provider: str
    ) -> None:
        """Build the protocol's events from a translated stream, from its first item; then
        :meth:`_close_translated`."""
        await self._start_stream()
        self._events = events
        for event in events.start():
            await self.send(body_piece(event))
        keep_text = self.deps.config.logging.store_bodies
        pieces: list[str] = []
        try:
            while item is not None:
                chunk = chat_chunk(provider, item)
                if chunk.usage is not None:
                    self.usage = chunk.usage
                if keep_text:
                    pieces.extend(c.delta.content for c in chunk.choices if c.delta.content)
                for event in events.feed(chunk):
                    await self.send(body_piece(event))
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    break
        finally:
            if keep_text:
                self.response_text = "".join(pieces)

    async def _close_translated(self, events: EventBuilder) -> None:
        """End a translated stream whose upstream is done (closed first, so that nothing after
        it, a store included, holds the upstream connection)."""
        last = events.finish(self.usage)
        await self._before_last_events(events)
        self._done = True
        self._events = None  # finished: a failure from here on has nothing more to tell
        for event in last:
            await self.send(body_piece(event))
        await self.send(END)
