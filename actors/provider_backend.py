"""What a provider's calls run on: the backend interface, its chunk stream, the call's timing.

The actor (:mod:`actors.provider`) is generic; a backend is how its calls reach one upstream, over
HTTP or in-process. A backend counts the calls using it, so that one replaced by a new base URL or
concurrency limit is closed only once the calls still running on it are done.
"""

from __future__ import annotations

import abc
import dataclasses
from contextlib import AbstractAsyncContextManager

import trio

from proxy.client_request import ClientRequest
from proxy.messages import MessagesRequest
from proxy.providers.base import Answer, ListedModel, StreamItem


@dataclasses.dataclass(slots=True)
class CallTiming:
    """Seconds spent waiting on the upstream during one call (the rest is gateway overhead)."""

    upstream_s: float = 0.0


class ChunkStream(abc.ABC):
    """The items of one streaming call, pulled by the caller: translated chunks or, for a call
    passed through, the upstream's own events."""

    def __aiter__(self) -> ChunkStream:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> StreamItem:
        """The next item; StopAsyncIteration at a clean end, GatewayError on failure."""


class Backend(abc.ABC):
    """How calls reach one upstream; counts the calls using it, so a replaced one is closed only
    once they are done."""

    def __init__(self) -> None:
        self._users = 0
        self._idle: trio.Event | None = None

    def acquire(self) -> None:
        """One more call uses the backend (until its :meth:`release`)."""
        self._users += 1

    def release(self) -> None:
        """One call stopped using the backend."""
        self._users -= 1
        if not self._users and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no call uses the backend (only its replacement gets new ones)."""
        if not self._users:
            await trio.lowlevel.checkpoint()
            return
        self._idle = trio.Event()
        await self._idle.wait()

    @abc.abstractmethod
    async def complete(self, request: ClientRequest, model: str, timing: CallTiming) -> Answer:
        """The whole answer of a non-streaming call (translated, or the upstream's own)."""

    @abc.abstractmethod
    def open_stream(
        self, request: ClientRequest, model: str, timing: CallTiming, first_by: float
    ) -> AbstractAsyncContextManager[ChunkStream]:
        """The chunks of one streaming call, open while the block runs; the first by a deadline."""

    @abc.abstractmethod
    async def list_models(self) -> list[ListedModel]:
        """The upstream's models."""

    @abc.abstractmethod
    async def probe(self) -> None:
        """One cheap, unbilled request that shows the upstream answers (its model list's first
        page); a GatewayError when it does not."""

    @abc.abstractmethod
    async def forget_response(self, response_id: str) -> None:
        """Have the upstream delete a response it stores (one passed through to it); nothing
        when it stores none or has it no longer."""

    @abc.abstractmethod
    async def count_message_tokens(self, request: MessagesRequest, model: str) -> bytes:
        """The upstream's own count of a Messages request's input tokens (its JSON answer);
        only asked of a backend that speaks the Messages protocol."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release what the backend holds."""
