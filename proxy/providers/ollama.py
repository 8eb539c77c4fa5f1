"""Ollama's native chat API (``POST /api/chat``, NDJSON streams), translated to and from OpenAI's.

The native API is used rather than Ollama's ``/v1`` layer because it takes per-request
``options``, ``think`` levels and schema ``format``, and reports the exact ``done_reason``, token
counts and "model not found" errors (reference §5.3). The price is a few deterministic
conversions, all here: NDJSON lines to OpenAI chunks, tool-call argument objects to JSON strings,
generated tool-call ids, and ``thinking`` to ``reasoning_content``.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec
from msgspec import Struct

from proxy.chat import (
    MAX_DEPTH,
    AudioPart,
    ChatBody,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    ContentPart,
    Delta,
    FilePart,
    FunctionCall,
    FunctionCallDelta,
    ImagePart,
    Message,
    RefusalPart,
    ResponseMessage,
    ResponseToolCall,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    json_depth,
)
from proxy.errors import GatewayError, InvalidRequest, UpstreamError
from proxy.providers.base import (
    UNREADABLE,
    ChunkParser,
    ListedModel,
    UpstreamCall,
    WireAdapter,
    decode_as,
    inline_data,
    malformed,
    unix_time,
)
from proxy.providers.upstream_errors import map_status

#: A streamed line longer than this is not a chat chunk; refusing it bounds our memory.
MAX_LINE_BYTES = 4 * 1024 * 1024

# OpenAI's reasoning_effort -> Ollama's think. Ollama has no "minimal": its lowest level that
# still thinks is the closest; "none" turns thinking off.
THINK_LEVELS: Mapping[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "max",
    "max": "max",
}

# done_reason -> finish_reason; "load"/"unload" answer requests that generated nothing.
_FINISH_REASONS: Mapping[str, str] = {"stop": "stop", "length": "length"}


# ---------------------------------------------------------------------------------------------
# Ollama's wire types


class OllamaFunctionCall(Struct):
    """A function call on an assistant turn we send: arguments are an object, not a string."""

    name: str
    arguments: dict[str, Any]


class OllamaToolCall(Struct):
    """A tool call on an assistant turn we send."""

    function: OllamaFunctionCall


class OllamaMessage(Struct, omit_defaults=True):
    """One message of an ``/api/chat`` request; ``content`` is always sent."""

    role: str
    content: str
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    thinking: str | None = None


class OllamaChatBody(Struct, omit_defaults=True):
    """An ``/api/chat`` request; ``stream`` has no default so it is always sent explicitly."""

    model: str
    messages: list[OllamaMessage]
    stream: bool
    options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    format: str | dict[str, Any] | None = None
    think: bool | str | None = None
    keep_alive: str | int | float | None = None


class _LineFunction(Struct):
    name: str
    # An object from Ollama itself; a string from proxies that speak OpenAI's habit.
    arguments: dict[str, Any] | str | None = None
    index: int | None = None


class _LineToolCall(Struct):
    function: _LineFunction


class _LineMessage(Struct):
    role: str = "assistant"
    content: str = ""
    thinking: str = ""
    tool_calls: list[_LineToolCall] | None = None


class OllamaLine(Struct):
    """One NDJSON line of a chat answer (or the whole non-streaming answer, or an error)."""

    model: str = ""
    message: _LineMessage | None = None
    done: bool = False
    done_reason: str = ""
    # Go's omitempty drops zero counts, e.g. prompt_eval_count when the prompt was cached.
    prompt_eval_count: int = 0
    eval_count: int = 0
    error: str | None = None


class _Tag(Struct):
    name: str
    modified_at: str | None = None  # RFC 3339 with nanoseconds: when it was pulled or built


class _Tags(Struct):
    models: list[_Tag] | None


_encode = msgspec.json.Encoder().encode
_decode_line = msgspec.json.Decoder(OllamaLine).decode
_decode_tags = msgspec.json.Decoder(_Tags).decode
_decode_any = msgspec.json.Decoder().decode


# ---------------------------------------------------------------------------------------------
# The adapter


class OllamaAdapter(WireAdapter):
    """Ollama's native ``/api/chat``; an api_key is sent as Bearer for proxies in front of it."""

    needs_inline_images: ClassVar[bool] = True
    routes_listed_models: ClassVar[bool] = True

    def __init__(self, provider: str, api_key: str | None) -> None:
        super().__init__(provider, api_key)
        headers = {"content-type": "application/json", "accept": "application/json"}
        self._headers = headers
        self._stream_headers = {**headers, "accept": "application/x-ndjson"}

    @property
    def fallback_models(self) -> tuple[str, ...]:
        """Nothing: a local server that does not answer has no models we could know of."""
        return ()

    def chat_call(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        """``POST /api/chat`` with the request translated to Ollama's body."""
        body = _encode(build_body(request, upstream_model))
        headers = self._stream_headers if request.stream else self._headers
        return UpstreamCall("POST", "/api/chat", headers, body)

    def parse_response(self, body: bytes, upstream_model: str) -> ChatResponse:
        """A ``stream: false`` answer: one object shaped like the final line of a stream."""
        line = _decode(self.provider, "response", body)
        if line.error is not None:
            raise UpstreamError(f"Upstream {self.provider} failed: {line.error}")
        if line.message is None:
            raise malformed(self.provider, "response", "it has no message")
        return response_of(line, upstream_model)

    def chunk_parser(self, upstream_model: str) -> ChunkParser:
        """A parser for one NDJSON stream."""
        return OllamaChunkParser(self.provider, upstream_model)

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """``{"error": "<string>"}`` mapped by status; 404 means an unknown (unpulled) model."""
        message, structured = error_message(body)
        if status == 404 and not structured:
            # Ollama names the model in a JSON 404. A plain-text 404 ("404 page not found") comes
            # from its router: the path is wrong, usually a base_url ending in /v1.
            return UpstreamError(
                f"Upstream {self.provider} has no chat endpoint at its base_url (404: "
                f"{message or 'not found'}); the base_url must not end in /v1.",
                code="upstream_endpoint_not_found",
            )
        return map_status(self.provider, status, message or f"HTTP {status}", headers=headers)

    def models_call(self) -> UpstreamCall:
        """``GET /api/tags``: the models pulled on the server."""
        return UpstreamCall("GET", "/api/tags", self._headers)

    def parse_models(self, body: bytes) -> list[ListedModel]:
        """Names as Ollama lists them, tag included (``llama3.2:latest``), with the time each
        was last modified as their creation time (what Ollama's own /v1/models reports)."""
        tags = decode_as(_decode_tags, self.provider, "model list", body)
        return [ListedModel(tag.name, _unix_time(tag.modified_at)) for tag in tags.models or ()]


def _unix_time(stamp: str | None) -> int | None:
    """An RFC 3339 time as Unix seconds; None for a missing or unreadable one."""
    if not stamp:
        return None
    try:
        moment = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return unix_time(moment.timestamp())


def _decode(provider: str, what: str, data: bytes) -> OllamaLine:
    return decode_as(_decode_line, provider, what, data)


def error_message(body: bytes) -> tuple[str | None, bool]:
    """The message of an error body, and whether it was Ollama's JSON ``{"error": ...}``."""
    try:
        parsed = _decode_any(body)
    except UNREADABLE:
        text = body[:500].decode(errors="replace").strip()
        return text or None, False
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, str):
            return error, True
        # OpenAI's shape, from a proxy in front of Ollama.
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"]), True
    return body[:500].decode(errors="replace"), False


