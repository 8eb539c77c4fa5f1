"""Google Gemini's native REST API (``generateContent``), translated to and from OpenAI's shape.

Requests are rebuilt field by field (reference §2.7): Gemini has its own roles, parts and config
names, so nothing passes through untranslated. Answers are decoded into typed structs and turned
into our normalized ``ChatResponse``/``ChatChunk``. Gemini's thought signatures must come back on
the next turn; they travel to the client as ``extra_content.google.thought_signature`` (the shape
of Google's own OpenAI-compatible endpoint) and are also remembered here for clients that drop
unknown fields.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.chat import (
    MAX_DEPTH,
    AudioPart,
    ChatBody,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    CompletionTokensDetails,
    ContentPart,
    Delta,
    FilePart,
    FunctionCall,
    FunctionCallDelta,
    ImagePart,
    Message,
    PromptTokensDetails,
    RefusalPart,
    ResponseMessage,
    ResponseToolCall,
    TextPart,
    Tool,
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
)
from proxy.providers.upstream_errors import map_status, retry_headers
from proxy.sse import Event, SSEDecoder, SSEError

log = logging.getLogger("llm_proxy.gemini")

GEMINI_MODELS = (
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-3-flash-preview",
    "gemini-3.1-pro-preview",
)
SIGNATURE_MEMORY = 10_000
# Google's documented stand-in for a function call whose signature is unknown (a history written
# by another model, or by a client that dropped it): without one, Gemini 3 rejects the turn.
SKIP_SIGNATURE = "skip_thought_signature_validator"

_encode = msgspec.json.Encoder().encode

# ---------------------------------------------------------------------------------------------
# Gemini's answers, as typed structs (unknown fields are ignored; absent ones are zero values)


class _FunctionCall(msgspec.Struct):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    function_call: _FunctionCall | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] = []
    role: str | None = None


class _Candidate(msgspec.Struct, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    finish_message: str | None = None
    index: int = 0


class _UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0
    cached_content_token_count: int = 0
    total_token_count: int = 0


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class _RpcStatus(msgspec.Struct):
    """A Google RPC status: the ``error`` of an error body or of an in-stream error event."""

    code: int = 500
    message: str = ""
    status: str = ""
    details: list[dict[str, Any]] = []


class _GenerateResponse(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate] = []
    prompt_feedback: _PromptFeedback | None = None
    usage_metadata: _UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    error: _RpcStatus | None = None


class _ModelInfo(msgspec.Struct, rename="camel"):
    name: str
    supported_generation_methods: list[str] = []


class _ModelPage(msgspec.Struct, rename="camel"):
    models: list[_ModelInfo] = []


_decode_reply = msgspec.json.Decoder(_GenerateResponse).decode
_decode_models = msgspec.json.Decoder(_ModelPage).decode

# ---------------------------------------------------------------------------------------------
# Tables


_CONTENT_FILTER = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "LANGUAGE",
    }
)
_BAD_TOOL_CALL = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}
)
_TOOL_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
_AUDIO_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "aiff": "audio/aiff",
}
# Gemini 2.5 thinking budgets per OpenAI effort; "high" stays within every 2.5 model's maximum.
_THINKING_BUDGETS = {
    "none": 0,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 24576,
    "max": 24576,
}
_PRO_MIN_BUDGET = 128  # 2.5 Pro cannot switch thinking off; this is its smallest budget
_THINKING_LEVELS = {
    "none": "MINIMAL",  # Gemini 3 always thinks; MINIMAL is the closest to "none"
    "minimal": "MINIMAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "xhigh": "HIGH",
    "max": "HIGH",
}


def _is_gemini3(model: str) -> bool:
    return model.removeprefix("models/").startswith("gemini-3")


def _is_pro(model: str) -> bool:
    return "-pro" in model


def new_call_id() -> str:
    """A tool-call id for a call Gemini did not name: ``call_`` + 24 url-safe characters."""
    return "call_" + secrets.token_urlsafe(18)


# ---------------------------------------------------------------------------------------------
# Remembered tool calls


class CallMemory:
    """Thought signatures and Gemini-issued ids of recent tool calls, bounded, least recent out.

    The signature also travels to the client in ``extra_content``; this is the fallback for
    clients that drop fields they do not know.
    """

    def __init__(self, capacity: int = SIGNATURE_MEMORY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[str | None, bool]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, call_id: str, signature: str | None, *, native_id: bool) -> None:
        """Keep what the next turn must send back for ``call_id``."""
        if signature is None and not native_id:
            return
        self._entries[call_id] = (signature, native_id)
        self._entries.move_to_end(call_id)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def recall(self, call_id: str) -> tuple[str | None, bool]:
        """``(signature, whether Gemini issued the id)``; ``(None, False)`` when unknown."""
        entry = self._entries.get(call_id)
        if entry is None:
            return None, False
        self._entries.move_to_end(call_id)
        return entry


# ---------------------------------------------------------------------------------------------
# The adapter


class GeminiAdapter(WireAdapter):
    """Gemini's ``generateContent``/``streamGenerateContent`` with the key in ``x-goog-api-key``."""

    needs_inline_images = True

    def __init__(self, provider: str, api_key: str | None) -> None:
        super().__init__(provider, api_key)
        headers = {"content-type": "application/json", "accept": "application/json"}
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}
        self.calls = CallMemory()

    def credential_headers(self) -> Mapping[str, str]:
        """The key in ``x-goog-api-key``, never in the URL (``?key=``) where logs would keep it."""
        return {"x-goog-api-key": self._api_key} if self._api_key else {}

    @property
    def fallback_models(self) -> tuple[str, ...]:
        """Models listed when the upstream cannot be asked."""
        return GEMINI_MODELS

    def chat_call(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        """``:generateContent``, or ``:streamGenerateContent?alt=sse`` when streaming."""
        model = urllib.parse.quote(upstream_model.removeprefix("models/"), safe="")
        body = _encode(build_body(request.form(), upstream_model, self.calls))
        if request.stream:
            path = f"/models/{model}:streamGenerateContent?alt=sse"
            return UpstreamCall("POST", path, self._stream_headers, body)
        return UpstreamCall("POST", f"/models/{model}:generateContent", self._headers, body)

    def parse_response(self, body: bytes, upstream_model: str) -> ChatResponse:
        """A ``GenerateContentResponse``: one choice per candidate."""
        reply = self.decode(body, "response")
        if reply.error is not None:
            raise self.rpc_error(reply.error.code, reply.error, {})
        if not reply.candidates and not _block_reason(reply):
            raise malformed(self.provider, "response", "no candidates and no promptFeedback")
        choices = [self._choice(candidate) for candidate in reply.candidates]
        if not choices:
            # The prompt itself was blocked: an empty answer, filtered.
            message = ResponseMessage(role="assistant", content="")
            choices = [Choice(index=0, message=message, finish_reason="content_filter")]
        return ChatResponse(
            id=_response_id(reply),
            created=int(time.time()),
            model=reply.model_version or upstream_model,
            choices=choices,
            usage=_usage(reply.usage_metadata),
        )

    def chunk_parser(self, upstream_model: str) -> ChunkParser:
        """A parser for one SSE stream of ``GenerateContentResponse`` events."""
        return GeminiChunkParser(self, upstream_model)

    def map_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """A Google RPC error body (or anything else) mapped per reference §2.5."""
        rpc = _rpc_status(body)
        if rpc is None:
            text = body[:500].decode(errors="replace").strip() or f"HTTP {status}"
            return map_status(self.provider, status, text, headers=headers)
        return self.rpc_error(status, rpc, headers)

    def models_call(self) -> UpstreamCall:
        """``GET /models`` with the largest page, so one request lists everything."""
        return UpstreamCall("GET", "/models?pageSize=1000", self._headers)

    def parse_models(self, body: bytes) -> list[ListedModel]:
        """Chat-capable models (``generateContent``), without the ``models/`` prefix; Google
        gives no creation time."""
        page = decode_as(_decode_models, self.provider, "model list", body)
        return [
            ListedModel(model.name.removeprefix("models/"))
            for model in page.models
            if "generateContent" in model.supported_generation_methods
        ]

    # -- helpers shared with the chunk parser ----------------------------------------------------

    def decode(self, body: bytes, what: str) -> _GenerateResponse:
        """One ``GenerateContentResponse`` (or error payload); garbage is an UpstreamError."""
        return decode_as(_decode_reply, self.provider, what, body)

    def rpc_error(self, status: int, rpc: _RpcStatus, headers: Mapping[str, str]) -> GatewayError:
        """The gateway error for a Google RPC status answered with HTTP ``status``."""
        message = rpc.message or rpc.status or f"HTTP {status}"
        if status == 400 and _is_bad_key(rpc):
            # Gemini answers a bad key with 400; it is the gateway's key, never the client's.
            return map_status(self.provider, 401, message, headers=headers)
        if status == 429:
            headers = {**retry_headers(headers), **_retry_after(rpc)}
        # Google's status name ("FAILED_PRECONDITION") tells a client more than the bare 400.
        code = rpc.status.lower() if status == 400 and rpc.status else None
        return map_status(self.provider, status, message, headers=headers, code=code)

    def tool_call(self, part: _Part, call: _FunctionCall) -> ResponseToolCall:
        """Our tool call for a ``functionCall`` part, its signature remembered for the next turn."""
        call_id = call.id or new_call_id()
        signature = part.thought_signature
        self.calls.remember(call_id, signature, native_id=call.id is not None)
        return ResponseToolCall(
            id=call_id,
            function=FunctionCall(call.name, _encode(call.args or {}).decode()),
            extra_content=_extra_content(signature) or msgspec.UNSET,
        )

    def _choice(self, candidate: _Candidate) -> Choice:
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[ResponseToolCall] = []
        for part in candidate.content.parts if candidate.content else ():
            if part.function_call is not None:
                calls.append(self.tool_call(part, part.function_call))
            elif part.text is not None:
                (thoughts if part.thought else texts).append(part.text)
        message = ResponseMessage(
            role="assistant",
            # An answer of only tool calls has no content (null), as OpenAI sends it.
            content="".join(texts) if texts or not calls else None,
            reasoning_content="".join(thoughts) if thoughts else None,
            tool_calls=calls or None,
        )
        finish = _finish_reason(candidate, called=bool(calls)) or "stop"
        return Choice(index=candidate.index, message=message, finish_reason=finish)


# ---------------------------------------------------------------------------------------------
# Building the request body


def build_body(body: ChatBody, model: str, calls: CallMemory) -> dict[str, Any]:
    """The ``GenerateContentRequest`` for an OpenAI chat body (reference §2.7)."""
    system, contents = _contents(body.messages, model, calls)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if body.tools:
        out["tools"] = [{"functionDeclarations": [_declaration(tool) for tool in body.tools]}]
    if body.tool_choice is not None:
        out["toolConfig"] = {"functionCallingConfig": _calling_config(body.tool_choice)}
    config = _generation_config(body, model)
    if config:
        out["generationConfig"] = config
    return out


def _contents(
    messages: list[Message], model: str, calls: CallMemory
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System parts, and the turns with same-role neighbours merged (Gemini alternates roles)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool-call id -> function name, from earlier assistant turns

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        match message.role:
            case "system" | "developer":
                system.extend(_text_parts(message.content, where, message.role))
            case "user":
                add("user", _user_parts(message.content, where))
            case "assistant":
                add("model", _model_parts(message, where, model, calls, names))
            case "tool":
                add("user", [_tool_result(message, where, calls, names)])
            case "function":
                add("user", [_function_result(message, where)])
    return system, contents


def _text_parts(
    content: str | list[ContentPart] | None, where: str, role: str
) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, RefusalPart) and role == "assistant":
            parts.append({"text": part.refusal})
        else:
            raise InvalidRequest(
                f"A {role} message may only contain text parts.", param=f"{where}.content[{j}]"
            )
    return parts


def _user_parts(content: str | list[ContentPart] | None, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_parts(content, where, "user")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        param = f"{where}.content[{j}]"
        if isinstance(part, TextPart):
            if part.text:
                parts.append({"text": part.text})
        elif isinstance(part, ImagePart):
            parts.append({"inlineData": _data_url(part.image_url.url, f"{param}.image_url")})
        elif isinstance(part, AudioPart):
            parts.append({"inlineData": _audio(part, param)})
        elif isinstance(part, FilePart):
            parts.append({"inlineData": _file(part, param)})
        else:
            raise InvalidRequest("A user message cannot contain a refusal part.", param=param)
    return parts


def _data_url(url: str, param: str) -> dict[str, str]:
    """``inlineData`` from a data URL; Gemini cannot fetch addresses itself."""
    data = inline_data("gemini", url, param)
    return {"mimeType": data.media_type or "text/plain", "data": data.base64_payload()}


def _audio(part: AudioPart, param: str) -> dict[str, str]:
    mime_type = _AUDIO_TYPES.get(part.input_audio.format)
    if mime_type is None:
        raise InvalidRequest(
            f"Unsupported audio format {part.input_audio.format!r}; "
            f"use one of {', '.join(_AUDIO_TYPES)}.",
            param=f"{param}.input_audio.format",
        )
    return {"mimeType": mime_type, "data": part.input_audio.data}


def _file(part: FilePart, param: str) -> dict[str, str]:
    if part.file.file_data is None:
        raise InvalidRequest(
            "Gemini takes files inline: send 'file_data' as a data URL, not a file id.",
            param=f"{param}.file",
        )
    return _data_url(part.file.file_data, f"{param}.file.file_data")


def _model_parts(
    message: Message, where: str, model: str, calls: CallMemory, names: dict[str, str]
) -> list[dict[str, Any]]:
    parts = _text_parts(message.content, where, "assistant")
    for j, call in enumerate(message.tool_calls or ()):
        names[call.id] = call.function.name
        signature, native_id = _recall(call, calls)
        if signature is None and j == 0 and _is_gemini3(model):
            # Gemini 3 validates the signature of a turn's first function call.
            signature = SKIP_SIGNATURE
        function: dict[str, Any] = {
            "name": call.function.name,
            "args": _arguments(call, f"{where}.tool_calls[{j}].function.arguments"),
        }
        if native_id:
            function["id"] = call.id
        part: dict[str, Any] = {"functionCall": function}
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _recall(call: ToolCall, calls: CallMemory) -> tuple[str | None, bool]:
    """The call's signature (from the client's ``extra_content``, else memory) and id origin."""
    remembered, native_id = calls.recall(call.id)
    google = (call.extra_content or {}).get("google")
    sent = google.get("thought_signature") if isinstance(google, dict) else None
    return (sent if isinstance(sent, str) else remembered), native_id


def _arguments(call: ToolCall, param: str) -> dict[str, Any]:
    text = call.function.arguments
    if not text.strip():
        return {}
    try:
        args = msgspec.json.decode(text)
    except UNREADABLE:
        raise InvalidRequest(f"'{param}' is not valid JSON.", param=param) from None
    if json_depth(args) > MAX_DEPTH:
        raise InvalidRequest(f"'{param}' is nested too deeply.", param=param)
    if not isinstance(args, dict):
        raise InvalidRequest(f"'{param}' must be a JSON object.", param=param)
    return args


def _tool_result(
    message: Message, where: str, calls: CallMemory, names: dict[str, str]
) -> dict[str, Any]:
    call_id = message.tool_call_id
    if not call_id:
        raise InvalidRequest("A tool message needs 'tool_call_id'.", param=f"{where}.tool_call_id")
    name = names.get(call_id)
    if name is None:
        raise InvalidRequest(
            f"Tool message answers call {call_id!r}, which no earlier assistant message made.",
            param=f"{where}.tool_call_id",
        )
    result: dict[str, Any] = {"name": name, "response": _response_object(message, where)}
    if calls.recall(call_id)[1]:
        result["id"] = call_id
    return {"functionResponse": result}


def _function_result(message: Message, where: str) -> dict[str, Any]:
    """The legacy ``function`` role: the name is on the message itself."""
    if not message.name:
        raise InvalidRequest("A function message needs 'name'.", param=f"{where}.name")
    return {
        "functionResponse": {"name": message.name, "response": _response_object(message, where)}
    }


def _response_object(message: Message, where: str) -> dict[str, Any]:
    """``functionResponse.response`` must be an object: JSON objects as they are, else wrapped."""
    text = "".join(part["text"] for part in _text_parts(message.content, where, "tool"))
    try:
        value = msgspec.json.decode(text)
    except UNREADABLE:
        return {"result": text}
    if json_depth(value) > MAX_DEPTH:
        return {"result": text}  # too deep to re-encode as an object: pass the text on
    return value if isinstance(value, dict) else {"result": value}


def _declaration(tool: Tool) -> dict[str, Any]:
    function = tool.function
    out: dict[str, Any] = {"name": function.name}
    if function.description:
        out["description"] = function.description
    if function.parameters is not None:
        # Plain JSON Schema, as OpenAI clients write it: no conversion to Gemini's Schema subset.
        out["parametersJsonSchema"] = function.parameters
    return out


def _calling_config(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, str):
        return {"mode": _TOOL_MODES[choice]}
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if choice.get("type") != "function" or not isinstance(name, str) or not name:
        raise InvalidRequest(
            "'tool_choice' must be none, auto, required or "
            '{"type": "function", "function": {"name": ...}}.',
            param="tool_choice",
        )
    return {"mode": "ANY", "allowedFunctionNames": [name]}


def _generation_config(body: ChatBody, model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}

    def put(key: str, value: object) -> None:
        if value is not None:
            config[key] = value

    put("temperature", body.temperature)
    put("topP", body.top_p)
    put("maxOutputTokens", body.max_completion_tokens or body.max_tokens)
    stop = [body.stop] if isinstance(body.stop, str) else body.stop
    put("stopSequences", stop or None)
    put("candidateCount", body.n)
    put("seed", body.seed)
    put("presencePenalty", body.presence_penalty)
    put("frequencyPenalty", body.frequency_penalty)
    if body.logprobs:
        config["responseLogprobs"] = True
        put("logprobs", body.top_logprobs or None)
    if body.response_format is not None:
        config.update(_response_format(body.response_format))
    put("thinkingConfig", _thinking(body.reasoning_effort, model))
    return config


def _response_format(response_format: dict[str, Any]) -> dict[str, Any]:
    kind = response_format.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict):
            raise InvalidRequest(
                "'response_format.json_schema' must be an object.",
                param="response_format.json_schema",
            )
        out: dict[str, Any] = {"responseMimeType": "application/json"}
        if spec.get("schema") is not None:
            out["responseJsonSchema"] = spec["schema"]
        return out
    raise InvalidRequest(
        f"Unsupported response_format type {kind!r}: use text, json_object or json_schema.",
        param="response_format.type",
    )


def _thinking(effort: str | None, model: str) -> dict[str, Any] | None:
    """``thinkingConfig``: a level for Gemini 3, a token budget for 2.5; thoughts returned."""
    if effort is None:
        return None
    if effort not in _THINKING_BUDGETS:
        raise InvalidRequest(
            f"Unsupported reasoning_effort {effort!r}: use one of {', '.join(_THINKING_BUDGETS)}.",
            param="reasoning_effort",
        )
    if _is_gemini3(model):
        level = _THINKING_LEVELS[effort]
        if level == "MINIMAL" and _is_pro(model):
            level = "LOW"  # the Pro models have no MINIMAL level
        return {"thinkingLevel": level, "includeThoughts": True}
    budget = _THINKING_BUDGETS[effort]
    if budget == 0 and _is_pro(model):
        budget = _PRO_MIN_BUDGET
    if budget == 0:
        return {"thinkingBudget": 0}  # thinking is off: there are no thoughts to include
    return {"thinkingBudget": budget, "includeThoughts": True}


# ---------------------------------------------------------------------------------------------
# Reading answers


def _response_id(reply: _GenerateResponse) -> str:
    return "chatcmpl-" + (reply.response_id or secrets.token_hex(12))


def _block_reason(reply: _GenerateResponse) -> str | None:
    return reply.prompt_feedback.block_reason if reply.prompt_feedback else None


def _extra_content(signature: str | None) -> dict[str, Any] | None:
    return {"google": {"thought_signature": signature}} if signature else None


def _finish_reason(candidate: _Candidate, *, called: bool) -> str | None:
    """OpenAI's finish_reason for a candidate (None while it is still streaming)."""
    reason = candidate.finish_reason
    if reason is None:
        return None
    if reason == "STOP":
        return "tool_calls" if called else "stop"
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _CONTENT_FILTER:
        return "content_filter"
    if reason in _BAD_TOOL_CALL:
        # OpenAI has no word for it; the client sees a plain stop, the operator a log line.
        log.warning("gemini finished with %s: %s", reason, candidate.finish_message or "")
    return "stop"


def _usage(meta: _UsageMetadata | None) -> Usage | None:
    """OpenAI usage: tool-use prompt counts as prompt, thoughts as completion (reference §2.7)."""
    if meta is None:
        return None
    prompt = meta.prompt_token_count + meta.tool_use_prompt_token_count
    completion = meta.candidates_token_count + meta.thoughts_token_count
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=meta.total_token_count or prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=meta.cached_content_token_count),
        completion_tokens_details=CompletionTokensDetails(
            reasoning_tokens=meta.thoughts_token_count
        ),
    )


