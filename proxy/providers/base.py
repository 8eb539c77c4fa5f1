"""The adapter contract: what the generic ProviderActor needs from one upstream's protocol.

A call pairs a client protocol (the request's, e.g. OpenAI chat) with the upstream's protocol:

- **Same protocol: passthrough.** :meth:`WireAdapter.passthrough_for` gives a :class:`Passthrough`
  for that protocol: the client's body goes upstream as sent (only what the gateway must change is
  changed), and the answer comes back as the upstream's bytes, whole or event by event
  (:class:`PassedAnswer`, :class:`PassedEvent`), with the usage the gateway logs read beside them.
  Unknown fields, tool types and content parts pass both ways untouched.
- **Different protocols: translation** through the internal chat form
  (:meth:`proxy.chat.ChatRequest.form`): :meth:`WireAdapter.chat_call`, :meth:`parse_response`
  and :meth:`chunk_parser` build the upstream's request and read its answer into
  :class:`~proxy.chat.ChatResponse` / :class:`~proxy.chat.ChatChunk`, which the client's protocol
  encodes. What changes an answer's meaning is translated exactly or refused with a 400 naming it.

Adding a client protocol is one passthrough module (for the upstreams that speak it) plus its
translation to and from the internal form; adding an upstream is one adapter. Adapters are pure:
they build requests as bytes and parse bytes. The actor owns every socket, deadline and retry, so
one actor implementation serves every upstream.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from proxy.chat import ChatChunk, ChatRequest, ChatResponse, Usage
from proxy.data_url import DataURL, is_data_url, parse_data_url
from proxy.embeddings import EmbeddingsRequest
from proxy.errors import GatewayError, InvalidRequest, UpstreamError

T = TypeVar("T")
ItemT = TypeVar("ItemT")
RequestT = TypeVar("RequestT")

#: What msgspec raises for bytes that are not the JSON expected: bad syntax or shape (both
#: ValueErrors, like invalid UTF-8 in a string) and nesting deeper than its recursion limit.
UNREADABLE = (ValueError, RecursionError)


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamCall:
    """One HTTP request to an upstream, relative to the provider's base URL, without the key."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ListedModel:
    """One model of an upstream's listing, with its creation time (Unix seconds) if it gives one."""

    id: str
    created: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PassedAnswer:
    """A whole same-protocol answer: the upstream's bytes (with only the gateway's own edits)
    and the usage read from them, for the log and the token budget."""

    body: bytes
    usage: Usage | None


class PassedEvent(msgspec.Struct, frozen=True):
    """One same-protocol stream event: its data as the client gets it and what the gateway reads.

    ``data`` is None for an event the client is not owed (the usage chunk it did not ask for);
    its usage is still read. ``text`` is the answer text it adds, kept when bodies are stored.
    A struct, not a frozen dataclass: one is made per event, and a struct is made in C.
    """

    data: bytes | None
    usage: Usage | None = None
    text: str | None = None
    #: The SSE event name the upstream gave it (Responses events have one; chat events do not).
    event: str | None = None
    #: Whether it is the protocol's own end of the answer (a Responses ``response.completed``,
    #: ``.incomplete``, ``.failed`` or ``error``): after it the client needs no end of ours.
    terminal: bool = False


#: What a streaming call yields: translated chunks, or the upstream's own events passed through.
StreamItem = ChatChunk | PassedEvent
#: What a non-streaming call returns.
Answer = ChatResponse | PassedAnswer