# ---------------------------------------------------------------------------------------------
# Request: OpenAI -> Ollama


def build_body(request: ChatRequest, model: str) -> OllamaChatBody:
    """Ollama's ``/api/chat`` body for ``request``; InvalidRequest for what it cannot express."""
    body = request.form()
    if body.n is not None and body.n > 1:
        raise InvalidRequest("'n' greater than 1 is not supported by ollama.", param="n")
    # Ollama has no tool_choice: "none" is honoured by not offering the tools; "auto",
    # "required" and a named function are accepted and left to the model, which is what
    # Ollama's own OpenAI layer does with them.
    tools = None if body.tool_choice == "none" else tools_of(body)
    # Ollama's own fields are accepted beside OpenAI's, so a client that knows it talks to
    # Ollama can set what OpenAI cannot say: options like num_ctx, and keep_alive. Fields with
    # no Ollama meaning (user, logprobs, parallel_tool_calls) are dropped.
    keep_alive = request.raw.get("keep_alive")
    if isinstance(keep_alive, bool) or not isinstance(keep_alive, str | int | float | None):
        raise InvalidRequest(
            "'keep_alive' must be a duration string or seconds.", param="keep_alive"
        )
    return OllamaChatBody(
        model=model,
        messages=messages_of(body.messages),
        # Ollama streams unless told otherwise, so the choice is always written out.
        stream=request.stream,
        options=options_of(body, request.raw.get("options")),
        tools=tools,
        format=format_of(body.response_format),
        think=think_of(body.reasoning_effort),
        keep_alive=keep_alive,
    )


