"""Chat types: the OpenAI wire format the gateway speaks to its clients, decoded with msgspec.

A request is decoded twice from one parse: into typed structs (validated, with field-level errors)
and kept as the raw dict, so fields the gateway does not model pass through untouched to
OpenAI-compatible upstreams. Responses and stream chunks are the normalized form every adapter
produces, encoded back to exactly OpenAI's shape.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from proxy.errors import InvalidRequest

# ---------------------------------------------------------------------------------------------
# Request


class ImageURL(Struct, frozen=True):
    """``image_url`` of an image part: a data URL or an http(s) address."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(Struct, frozen=True, tag_field="type", tag="text"):
    """A text content part."""

    text: str


class ImagePart(Struct, frozen=True, tag_field="type", tag="image_url"):
    """An image content part."""

    image_url: ImageURL


class InputAudio(Struct, frozen=True):
    """Base64 audio of an ``input_audio`` part."""

    data: str
    format: str


class AudioPart(Struct, frozen=True, tag_field="type", tag="input_audio"):
    """An audio content part."""

    input_audio: InputAudio


class FileRef(Struct, frozen=True):
    """Inline or uploaded file of a ``file`` part."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


class FilePart(Struct, frozen=True, tag_field="type", tag="file"):
    """A file content part."""

    file: FileRef


class RefusalPart(Struct, frozen=True, tag_field="type", tag="refusal"):
    """A refusal part, only on assistant turns."""

    refusal: str


ContentPart = TextPart | ImagePart | AudioPart | FilePart | RefusalPart


class FunctionCall(Struct, frozen=True):
    """A function call as the model made it: ``arguments`` is a JSON string."""

    name: str
    arguments: str


class ToolCall(Struct, frozen=True):
    """A tool call on an assistant turn; ``extra_content`` carries provider state to send back."""

    id: str
    function: FunctionCall
    type: Literal["function"] = "function"
    extra_content: dict[str, Any] | None = None


Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class Message(Struct, frozen=True):
    """One conversation turn; which fields matter depends on ``role``."""

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class StreamOptions(Struct, frozen=True):
    """``stream_options`` of a streaming request."""

    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class FunctionDef(Struct, frozen=True):
    """A tool's function declaration."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Struct, frozen=True):
    """A tool the model may call."""

    function: FunctionDef
    type: Literal["function"] = "function"


Unit = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
PositiveInt = Annotated[int, Meta(ge=1)]


class ChatBody(Struct, frozen=True):
    """The typed view of a ``POST /v1/chat/completions`` body (unknown fields are ignored here)."""

    model: str
    messages: Annotated[list[Message], Meta(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Unit | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    stop: str | Annotated[list[str], Meta(max_length=4)] | None = None
    n: Annotated[int, Meta(ge=1, le=128)] | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    reasoning_effort: str | None = None
    user: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat request: the typed body plus the raw dict for pass-through."""

    body: ChatBody
    raw: dict[str, Any]
    has_images: bool

    @property
    def model(self) -> str:
        """The model name the client asked for."""
        return self.body.model

    @property
    def stream(self) -> bool:
        """Whether the client wants SSE."""
        return self.body.stream

    @property
    def include_usage(self) -> bool:
        """Whether the client asked for the final usage chunk of a stream."""
        opts = self.body.stream_options
        return bool(opts and opts.include_usage)


_json_decode = msgspec.json.Decoder().decode
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _param_of(error: msgspec.ValidationError) -> tuple[str, str | None]:
    """Split msgspec's "... - at `$.messages[0].role`" into a message and an OpenAI param."""
    text = str(error)
    match = _PATH.search(text)
    if match is None:
        return text, None
    param = match.group("path").lstrip(".")
    return f"{text[: match.start()]} at '{param}'", param or None


def decode_chat_request(body: bytes) -> ChatRequest:
    """Parse and validate a chat body; each failure is an InvalidRequest naming the field."""
    try:
        raw = _json_decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise InvalidRequest("The request body is not valid UTF-8.") from None
    except RecursionError:
        raise _too_deep() from None
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    # Nesting needs a bracket per level: a body with few brackets (most) cannot be too deep.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and json_depth(raw) > MAX_DEPTH:
        # Deeper JSON is no chat request, and would exhaust the stack of whoever walks it next.
        raise _too_deep()
    if "model" not in raw:
        raise InvalidRequest("Missing required parameter: 'model'.", param="model")
    if "messages" not in raw:
        raise InvalidRequest("Missing required parameter: 'messages'.", param="messages")
    try:
        typed = msgspec.convert(raw, ChatBody)
    except msgspec.ValidationError as exc:
        message, param = _param_of(exc)
        raise InvalidRequest(f"Invalid request: {message}", param=param) from None
    if not typed.model:
        raise InvalidRequest("'model' must not be empty.", param="model")
    if typed.stream_options is not None and not typed.stream:
        raise InvalidRequest(
            "'stream_options' is only allowed when 'stream' is true.", param="stream_options"
        )
    return ChatRequest(typed, raw, _has_images(typed))


MAX_DEPTH = 64


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"The request body is nested deeper than {MAX_DEPTH} levels.")


def json_depth(value: object) -> int:
    """How deeply ``value`` nests lists and objects, counted without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _has_images(body: ChatBody) -> bool:
    for message in body.messages:
        if isinstance(message.content, list):
            for part in message.content:
                if isinstance(part, ImagePart):
                    return True
    return False


# ---------------------------------------------------------------------------------------------
# Response and stream chunks (normalized: every adapter produces these)


# An upstream claiming more than this for one call is broken; bounding it keeps the sums in the
# database within 64-bit integers.
TokenCount = Annotated[int, Meta(ge=0, le=10**12)]


class PromptTokensDetails(Struct, omit_defaults=True):
    """Breakdown of prompt tokens; ``cached_tokens`` is a subset of ``prompt_tokens``."""

    cached_tokens: TokenCount = 0


class CompletionTokensDetails(Struct, omit_defaults=True):
    """Breakdown of completion tokens; ``reasoning_tokens`` is a subset of ``completion_tokens``."""

    reasoning_tokens: TokenCount = 0


class Usage(Struct, omit_defaults=True):
    """Token usage in OpenAI's meaning (completion includes reasoning, prompt includes cached)."""

    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    total_tokens: TokenCount
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    # DeepSeek's own cache counters: read by its adapter, then cleared (never sent to clients).
    prompt_cache_hit_tokens: TokenCount | None = None
    prompt_cache_miss_tokens: TokenCount | None = None

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens served from the provider's cache."""
        details = self.prompt_tokens_details
        return details.cached_tokens if details else 0

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


class ResponseMessage(Struct, omit_defaults=True):
    """The assistant message of a non-streaming choice; absent extras are left out like OpenAI."""

    role: Literal["assistant"]
    content: str | None
    reasoning_content: str | None = None
    refusal: str | None = None
    tool_calls: list[ResponseToolCall] | None = None


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