def _rpc_status(body: bytes) -> _RpcStatus | None:
    """The ``error`` of ``{"error": …}`` (or of ``[{"error": …}]``), None when it is not one."""
    try:
        parsed = msgspec.json.decode(body)
    except UNREADABLE:
        return None
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None
    try:
        return msgspec.convert(error, _RpcStatus)
    except msgspec.ValidationError:
        return None


def _details(rpc: _RpcStatus, kind: str) -> list[dict[str, Any]]:
    suffix = "google.rpc." + kind
    return [
        d for d in rpc.details if isinstance(d, dict) and str(d.get("@type", "")).endswith(suffix)
    ]


def _is_bad_key(rpc: _RpcStatus) -> bool:
    if any(d.get("reason") == "API_KEY_INVALID" for d in _details(rpc, "ErrorInfo")):
        return True
    text = rpc.message.lower()
    return "api key not valid" in text or "invalid api key" in text


def _retry_after(rpc: _RpcStatus) -> dict[str, str]:
    """``retry-after`` in whole seconds (rounded up) from ``RetryInfo.retryDelay`` ("37s")."""
    for detail in _details(rpc, "RetryInfo"):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                continue
            if not math.isfinite(seconds):
                continue
            # A day is already longer than any client waits; a larger hint is noise.
            return {"retry-after": str(min(max(math.ceil(seconds), 0), 86_400))}
    return {}