def messages_of(messages: Sequence[Message]) -> list[OllamaMessage]:
    """The conversation; tool results get the name of the call they answer."""
    names: dict[str, str] = {}  # tool call id -> function name, from earlier assistant turns
    translated: list[OllamaMessage] = []
    for i, message in enumerate(messages):
        translated.append(message_of(i, message, names))
        for call in message.tool_calls or ():
            names[call.id] = call.function.name
    return translated


def message_of(i: int, message: Message, names: Mapping[str, str]) -> OllamaMessage:
    """One message; ``names`` maps the tool call ids seen so far to their function names."""
    text, images = content_of(i, message.content)
    match message.role:
        case "system" | "developer":
            return OllamaMessage("system", text, images=images)
        case "user":
            return OllamaMessage("user", text, images=images)
        case "assistant":
            calls = tool_calls_of(i, message.tool_calls) if message.tool_calls else None
            return OllamaMessage(
                "assistant",
                text,
                images=images,
                tool_calls=calls,
                thinking=message.reasoning_content or None,
            )
        case "tool":
            call_id = message.tool_call_id
            # An unknown id is left to Ollama, which accepts a tool turn without a name.
            name = names.get(call_id) if call_id else None
            return OllamaMessage("tool", text, tool_name=name, tool_call_id=call_id)
        case "function":
            # The deprecated function-result turn names its function itself.
            return OllamaMessage("tool", text, tool_name=message.name)


def content_of(i: int, content: str | list[ContentPart] | None) -> tuple[str, list[str] | None]:
    """Text and raw base64 images of a message's content."""
    if content is None:
        return "", None
    if isinstance(content, str):
        return content, None
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        match part:
            case TextPart(text=text):
                texts.append(text)
            case RefusalPart(refusal=refusal):
                texts.append(refusal)
            case ImagePart(image_url=image_url):
                param = f"messages[{i}].content[{j}].image_url"
                images.append(image_base64(image_url.url, param))
            case AudioPart() | FilePart():
                kind = "input_audio" if isinstance(part, AudioPart) else "file"
                raise InvalidRequest(
                    f"Content parts of type '{kind}' are not supported by ollama.",
                    param=f"messages[{i}].content[{j}]",
                )
    # Parts are separate blocks to the client; a newline keeps them from running together.
    return "\n".join(texts), images or None


def image_base64(url: str, param: str) -> str:
    """Raw base64 of a data URL (Ollama wants no ``data:`` prefix)."""
    return inline_data("ollama", url, param).base64_payload()


