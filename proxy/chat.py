"""Chat types: a client's chat request as the gateway sees it, and the answers translators make.

A request is parsed once and kept as the client's raw dict, beside :class:`ChatView`, the few
fields the gateway acts on (checked, with field-level errors); everything else is the
upstream's to judge. Translators ask for the strict internal form (:mod:`proxy.chat_form`).
Responses and stream chunks here are what translating adapters produce, encoded in exactly
OpenAI's shape; a call passed through never goes through them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from proxy.chat_form import ChatBody, FunctionCall, PositiveInt, param_of, to_form
from proxy.client_request import ClientRequest
from proxy.errors import InternalError, InvalidRequest
from proxy.request_body import decode_object


class ChatView(Struct, frozen=True):
    """What the gateway itself acts on in every chat body: routing, the stream flag, and what a
    call may cost (messages for the prompt's estimate and its images, the answer's bound).

    Everything else is the upstream's to judge; unknown fields are ignored here.
    """

    model: str
    messages: Annotated[list[dict[str, Any]], Meta(min_length=1)]
    stream: bool | None = None  # null, as the SDK sends for stream=None, means false
    stream_options: dict[str, Any] | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    n: PositiveInt | None = None


class ChatRequest:
    """A chat request as the client sent it (``raw``), with the gateway's view of it.

    The internal chat form (:meth:`form`) is built only when a translating adapter needs it, so
    its stricter checks never refuse a call that goes to an upstream of the same protocol.
    """

    __slots__ = ("_form", "has_images", "raw", "view")

    #: The client protocol of the request: an adapter speaking it natively passes it through.
    PROTOCOL: ClassVar[str] = "openai-chat"

    def __init__(self, raw: dict[str, Any], view: ChatView) -> None:
        self.raw = raw
        self.view = view
        self.has_images = _has_images(view)
        self._form: ChatBody | None = None

    @property
    def model(self) -> str:
        """The model name the client asked for."""
        return self.view.model

    @property
    def stream(self) -> bool:
        """Whether the client wants SSE."""
        return self.view.stream is True

    @property
    def include_usage(self) -> bool:
        """Whether the client asked for the final usage chunk of a stream."""
        options = self.view.stream_options
        return bool(options and options.get("include_usage") is True)

    @property
    def max_answer_tokens(self) -> int | None:
        """The client's bound on the answer: ``max_completion_tokens``, else ``max_tokens``."""
        return self.view.max_completion_tokens or self.view.max_tokens

    def form(self) -> ChatBody:
        """The internal chat form; an InvalidRequest naming the field it cannot represent."""
        if self._form is None:
            self._form = to_form(self.raw)
        return self._form

    def with_raw(self, raw: dict[str, Any]) -> ChatRequest:
        """The same request with a rewritten body (its images inlined, say)."""
        return ChatRequest(raw, self.view)


def chat_request(request: ClientRequest) -> ChatRequest:
    """``request`` as a chat request, for an upstream that does not speak its protocol.

    Each client surface hands such an upstream the chat form of its request (translated before
    the call), so anything else reaching a translator is a bug of ours, not bad input."""
    if not isinstance(request, ChatRequest):
        raise InternalError(f"A {request.PROTOCOL} request reached a chat translator untranslated.")
    return request


def decode_chat_request(body: bytes) -> ChatRequest:
    """Parse a chat body and check what the gateway acts on; a failure names the field."""
    return chat_request_of(decode_object(body))


def chat_request_of(raw: dict[str, Any]) -> ChatRequest:
    """A decoded chat body checked as :func:`decode_chat_request` checks it (a translated
    request from another protocol is checked like the client's own)."""
    if "model" not in raw:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    if "messages" not in raw:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    try:
        view = msgspec.convert(raw, ChatView)
    except msgspec.ValidationError as exc:
        message, param = param_of(exc)
        raise InvalidRequest(f"Invalid request: {message}", param=param) from None
    if not view.model:
        raise InvalidRequest("'model' must not be empty.", param="model")
    return ChatRequest(raw, view)


