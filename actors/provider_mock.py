"""The in-process backend of the ``mock`` provider: canned answers after the configured latency.

It stands in for an upstream (demos, tests, load tests) without a socket: the answers come
from :mod:`proxy.providers.mock`, deterministic, and the configured latency is the only wait.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from time import perf_counter

import trio

from actors.provider_backend import Backend, CallTiming, ChunkStream
from proxy.chat import ChatChunk, chat_request
from proxy.client_request import ClientRequest
from proxy.config import ProviderConfig
from proxy.embeddings import EmbeddingsRequest
from proxy.messages import MessagesRequest
from proxy.providers.base import Answer, ListedModel
from proxy.providers.mock import MOCK_MODELS, mock_chunks, mock_response
from proxy.providers.mock_embeddings import mock_embeddings, mock_embeddings_size

_EMBED_IN_THREAD = 64 * 1024  # numbers in an embeddings answer made in a thread above this


class MockBackend(Backend):
    """Answers in-process after the configured latency."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__()
        self._latency_s = config.latency_ms / 1000
        self._chunk_count = config.chunk_count

    async def _wait(self, timing: CallTiming) -> None:
        started = perf_counter()
        await trio.sleep(self._latency_s)
        timing.upstream_s += perf_counter() - started

    async def complete(self, request: ClientRequest, model: str, timing: CallTiming) -> Answer:
        await self._wait(timing)
        if isinstance(request, EmbeddingsRequest):
            answer = partial(mock_embeddings, request, model)
            if mock_embeddings_size(request) > _EMBED_IN_THREAD:
                # Thousands of vectors take a good part of a second: not on the shared loop.
                return await trio.to_thread.run_sync(answer)
            return answer()
        return mock_response(chat_request(request), model, int(time.time()))

    @asynccontextmanager
    async def open_stream(
        self, request: ClientRequest, model: str, timing: CallTiming, first_by: float
    ) -> AsyncIterator[ChunkStream]:
        # In-process and deterministic: its configured latency is the whole story.
        chat = chat_request(request)
        await self._wait(timing)
        yield _ListChunkStream(mock_chunks(chat, model, int(time.time()), self._chunk_count))

    async def list_models(self) -> list[ListedModel]:
        return [ListedModel(name) for name in MOCK_MODELS]

    async def probe(self) -> None:
        await trio.lowlevel.checkpoint()  # in-process: always reachable

    async def forget_response(self, response_id: str) -> None:
        return  # answered here: nothing is stored anywhere else

    async def count_message_tokens(self, request: MessagesRequest, model: str) -> bytes:
        raise TypeError("the mock provider does not speak the Messages protocol")

    async def aclose(self) -> None:
        pass


class _ListChunkStream(ChunkStream):
    """Chunks made in advance, one per pull."""

    def __init__(self, chunks: list[ChatChunk]) -> None:
        self._chunks = iter(chunks)

    async def __anext__(self) -> ChatChunk:
        await trio.lowlevel.checkpoint()
        try:
            return next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None