def tool_calls_of(i: int, calls: Sequence[ToolCall]) -> list[OllamaToolCall]:
    """An assistant turn's calls, with the JSON-string arguments parsed back into objects."""
    translated: list[OllamaToolCall] = []
    for j, call in enumerate(calls):
        param = f"messages[{i}].tool_calls[{j}].function.arguments"
        raw = call.function.arguments
        try:
            # Some clients send "" for a call without arguments.
            arguments = _decode_any(raw) if raw.strip() else {}
            if json_depth(arguments) > MAX_DEPTH:
                raise ValueError("nested too deeply")
        except UNREADABLE as exc:
            raise InvalidRequest(
                f"Tool call arguments are not valid JSON: {exc}", param=param
            ) from None
        if not isinstance(arguments, dict):
            raise InvalidRequest("Tool call arguments must be a JSON object.", param=param)
        translated.append(OllamaToolCall(OllamaFunctionCall(call.function.name, arguments)))
    return translated


def tools_of(body: ChatBody) -> list[dict[str, Any]] | None:
    """The tool list in OpenAI's shape, which Ollama shares (minus ``strict``)."""
    if not body.tools:
        return None
    tools: list[dict[str, Any]] = []
    for tool in body.tools:
        function: dict[str, Any] = {"name": tool.function.name}
        if tool.function.description is not None:
            function["description"] = tool.function.description
        if tool.function.parameters is not None:
            function["parameters"] = tool.function.parameters
        tools.append({"type": "function", "function": function})
    return tools


def options_of(body: ChatBody, extra: object) -> dict[str, Any] | None:
    """Sampling options; ``extra`` is a client's own Ollama ``options`` (e.g. ``num_ctx``)."""
    if extra is not None and not isinstance(extra, dict):
        raise InvalidRequest(
            "'options' must be an object of Ollama model options.", param="options"
        )
    options: dict[str, Any] = dict(extra or {})
    # The OpenAI fields are the documented surface, so they win over the same Ollama option.
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    if body.stop is not None:
        options["stop"] = [body.stop] if isinstance(body.stop, str) else list(body.stop)
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(body, name)
        if value is not None:
            options[name] = value
    return options or None


