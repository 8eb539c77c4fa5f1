"""The chunks of one streaming HTTP call, pulled from the upstream's bytes as the caller asks.

A stream must produce its first chunk within ``timeout_s`` of the call (the answer's headers count
against the same deadline; a cancel scope keeps it) and each next chunk within ``timeout_s`` of
being asked for (kept by the provider's :class:`~actors.stall_watch.StallWatch`, which aborts the
read of a stream waiting past it). Bytes that produce no chunk (keep-alive comments, blank lines)
do not extend either deadline, unlike httpx's read timeout, which every received byte resets.
Reading only when the caller pulls keeps a client disconnect structural: cancelling the caller
cancels the upstream read right there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from time import perf_counter

import httpx
import trio

from actors.provider_backend import CallTiming, ChunkStream
from proxy.chat import ChatChunk
from proxy.errors import UpstreamTimeout
from proxy.providers.base import ChunkParser, PassedEvent, StreamItem


class HttpChunkStream(ChunkStream):
    """Pulls raw bytes from the upstream and parses them into chunks on demand."""

    # The wait for a chunk, not for bytes, is bounded: the first by ``first_by``, each later one
    # by ``timeout_s`` from the moment it is asked for, so keep-alive comments extend neither.

    def __init__(
        self,
        raw: AsyncIterator[bytes],
        abort: Callable[[], None],
        parser: ChunkParser[ChatChunk] | ChunkParser[PassedEvent],
        timing: CallTiming,
        *,
        name: str,
        timeout_s: float,
        first_by: float,
    ) -> None:
        self._raw = raw
        self._abort = abort
        self._waiting_since: float | None = None
        self._stalled = False
        self._parser = parser
        self._timing = timing
        self._name = name
        self._timeout_s = timeout_s
        self._first_by: float | None = first_by
        self._ready: Sequence[StreamItem] = ()
        self._taken = 0  # how many of _ready were handed out
        self._finished = False

    async def __anext__(self) -> StreamItem:
        if self._taken == len(self._ready):
            if self._first_by is not None:
                with first_chunk_deadline(self._name, self._timeout_s, self._first_by):
                    await self._fill()
                self._first_by = None
            else:
                # No cancel scope per chunk: the stall watch aborts a wait past its deadline.
                self._waiting_since = trio.current_time()
                try:
                    await self._fill()
                except httpx.HTTPError:
                    if self._stalled:
                        raise UpstreamTimeout(
                            f"Upstream {self._name} sent no data for {self._timeout_s:g} s "
                            "(keep-alives do not count); the stream was cut."
                        ) from None
                    raise
                finally:
                    self._waiting_since = None
                    self._stalled = False
            if not self._ready:
                raise StopAsyncIteration
        item = self._ready[self._taken]
        self._taken += 1
        return item

    def waiting_since(self) -> float | None:
        """When the wait for the next chunk began; None when not waiting (the first chunk's
        wait has its own deadline)."""
        return self._waiting_since

    def stalled(self) -> None:
        """The wait for the next chunk is past its deadline: abort the read under way."""
        self._stalled = True
        self._abort()

    async def _fill(self) -> None:
        """Read until an item is ready or the upstream ended the body."""
        self._ready, self._taken = (), 0
        while not self._ready:
            if self._parser.failure is not None:
                # The chunks read along with an error went out first; now the error ends the
                # stream, without waiting for bytes the upstream may never send.
                raise self._parser.failure
            if self._finished:
                return
            started = perf_counter()
            try:
                data = await self._raw.__anext__()
            except StopAsyncIteration:
                self._finished = True
                self._ready = self._parser.finish()
                return
            finally:
                self._timing.upstream_s += perf_counter() - started
            self._ready = self._parser.feed(data)


@contextmanager
def first_chunk_deadline(provider: str, timeout_s: float, deadline: float) -> Iterator[None]:
    """Bound the start of a stream (headers, then its first chunk) by one deadline."""
    try:
        with trio.fail_at(deadline):
            yield
    except trio.TooSlowError:
        raise UpstreamTimeout(
            f"Upstream {provider} sent no data within {timeout_s:g} s of the request "
            "(keep-alives do not count)."
        ) from None