# ---------------------------------------------------------------------------------------------
# Streams


class GeminiChunkParser(ChunkParser):
    """SSE events of ``GenerateContentResponse`` (CRLF, no ``[DONE]``) into OpenAI chunks."""

    def __init__(self, adapter: GeminiAdapter, upstream_model: str) -> None:
        self._adapter = adapter
        self._sse = SSEDecoder()
        self._id: str | None = None
        self._created = int(time.time())
        self._model = upstream_model
        self._started: set[int] = set()  # choices that have had their role delta
        self._tool_calls: dict[int, int] = {}  # choice -> tool calls emitted so far
        self._usage: Usage | None = None
        self._finished = False

    def _feed(self, data: bytes, chunks: list[ChatChunk]) -> None:
        # An {"error": …} event raises the mapped error.
        try:
            events = self._sse.feed(data)
        except SSEError as exc:
            raise malformed(self._adapter.provider, "stream", exc) from None
        # Complete events before a bad line of this read are parsed first (the base class
        # delivers their chunks, then the error).
        self._parse_events(events, chunks)
        if self._sse.failure is not None:
            raise malformed(self._adapter.provider, "stream", self._sse.failure)

    def _parse_events(self, events: list[Event], chunks: list[ChatChunk]) -> None:
        for event in events:
            reply = self._adapter.decode(event.data.encode(), "stream event")
            if reply.error is not None:
                raise self._adapter.rpc_error(reply.error.code, reply.error, {})
            self._event(reply, chunks)

    def _finish(self, chunks: list[ChatChunk]) -> None:
        # The body ended: complete only after a finishReason (there is no end marker).
        self._sse.close()
        if not self._finished:
            raise UpstreamError(
                f"Upstream {self._adapter.provider} ended the stream before it was complete.",
                code="upstream_stream_cut",
            )
        self._flush_usage(chunks)

    def _before_failure(self, chunks: list[ChatChunk]) -> None:
        # Every event carries the usage so far: a failed call is logged with what it used.
        self._flush_usage(chunks)

    def _flush_usage(self, chunks: list[ChatChunk]) -> None:
        """The usage chunk, always last, with the last (authoritative) ``usageMetadata``; the
        caller decides whether the client sees it."""
        if self._usage is not None:
            chunks.append(self._chunk([], usage=self._usage))

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatChunk:
        return ChatChunk(
            id=self._id or "chatcmpl-" + secrets.token_hex(12),
            created=self._created,
            model=self._model,
            choices=choices,
            usage=usage,
        )

    def _event(self, reply: _GenerateResponse, chunks: list[ChatChunk]) -> None:
        if self._id is None:
            self._id = _response_id(reply)
            self._model = reply.model_version or self._model
        if reply.usage_metadata is not None:
            self._usage = _usage(reply.usage_metadata)
        if not reply.candidates and _block_reason(reply):
            self._finished = True
            if 0 not in self._started:
                self._started.add(0)
                chunks.append(self._chunk([ChunkChoice(0, Delta(role="assistant", content=""))]))
            chunks.append(self._chunk([ChunkChoice(0, Delta(), finish_reason="content_filter")]))
            return
        for candidate in reply.candidates:
            self._candidate(candidate, chunks)

    def _candidate(self, candidate: _Candidate, chunks: list[ChatChunk]) -> None:
        index = candidate.index
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[ToolCallDelta] = []
        for part in candidate.content.parts if candidate.content else ():
            if part.function_call is not None:
                # Gemini sends each call whole, so one delta carries all of it.
                call = self._adapter.tool_call(part, part.function_call)
                position = self._tool_calls.get(index, 0)
                self._tool_calls[index] = position + 1
                calls.append(
                    ToolCallDelta(
                        index=position,
                        id=call.id,
                        type="function",
                        function=FunctionCallDelta(call.function.name, call.function.arguments),
                        extra_content=call.extra_content,
                    )
                )
            elif part.text:
                (thoughts if part.thought else texts).append(part.text)
        first = index not in self._started
        if first or texts or thoughts or calls:
            self._started.add(index)
            delta = Delta(
                role="assistant" if first else None,
                content="".join(texts) if texts else ("" if first and not calls else None),
                reasoning_content="".join(thoughts) if thoughts else None,
                tool_calls=calls or None,
            )
            chunks.append(self._chunk([ChunkChoice(index, delta)]))
        finish = _finish_reason(candidate, called=index in self._tool_calls)
        if finish is not None:
            self._finished = True
            chunks.append(self._chunk([ChunkChoice(index, Delta(), finish_reason=finish)]))