def format_of(response_format: dict[str, Any] | None) -> str | dict[str, Any] | None:
    """``response_format`` as Ollama's ``format``: "json" or the JSON Schema itself."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "'response_format.json_schema.schema' must be a JSON Schema object.",
                param="response_format.json_schema.schema",
            )
        return schema
    raise InvalidRequest(
        f"Unsupported response_format type {kind!r}; use text, json_object or json_schema.",
        param="response_format.type",
    )


def think_of(effort: str | None) -> bool | str | None:
    """``reasoning_effort`` as Ollama's ``think``; unset leaves the model's default."""
    if effort is None:
        return None
    try:
        return THINK_LEVELS[effort]
    except KeyError:
        allowed = ", ".join(THINK_LEVELS)
        raise InvalidRequest(
            f"Unsupported reasoning_effort {effort!r} for ollama; use one of {allowed}.",
            param="reasoning_effort",
        ) from None


# ---------------------------------------------------------------------------------------------
# Answers: Ollama -> OpenAI


def completion_id() -> str:
    """An id for one answer; Ollama gives none."""
    return "chatcmpl-" + secrets.token_hex(12)


def tool_call_id() -> str:
    """An id for one tool call (24 url-safe characters, like OpenAI's); Ollama gives none."""
    return "call_" + secrets.token_urlsafe(18)


def arguments_json(arguments: dict[str, Any] | str | None) -> str:
    """Arguments as OpenAI's compact JSON string."""
    if isinstance(arguments, str):
        return arguments
    return _encode(arguments if arguments is not None else {}).decode()


def finish_reason(done_reason: str, called_tools: bool) -> str:
    """OpenAI's finish_reason for Ollama's ``done_reason``."""
    reason = _FINISH_REASONS.get(done_reason, "stop")
    return "tool_calls" if reason == "stop" and called_tools else reason


def usage_of(line: OllamaLine) -> Usage:
    """Token counts of a final line (missing counts are 0)."""
    prompt, completion = line.prompt_eval_count, line.eval_count
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def response_of(line: OllamaLine, upstream_model: str) -> ChatResponse:
    """A ``chat.completion`` from a complete (non-streaming) answer."""
    message = line.message or _LineMessage()
    calls = [
        ResponseToolCall(
            id=tool_call_id(),
            function=FunctionCall(call.function.name, arguments_json(call.function.arguments)),
        )
        for call in message.tool_calls or ()
    ]
    return ChatResponse(
        id=completion_id(),
        created=int(time.time()),
        model=line.model or upstream_model,
        choices=[
            Choice(
                message=ResponseMessage(
                    role="assistant",
                    # Like OpenAI: no text beside tool calls is null, not "".
                    content=message.content or (None if calls else ""),
                    reasoning_content=message.thinking or None,
                    tool_calls=calls or None,
                ),
                finish_reason=finish_reason(line.done_reason, bool(calls)),
            )
        ],
        usage=usage_of(line),
    )


class OllamaChunkParser(ChunkParser):
    """NDJSON lines → OpenAI chunks: role first, deltas, a finish chunk, then a usage chunk."""

    def __init__(self, provider: str, upstream_model: str) -> None:
        self._provider = provider
        self._id = completion_id()
        self._created = int(time.time())
        self._model = upstream_model
        self._buffer = bytearray()
        self._started = False
        self._done = False
        self._tool_calls = 0  # OpenAI indexes tool calls across the whole answer

    def _feed(self, data: bytes, chunks: list[ChatChunk]) -> None:
        # The chunks of the lines completed by data.
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            self._line(bytes(buffer[start:end]), chunks)
            start = end + 1
        del buffer[:start]
        self._check_length(len(buffer))

    def _finish(self, chunks: list[ChatChunk]) -> None:
        # The body ended: complete only after a done: true line.
        if self._buffer:
            # A last line without its newline is still a line.
            self._line(bytes(self._buffer), chunks)
            self._buffer.clear()
        if not self._done:
            raise UpstreamError(
                f"Upstream {self._provider} ended the stream before it was complete.",
                code="upstream_stream_cut",
            )

    def _check_length(self, size: int) -> None:
        if size > MAX_LINE_BYTES:
            raise malformed(self._provider, "stream", f"a line is over {MAX_LINE_BYTES} bytes")

    def _line(self, raw: bytes, chunks: list[ChatChunk]) -> None:
        self._check_length(len(raw))
        if self._done or not raw.strip():
            return
        line = _decode(self._provider, "stream line", raw)
        if line.error is not None:
            raise UpstreamError(f"Upstream {self._provider} failed mid-stream: {line.error}")
        if not self._started:
            self._started = True
            self._model = line.model or self._model
            chunks.append(self._chunk(Delta(role="assistant", content="")))
        message = line.message
        if message is not None and (message.content or message.thinking or message.tool_calls):
            chunks.append(self._chunk(self._delta(message)))
        if line.done:
            self._done = True
            reason = finish_reason(line.done_reason, self._tool_calls > 0)
            chunks.append(self._chunk(Delta(), reason))
            # Always sent: the gateway logs it, and decides whether the client sees it.
            chunks.append(
                ChatChunk(
                    id=self._id, created=self._created, model=self._model, usage=usage_of(line)
                )
            )

    def _delta(self, message: _LineMessage) -> Delta:
        calls: list[ToolCallDelta] = []
        for call in message.tool_calls or ():
            # Ollama sends each call whole, so one delta carries all of it.
            function = FunctionCallDelta(
                call.function.name, arguments_json(call.function.arguments)
            )
            calls.append(ToolCallDelta(self._tool_calls, tool_call_id(), "function", function))
            self._tool_calls += 1
        return Delta(
            content=message.content or None,
            reasoning_content=message.thinking or None,
            tool_calls=calls or None,
        )

    def _chunk(self, delta: Delta, finish: str | None = None) -> ChatChunk:
        return ChatChunk(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
        )