def unix_time(value: object) -> int | None:
    """A plausible Unix time from a listing's field, else None (a listing never fails for it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if 0 < value < 2**33 else None


class ChunkParser(abc.ABC, Generic[ItemT]):
    """Turns an upstream's streamed bytes into items (chunks or passed events); one per call.

    One read may hold content and, after it, an error (an error event, a garbage line, a cut):
    the content still reaches the client, then the error. So :meth:`feed` and :meth:`finish`
    return the chunks parsed before an error and keep the error in :attr:`failure`, raised by
    the next call; an error with nothing before it is raised at once.
    """

    #: The error met after the chunks last returned, to raise once they are delivered.
    failure: GatewayError | None = None

    def feed(self, data: bytes) -> list[ItemT]:
        """Chunks completed by ``data``; a GatewayError for an error in the stream (see above)."""
        if self.failure is not None:
            raise self.failure
        chunks: list[ItemT] = []
        try:
            self._feed(data, chunks)
        except GatewayError as exc:
            self._hold(exc, chunks)
        return chunks

    def finish(self) -> list[ItemT]:
        """The upstream closed the body: the last chunks, or UpstreamError if it was cut short."""
        if self.failure is not None:
            raise self.failure
        chunks: list[ItemT] = []
        try:
            self._finish(chunks)
        except GatewayError as exc:
            self._hold(exc, chunks)
        return chunks

    def _hold(self, error: GatewayError, chunks: list[ItemT]) -> None:
        """Keep ``error`` for the next call when chunks came before it; else raise it now."""
        self._before_failure(chunks)
        if not chunks:
            raise error
        self.failure = error

    @abc.abstractmethod
    def _feed(self, data: bytes, chunks: list[ItemT]) -> None:
        """Append the chunks completed by ``data``; raise a GatewayError for an in-stream error."""

    @abc.abstractmethod
    def _finish(self, chunks: list[ItemT]) -> None:
        """Append the last chunks; raise UpstreamError if the stream was cut short."""

    def _before_failure(self, chunks: list[ItemT]) -> None:
        """Append what must reach the caller before an error (usage seen so far, say)."""
        return  # most protocols have nothing of the kind


class Passthrough(abc.ABC, Generic[RequestT]):
    """One client protocol spoken by an upstream as is, configured for one provider."""

    @abc.abstractmethod
    def call(self, request: RequestT, upstream_model: str) -> UpstreamCall:
        """The client's body as sent, with only what the gateway must change."""

    @abc.abstractmethod
    def answer(self, body: bytes) -> PassedAnswer:
        """A whole answer; UpstreamError when it is not the protocol."""

    @abc.abstractmethod
    def event_parser(self, request: RequestT) -> ChunkParser[PassedEvent]:
        """A parser for one streamed answer to ``request``."""


