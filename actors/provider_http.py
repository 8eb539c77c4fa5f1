"""The HTTP backend: one upstream reached over a lean httpx transport, its key and reads bounded.

Secrets: the provider key joins a request in one place, :meth:`HttpBackend._credentials_for`, and
only for an origin the file binds it to (:mod:`proxy.origins`); whatever moved the base URL, the
key cannot follow it to another origin.

Reads are raw and capped (a whole answer, an error body, a model list): the gateway asks for no
compression, since a compressed answer would arrive undecoded. There is no read or write timeout:
every call runs under the actor's own deadlines (whole call, first chunk, next chunk), which
keep-alive bytes cannot extend. Transport failures become gateway errors here: timeouts 504,
anything else on the wire 502.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from time import perf_counter

import httpx
import trio

from actors.provider_backend import Backend, CallTiming, ChunkStream
from actors.provider_http_stream import HttpChunkStream, first_chunk_deadline
from actors.provider_reach import unreached_because
from actors.stall_watch import StallWatch
from proxy import __version__
from proxy.chat import ChatChunk, ChatRequest, chat_request
from proxy.client_request import ClientRequest
from proxy.config import ProviderConfig
from proxy.embeddings import EmbeddingsRequest
from proxy.errors import (
    GatewayError,
    ModelNotFound,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.messages import MessagesRequest
from proxy.origins import KeyBinding
from proxy.providers.base import (
    Answer,
    ChunkParser,
    ListedModel,
    PassedAnswer,
    PassedEvent,
    UpstreamCall,
    WireAdapter,
)
from proxy.providers.messages_passthrough import MessagesPassthrough
from proxy.providers.one_tool_call import (
    OneToolCallParser,
    asks_one_tool_call,
    first_tool_call_only,
)
from proxy.providers.responses_passthrough import ResponsesPassthrough
from proxy.responses import ResponsesRequest
from proxy.upstream_http import UpstreamTransport, build_request, close_response, raw_stream

MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a non-streaming answer larger than this is not a chat reply
MAX_ERROR_BYTES = 64 * 1024  # enough for any error body; the rest is noise
MAX_MODELS_BYTES = 8 * 1024 * 1024  # a model list; Ollama's is polled every 30 s
MAX_MODEL_PAGES = 20  # pages of a paged model list read at most (a looping cursor ends here)
KEEPALIVE_EXPIRY_S = 30.0  # an idle upstream connection is dropped after this
MAX_CACHED_URLS = 1024
_KEEP_SENT_BODY_BYTES = 64 * 1024  # a larger body is trimmed, and dropped once it is sent
_PARSE_IN_THREAD_BYTES = 256 * 1024  # embeddings answers larger than this are read in a thread
# We read raw bytes (and cap them): a compressed answer would arrive undecoded.
_BASE_HEADERS = (
    (b"accept-encoding", b"identity"),
    (b"user-agent", f"llm-proxy/{__version__}".encode()),
)


_HeaderPairs = tuple[tuple[bytes, bytes], ...]


class HttpBackend(Backend):
    """Calls over httpx with explicit limits and per-phase timeouts.

    Requests go straight to the transport (:mod:`proxy.upstream_http`): the client layer of
    ``httpx.AsyncClient`` (URL merging, cookies, auth and redirect machinery we never use) cost
    ~90 µs per call on the bench machine.
    """

    def __init__(
        self,
        config: ProviderConfig,
        adapter: WireAdapter,
        binding: KeyBinding,
        stalls: StallWatch,
    ) -> None:
        super().__init__()
        self._stalls = stalls
        self._name = config.name
        self._timeout_s = config.timeout_s
        self._adapter = adapter
        self._base_url = config.base_url.rstrip("/")
        self._binding = binding
        self._credentials: _HeaderPairs = tuple(
            (name.encode(), value.encode()) for name, value in adapter.credential_headers().items()
        )
        self._targets: dict[str, tuple[httpx.URL, _HeaderPairs]] = {}
        # More connections than the actor's concurrency limit, so a call never waits in the pool.
        self._transport = UpstreamTransport(
            max_connections=config.max_concurrency + 16,
            max_keepalive_connections=config.max_concurrency,
            keepalive_expiry=KEEPALIVE_EXPIRY_S,
        )
        self._extensions: dict[str, object] = {
            # No read or write timeout: every call runs under the actor's own deadlines (whole call,
            # first chunk, next chunk), which keep-alive bytes cannot extend as they would these.
            "timeout": httpx.Timeout(
                connect=config.connect_timeout_s,
                read=None,
                write=None,
                pool=config.connect_timeout_s,
            ).as_dict()
        }

    async def aclose(self) -> None:
        await self._transport.aclose()

    def _target(self, path: str) -> tuple[httpx.URL, _HeaderPairs]:
        """The URL of ``path`` and the key's headers to send with it."""
        target = self._targets.get(path)
        if target is None:
            url = httpx.URL(self._base_url + path)
            target = (url, self._credentials_for(url))
            # Paths name models (Gemini's do): bounded by the models in use, but capped anyway.
            if len(self._targets) < MAX_CACHED_URLS:
                self._targets[path] = target
        return target

    def _credentials_for(self, url: httpx.URL) -> _HeaderPairs:
        """The key's headers, for an origin the key is bound to only.

        The one place a provider key joins a request (chat calls, model listings and the
        dashboard's test call all come through here), so whatever moved the base URL, the key
        cannot follow it to another origin. The URL is the one the transport connects to.
        """
        if not self._credentials:
            return ()
        refusal = self._binding.refusal(url)
        if refusal is not None:
            raise UpstreamUnavailable(refusal, code="base_url_not_allowed")
        return self._credentials

    async def _send(self, call: UpstreamCall) -> httpx.Response:
        url, credentials = self._target(call.path)
        headers = [
            *_BASE_HEADERS,
            *credentials,
            *((k.encode(), v.encode()) for k, v in call.headers.items()),
        ]
        request = build_request(call.method, url, headers, call.body, self._extensions)
        return await self._transport.handle_async_request(request)

    async def complete(self, request: ClientRequest, model: str, timing: CallTiming) -> Answer:
        passthrough = self._adapter.passthrough_for(request.PROTOCOL)
        one_call = False
        embeddings = request if isinstance(request, EmbeddingsRequest) else None
        if passthrough is not None:
            call = passthrough.call(request, model)
        elif embeddings is not None:
            return await self._embed(embeddings, model, timing)
        else:
            chat = chat_request(request)
            call = self._adapter.chat_call(chat, model)
            one_call = self._keeps_one_call(chat)
            del chat
        del request  # only the body is needed now: inline images go from two copies to one
        if call.body is not None and len(call.body) > _KEEP_SENT_BODY_BYTES:
            # msgspec leaves its output up to half over-allocated, and this body (megabytes of
            # inline images) is kept until the answer's head, i.e. the whole call: copy it to size.
            call = dataclasses.replace(call, body=bytes(memoryview(call.body)))
        started = perf_counter()
        try:
            with _TransportErrors(self._name):
                response = await self._send(call)
                try:
                    limit = MAX_RESPONSE_BYTES if response.is_success else MAX_ERROR_BYTES
                    body = await _read_capped(response, limit, self._name)
                finally:
                    close_response(response)
        finally:
            timing.upstream_s += perf_counter() - started
        if not response.is_success:
            raise self._adapter.map_error(response.status_code, response.headers, body)
        if passthrough is not None:
            return passthrough.answer(body)
        answer = self._adapter.parse_response(body, model)
        return first_tool_call_only(answer) if one_call else answer

    async def _embed(
        self, request: EmbeddingsRequest, model: str, timing: CallTiming
    ) -> PassedAnswer:
        """An embeddings call in the upstream's own API: its calls in order, one answer."""
        bodies: list[bytes] = []
        started = perf_counter()
        try:
            for call in self._adapter.embeddings_calls(request, model):
                bodies.append(await self._small_call(call, MAX_RESPONSE_BYTES))
        finally:
            timing.upstream_s += perf_counter() - started
        parse = partial(self._adapter.parse_embeddings, bodies, request, model)
        if sum(map(len, bodies)) > _PARSE_IN_THREAD_BYTES:
            # Thousands of vectors take a good part of a second to read and re-encode: not on
            # the loop every stream shares.
            return await trio.to_thread.run_sync(parse)
        return parse()

    @asynccontextmanager
    async def open_stream(
        self, request: ClientRequest, model: str, timing: CallTiming, first_by: float
    ) -> AsyncIterator[ChunkStream]:
        passthrough = self._adapter.passthrough_for(request.PROTOCOL)
        parser: ChunkParser[ChatChunk] | ChunkParser[PassedEvent]
        if passthrough is not None:
            call = passthrough.call(request, model)
            parser = passthrough.event_parser(request)
        else:
            chat = chat_request(request)
            call = self._adapter.chat_call(chat, model)
            parser = self._adapter.chunk_parser(model)
            if self._keeps_one_call(chat):
                parser = OneToolCallParser(parser)
            del chat
        del request  # only the body is needed now: inline images go from two copies to one
        started = perf_counter()
        with _TransportErrors(self._name):
            # The headers count against the first chunk's deadline (there is no read timeout).
            with first_chunk_deadline(self._name, self._timeout_s, first_by):
                response = await self._send(call)
            try:
                if call.body is not None and len(call.body) > _KEEP_SENT_BODY_BYTES:
                    # The answer's head is in, so no retry will send the body again: let it go
                    # now, not when the stream ends (it may carry megabytes of inline images).
                    response.request = httpx.Request(call.method, response.request.url)
                del call
                if not response.is_success:
                    with first_chunk_deadline(self._name, self._timeout_s, first_by):
                        body = await _read_capped(response, MAX_ERROR_BYTES, self._name)
                    raise self._adapter.map_error(response.status_code, response.headers, body)
                timing.upstream_s += perf_counter() - started
                upstream_body = raw_stream(response)
                stream = HttpChunkStream(
                    upstream_body,
                    upstream_body.abort,
                    parser,
                    timing,
                    name=self._name,
                    timeout_s=self._timeout_s,
                    first_by=first_by,
                )
                with self._stalls.watching(stream):
                    yield stream
            finally:
                close_response(response)

    def _keeps_one_call(self, chat: ChatRequest) -> bool:
        """Whether the gateway must keep the client's ``parallel_tool_calls: false`` itself."""
        return not self._adapter.honours_parallel_tool_calls and asks_one_tool_call(chat)

    async def list_models(self) -> list[ListedModel]:
        call: UpstreamCall | None = self._adapter.models_call()
        models: list[ListedModel] = []
        for _ in range(MAX_MODEL_PAGES):
            if call is None:
                break
            body = await self._small_call(call, MAX_MODELS_BYTES)
            models += self._adapter.parse_models(body)
            call = self._adapter.next_models_call(body)
        return models

    async def probe(self) -> None:
        # Every upstream lists its models without billing, with the same key as a chat call;
        # read as a listing, so a 200 from something else (a captive portal) is no answer.
        self._adapter.parse_models(
            await self._small_call(self._adapter.models_call(), MAX_MODELS_BYTES)
        )

    async def forget_response(self, response_id: str) -> None:
        passthrough = self._adapter.passthrough_for(ResponsesRequest.PROTOCOL)
        if not isinstance(passthrough, ResponsesPassthrough):
            return  # it stores no responses
        try:
            await self._small_call(passthrough.delete_call(response_id), MAX_ERROR_BYTES)
        except ModelNotFound:
            return  # a 404: already gone there

    async def count_message_tokens(self, request: MessagesRequest, model: str) -> bytes:
        passthrough = self._adapter.passthrough_for(MessagesRequest.PROTOCOL)
        if not isinstance(passthrough, MessagesPassthrough):
            raise TypeError(f"{self._name} does not speak the Messages protocol")
        return await self._small_call(
            passthrough.count_tokens_call(request, model), MAX_MODELS_BYTES
        )

    async def _small_call(self, call: UpstreamCall, limit: int) -> bytes:
        """The body of a small call's success; its error as a gateway error."""
        with _TransportErrors(self._name):
            response = await self._send(call)
            try:
                cap = limit if response.is_success else MAX_ERROR_BYTES
                body = await _read_capped(response, cap, self._name)
            finally:
                close_response(response)
        if not response.is_success:
            raise self._adapter.map_error(response.status_code, response.headers, body)
        return body