def content_parts(view: ChatView) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Every content part of the messages that is an object: (message index, part index, part)."""
    for i, message in enumerate(view.messages):
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict):
                    yield i, j, part


def _has_images(view: ChatView) -> bool:
    return any(part.get("type") == "image_url" for _, _, part in content_parts(view))


# ---------------------------------------------------------------------------------------------
# Response and stream chunks (normalized: every adapter produces these)


# An upstream claiming more than this for one call is broken; bounding it keeps the sums in the
# database within 64-bit integers.
TokenCount = Annotated[int, Meta(ge=0, le=10**12)]


class PromptTokensDetails(Struct):
    """Breakdown of prompt tokens; ``cached_tokens`` is a subset of ``prompt_tokens``."""

    cached_tokens: TokenCount = 0
    audio_tokens: TokenCount = 0


class CompletionTokensDetails(Struct):
    """Breakdown of completion tokens; ``reasoning_tokens`` is a subset of ``completion_tokens``."""

    reasoning_tokens: TokenCount = 0
    audio_tokens: TokenCount = 0
    accepted_prediction_tokens: TokenCount = 0
    rejected_prediction_tokens: TokenCount = 0


class Usage(Struct):
    """Token usage in OpenAI's meaning (completion includes reasoning, prompt includes cached).

    A translated answer carries every count, zeros included, as OpenAI's does: clients divide by
    them. Read from an upstream, a detail it sends as ``null`` stays None.
    """

    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    total_tokens: TokenCount
    prompt_tokens_details: PromptTokensDetails | None = field(default_factory=PromptTokensDetails)
    completion_tokens_details: CompletionTokensDetails | None = field(
        default_factory=CompletionTokensDetails
    )
    # DeepSeek's own cache counters, read where it sends them (never in a translated answer).
    prompt_cache_hit_tokens: TokenCount | UnsetType = UNSET
    prompt_cache_miss_tokens: TokenCount | UnsetType = UNSET
    # Anthropic's cache counters, in a translated Claude answer (LiteLLM's names): reads are
    # ``cached_tokens`` too; writes, billed above the input rate, are only here.
    cache_creation_input_tokens: TokenCount | UnsetType = UNSET
    cache_read_input_tokens: TokenCount | UnsetType = UNSET

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens served from the provider's cache."""
        details = self.prompt_tokens_details
        return details.cached_tokens if details else 0

    @property
    def cache_write_tokens(self) -> int:
        """Prompt tokens written to the provider's cache (billed at its cache-write rate)."""
        written = self.cache_creation_input_tokens
        return written if isinstance(written, int) else 0

    @property
    def reasoning_tokens(self) -> int:
        """Completion tokens spent on reasoning."""
        details = self.completion_tokens_details
        return details.reasoning_tokens if details else 0


class FunctionCallDelta(Struct, omit_defaults=True):
    """A fragment of a function call in a stream."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(Struct, omit_defaults=True):
    """A fragment of a tool call in a stream, keyed by ``index``."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None
    # Provider state the client must send back unchanged on its next turn, in the shape of
    # Gemini's own OpenAI-compatible endpoint: {"google": {"thought_signature": "..."}}.
    extra_content: dict[str, Any] | UnsetType = UNSET


class Delta(Struct, omit_defaults=True):
    """What one chunk adds to a choice."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(Struct):
    """One choice of a stream chunk."""

    index: int = 0
    delta: Delta = field(default_factory=Delta)
    logprobs: Any = None
    finish_reason: str | None = None


class ChatChunk(Struct, kw_only=True):
    """One ``chat.completion.chunk``: the unit of a stream."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice] = field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


class ResponseToolCall(Struct):
    """A complete tool call in a non-streaming response."""

    id: str
    function: FunctionCall
    type: Literal["function"] = "function"
    # UNSET (left out of the JSON) unless the provider has state the client must send back.
    extra_content: dict[str, Any] | UnsetType = UNSET


class ResponseMessage(Struct, kw_only=True):
    """The assistant message of a non-streaming choice, in OpenAI's shape: ``refusal`` and
    ``annotations`` always there, extras (reasoning, tool calls) only when the model made them."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    annotations: list[Any] = field(default_factory=list)
    reasoning_content: str | UnsetType = UNSET
    tool_calls: list[ResponseToolCall] | UnsetType = UNSET


class Choice(Struct, kw_only=True):
    """One choice of a non-streaming response."""

    index: int = 0
    message: ResponseMessage
    logprobs: Any = None
    finish_reason: str | None = None


class ChatResponse(Struct, kw_only=True):
    """A ``chat.completion``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice] = field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None


class ModelCard(Struct):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "system"


class ModelList(Struct):
    """The body of ``GET /v1/models``."""

    data: list[ModelCard]
    object: Literal["list"] = "list"