class WireAdapter(abc.ABC):
    """One upstream protocol, configured for one provider (its name and credentials)."""

    #: Whether remote image URLs must be fetched by the gateway and sent inline (as data URLs)
    #: because the upstream cannot fetch them itself. The actor does that before chat_call.
    needs_inline_images: ClassVar[bool] = False
    #: Whether the models this upstream lists route to it by their plain names (a local server's
    #: pulled models), so the actor keeps the list fresh instead of fetching it on demand.
    routes_listed_models: ClassVar[bool] = False
    #: Whether the upstream itself keeps ``parallel_tool_calls: false`` (one tool call per
    #: answer). When not, the gateway hands on only the first call of each answer.
    honours_parallel_tool_calls: ClassVar[bool] = True

    def __init__(self, provider: str, api_key: str | None) -> None:
        self.provider = provider
        self._api_key = api_key

    def credential_headers(self) -> Mapping[str, str]:
        """The headers that carry the provider's key; none without one.

        Never part of an :class:`UpstreamCall`: the actor's backend adds them to a request only
        when its origin is one the key is bound to (:mod:`proxy.origins`).
        """
        return {"authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def passthrough_for(self, protocol: str) -> Passthrough[Any] | None:
        """How this upstream passes requests of client ``protocol`` through; None: translate."""
        return None

    def embeddings_calls(
        self, request: EmbeddingsRequest, upstream_model: str
    ) -> list[UpstreamCall]:
        """The upstream requests embedding ``request``'s input, in order (its own API, when the
        upstream does not pass OpenAI's through; more than one where it takes fewer inputs per
        call); a 400 when the upstream serves no embeddings."""
        raise InvalidRequest(
            f"Provider {self.provider} serves no embeddings: route '{request.model}' to a "
            "provider that does (openai, gemini, ollama, mock).",
            param="model",
            code="model_not_supported",
        )

    def parse_embeddings(
        self, bodies: list[bytes], request: EmbeddingsRequest, upstream_model: str
    ) -> PassedAnswer:
        """The answers to :meth:`embeddings_calls` as one answer in OpenAI's shape (the
        encoding the client asked for) with its usage; only asked of an adapter that builds
        those calls. Blocking for a large batch: the backend runs it in a thread then."""
        raise TypeError(f"{type(self).__name__} builds no embeddings calls")

    @abc.abstractmethod
    def chat_call(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        """The upstream request for a translated chat call (streaming when ``request.stream``),
        built from ``request.form()`` (the internal chat form)."""

    @abc.abstractmethod
    def parse_response(self, body: bytes, upstream_model: str) -> ChatResponse:
        """A complete non-streaming answer; raises UpstreamError when it is not the protocol."""

    @abc.abstractmethod
    def chunk_parser(self, upstream_model: str) -> ChunkParser[ChatChunk]:
        """A parser for one streamed answer."""

    @abc.abstractmethod
    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """The gateway error for an upstream's non-2xx answer."""

    @abc.abstractmethod
    def models_call(self) -> UpstreamCall:
        """The request that lists the upstream's models."""

    @abc.abstractmethod
    def parse_models(self, body: bytes) -> list[ListedModel]:
        """The models in the answer to :meth:`models_call` (or to one of its next pages)."""

    def next_models_call(self, body: bytes) -> UpstreamCall | None:
        """The request for the model list's page after the one in ``body``; None: it was the
        last (most upstreams list everything at once)."""
        return None

    @property
    @abc.abstractmethod
    def fallback_models(self) -> tuple[str, ...]:
        """Models listed when the upstream cannot be asked."""


def inline_data(provider: str, url: str, param: str) -> DataURL:
    """The data URL of a part an upstream needs inline; an address or a broken URL is a 400."""
    if not is_data_url(url):
        # The actor inlines remote images first, so an address here is one it was not given.
        raise InvalidRequest(
            f"Provider {provider} takes only inline data: '{param}' must be a data URL.",
            param=param,
        )
    try:
        return parse_data_url(url)
    except ValueError as exc:
        raise InvalidRequest(f"'{param}' is not a usable data URL: {exc}.", param=param) from None


def malformed(provider: str, what: str, exc: Exception | str) -> UpstreamError:
    """The error for an upstream answer that is not its protocol."""
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return UpstreamError(f"Upstream {provider} answered a malformed {what}: {detail}")


def decode_as(decode: Callable[[bytes], T], provider: str, what: str, body: bytes) -> T:
    """Parse ``body`` with a typed msgspec decoder, mapping garbage to UpstreamError."""
    try:
        return decode(body)
    except UNREADABLE as exc:
        raise malformed(provider, what, exc) from None


def decode_json(provider: str, what: str, body: bytes) -> object:
    """Parse any JSON, mapping garbage to UpstreamError."""
    try:
        return msgspec.json.decode(body)
    except UNREADABLE as exc:
        raise malformed(provider, what, exc) from None


#: Fields that only tune or label a call upstream (caching hints, tiers, storage, end-user ids,
#: usage reporting): a translator whose upstream has no equivalent drops them, since the answer
#: means the same without them. README lists them.
TUNING_FIELDS = frozenset(
    {
        "metadata",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "service_tier",
        "store",
        "stream_options",
        "user",
    }
)


def refuse_untranslated(
    provider: str, raw: Mapping[str, object], translated: frozenset[str]
) -> None:
    """A 400 naming the first field of ``raw`` that would change the answer's meaning but that
    provider ``provider``'s translator neither translates nor may drop (see TUNING_FIELDS)."""
    for key, value in raw.items():
        if value is None or key in translated or key in TUNING_FIELDS:
            continue
        raise InvalidRequest(
            f"Provider {provider} has no equivalent of '{key}', and dropping it would change "
            "the answer; leave it out, or route this model to a provider that takes it.",
            param=key,
            code="unsupported_parameter",
        )