class _TransportErrors:
    """httpx failures become gateway errors: timeouts 504, anything else on the wire 502.

    A class rather than a ``@contextmanager`` generator: it wraps every upstream call.
    """

    __slots__ = ("provider",)

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if not isinstance(exc, httpx.HTTPError):
            return
        provider = self.provider
        error: GatewayError
        if isinstance(exc, httpx.TimeoutException):
            phase = type(exc).__name__.removesuffix("Timeout").lower() or "call"
            error = UpstreamTimeout(f"Upstream {provider} timed out ({phase}).")
            raise error.upstream_unreached(
                f"{phase} timeout" if phase != "call" else "timeout"
            ) from None
        if isinstance(exc, httpx.RemoteProtocolError):
            error = UpstreamError(
                f"Upstream {provider} broke the connection: {exc}", code="upstream_stream_cut"
            )
            raise error.upstream_unreached("connection cut") from None
        error = UpstreamError(
            f"Upstream {provider} could not be reached: {type(exc).__name__}: {exc}",
            code="upstream_connection_error",
        )
        raise error.upstream_unreached(unreached_because(exc)) from None


async def _read_capped(response: httpx.Response, limit: int, provider: str) -> bytes:
    """The whole body; more than ``limit`` bytes is an upstream error, not an answer."""
    parts: list[bytes] = []
    size = 0
    async for data in raw_stream(response):
        size += len(data)
        if size > limit:
            # Drop the bytes now: the error's traceback keeps this frame alive until a GC cycle.
            parts.clear()
            raise UpstreamError(f"Upstream {provider} answered more than {limit} bytes.")
        parts.append(data)
    return b"".join(parts)
