"""A fake OpenAI Chat Completions upstream: real HTTP on 127.0.0.1, scripted behaviours.

The same fake serves the Responses API (`/v1/responses`, in `openai_responses.py`) as OpenAI
does; its behaviours are queued on `fake.responses`. Embeddings (`/v1/embeddings`, in
`openai_embeddings.py`) take their behaviours from the chat queue (errors, stalls, garbage).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from .asgi_server import Message, Receive, Received, ResponseWriter, Scope, ScriptedUpstream, Send
from .openai_embeddings import (
    EMBEDDING_MODEL_LIST,
    EMBEDDING_MODELS,
    NOT_A_CHAT_MODEL,
    EmbeddingsCall,
    embeddings_call,
    send_embeddings,
)
from .openai_responses import FakeResponses

# The shared wire helpers (openai_wire.py), some under the short private names this module's
# code has always used.
from .openai_wire import BAD_JSON_MESSAGE as _BAD_JSON_MESSAGE
from .openai_wire import (
    ErrorReply,
    Raw,
    bad_key,
    common_headers,
    insufficient_quota,
    overloaded,
    rate_limited,
    server_error,
)
from .openai_wire import encode as _encode
from .openai_wire import model_not_found as _model_not_found
from .openai_wire import random_id as _random_id
from .openai_wire import send_error as _send_error
from .text import padded_echo, split_evenly, word_count, word_pieces

__all__ = [
    "DEFAULT_API_KEY",
    "MODELS",
    "UNKNOWN_MODEL",
    "AudioAnswer",
    "Behaviour",
    "CustomToolCall",
    "CutStream",
    "Echo",
    "ErrorReply",
    "FakeOpenAI",
    "Garbage",
    "MidStreamError",
    "Raw",
    "Received",
    "Sent",
    "Stall",
    "StallMidStream",
    "ToolCalls",
    "bad_key",
    "event_stream",
    "insufficient_quota",
    "json_answer",
    "overloaded",
    "rate_limited",
    "server_error",
    "unsupported_max_tokens",
]

DEFAULT_API_KEY = "sk-upstream-test-key"
UNKNOWN_MODEL = "does-not-exist"
SYSTEM_FINGERPRINT = "fp_fake0openai"
MODELS: tuple[tuple[str, int], ...] = (
    ("gpt-4o", 1715367049),
    ("gpt-4o-mini", 1721172741),
    ("o3-mini", 1737146383),
)
_LISTED = (*MODELS, *EMBEDDING_MODEL_LIST)  # GET /v1/models lists the embedding models too
_NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank "
    "username) if you're accessing the API from your browser and are prompted for a username and "
    "password. You can obtain an API key from https://platform.openai.com/account/api-keys."
)


# ---------------------------------------------------------------------------------------------
# Behaviours
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Echo:
    """Answer normally (the default): `text`, or "echo: " + the last user message."""

    text: str | None = None
    chunks: int | None = None
    reasoning: str | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str = "stop"
    delay_s: float = 0.0
    chunk_interval_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """Answer with one function tool call whose arguments stream in `fragments` pieces."""

    name: str = "get_weather"
    arguments: str = '{"city":"Paris"}'
    fragments: int = 3


@dataclass(frozen=True, slots=True)
class CustomToolCall:
    """Answer with one custom (free-form input) tool call; streamed input arrives in `fragments`."""

    name: str = "code_exec"
    input: str = "print(sum(range(10)))"
    fragments: int = 3


@dataclass(frozen=True, slots=True)
class AudioAnswer:
    """Answer with audio output: `message.audio` ({id, data, expires_at, transcript}), content
    null; streamed as `delta.audio` pieces (id and transcript, then data, then expires_at alone)."""

    transcript: str = "Hello from the fake."
    data: str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="
    expires_at: int = 1700003600


@dataclass(frozen=True, slots=True)
class CutStream:
    """Start a 200 answer, send `after_chunks` content chunks, then drop the connection mid-body."""

    after_chunks: int = 2


@dataclass(frozen=True, slots=True)
class MidStreamError:
    """Stream `after_chunks` content chunks, then `data: {"error": …}` and end without [DONE].

    With `one_write` the content chunks and the error leave in one write (a busy upstream's
    buffered output), so the gateway reads them together.
    """

    after_chunks: int = 2
    message: str = "The server had an error while processing your request."
    one_write: bool = False


@dataclass(frozen=True, slots=True)
class Stall:
    """Send nothing for `seconds`, then answer like Echo()."""

    seconds: float


@dataclass(frozen=True, slots=True)
class StallMidStream:
    """Stream `after_chunks` content chunks, stall for `seconds`, then finish like Echo()."""

    after_chunks: int = 1
    seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class Garbage:
    """Answer with a body that is not the OpenAI protocol."""

    body: bytes = b"<html>oops</html>"
    status: int = 200
    content_type: str = "text/html"


Behaviour = (
    Echo
    | ToolCalls
    | CustomToolCall
    | AudioAnswer
    | ErrorReply
    | CutStream
    | MidStreamError
    | Stall
    | StallMidStream
    | Garbage
    | Raw
)


def unsupported_max_tokens() -> ErrorReply:
    """A 400 unsupported_parameter for `max_tokens`, as reasoning models answer."""
    return ErrorReply(
        400,
        message=(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        ),
        type="invalid_request_error",
        code="unsupported_parameter",
        param="max_tokens",
    )


def json_answer(body: Any, *, status: int = 200) -> Raw:
    """Answer with exactly this JSON (encoded compactly, or `bytes` as given) in one piece."""
    data = body if isinstance(body, bytes) else _encode(body)
    return Raw((data,), status=status, content_type="application/json")


def event_stream(*events: Any, done: bool = True) -> Raw:
    """Answer with exactly these SSE events (each a JSON value, or `bytes` as the data), one
    write each, then `data: [DONE]` unless `done` is False."""
    parts = [b"data: " + (e if isinstance(e, bytes) else _encode(e)) + b"\n\n" for e in events]
    if done:
        parts.append(b"data: [DONE]\n\n")
    return Raw(tuple(parts))


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """Per-request data shared by the response writers."""

    model: str
    stream: bool
    include_usage: bool
    include_obfuscation: bool
    prompt_tokens: int
    last_user_text: str
    id: str = field(default_factory=lambda: "chatcmpl-" + _random_id(29))
    created: int = field(default_factory=lambda: int(time.time()))
    started_at: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Sent:
    """One answer as the fake sent it: status, headers, and the body bytes in write order."""

    status: int
    headers: dict[str, str]
    pieces: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        """The whole body sent so far."""
        return b"".join(self.pieces)

    def event_data(self) -> list[bytes]:
        """The data of each SSE event in the body (comments and blank padding skipped)."""
        events: list[bytes] = []
        for block in self.body.replace(b"\r\n", b"\n").split(b"\n\n"):
            lines = [line for line in block.split(b"\n") if line.startswith(b"data:")]
            if lines:
                events.append(b"\n".join(line[5:].removeprefix(b" ") for line in lines))
        return events


class FakeOpenAI(ScriptedUpstream[Behaviour]):
    """A scripted OpenAI upstream over real HTTP; chat calls answer Echo() when none is queued."""

    url_suffix = "/v1"  # base_url is "http://127.0.0.1:PORT/v1" once running

    def __init__(
        self, *, api_key: str = DEFAULT_API_KEY, listed: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__()
        self.api_key = api_key
        # GET /v1/models' entries as another OpenAI-compatible upstream lists them (DeepSeek's,
        # xAI's: tests.fakes.compat_upstreams); None: OpenAI's own list.
        self.listed = listed
        self.sent: list[Sent] = []  # every answer, recorded as it leaves (the bytes on the wire)
        self.responses = FakeResponses()  # the Responses API, with its own behaviour queue

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Record every answer's status, headers and body bytes, then serve as usual."""
        answer: Sent | None = None

        async def recording_send(message: Message) -> None:
            nonlocal answer
            if message["type"] == "http.response.start":
                headers = {
                    name.decode("latin-1"): value.decode("latin-1")
                    for name, value in message.get("headers", [])
                }
                answer = Sent(message["status"], headers)
                self.sent.append(answer)
            elif message["type"] == "http.response.body" and answer is not None:
                answer.pieces.append(bytes(message.get("body", b"")))
            await send(message)

        await super()._app(scope, receive, recording_send)

    async def _handle(self, request: Received, reply: ResponseWriter, receive: Receive) -> None:
        """Route one request: auth first, then chat completions, responses and the model list."""
        method, path, body = request.method, request.path, request.body
        auth_error = self._check_auth(request.headers.get("authorization"))
        if auth_error is not None:
            await _send_error(reply, auth_error)
        elif method == "POST" and path == "/v1/chat/completions":
            await self._chat(reply, receive, body)
        elif method == "POST" and path == "/v1/embeddings":
            await self._embeddings(reply, receive, body)
        elif path == "/v1/responses" or path.startswith("/v1/responses/"):
            watched = partial(self._answer_watched, reply, receive)
            await self.responses.handle(request, reply, watched)
        elif method == "GET" and path == "/v1/models":
            data = self.listed or [_model_object(name, created) for name, created in _LISTED]
            await reply.full(200, _json_headers(), _encode({"object": "list", "data": data}))
        elif method == "GET" and path.startswith("/v1/models/"):
            wanted = path.removeprefix("/v1/models/")
            found = [_model_object(n, c) for n, c in _LISTED if n == wanted]
            if found:
                await reply.full(200, _json_headers(), _encode(found[0]))
            else:
                await _send_error(reply, _model_not_found(wanted))
        else:
            await _send_error(
                reply,
                ErrorReply(
                    404, message=f"Invalid URL ({method} {path})", type="invalid_request_error"
                ),
            )

    def _check_auth(self, authorization: str | None) -> ErrorReply | None:
        """Return the 401 OpenAI gives for this Authorization header, or None if it is valid."""
        if authorization is None or not authorization.startswith("Bearer "):
            return ErrorReply(
                401, message=_NO_KEY_MESSAGE, type="invalid_request_error", code="invalid_api_key"
            )
        given = authorization.removeprefix("Bearer ").strip()
        if given != self.api_key:
            return bad_key(given)
        return None

    async def _chat(self, reply: ResponseWriter, receive: Receive, body: Any) -> None:
        """Handle POST /v1/chat/completions: validate, pick a behaviour, answer it."""
        if not isinstance(body, dict):
            await _send_error(reply, ErrorReply(400, _BAD_JSON_MESSAGE, "invalid_request_error"))
            return
        model = body.get("model")
        if not isinstance(model, str) or not model:
            message = "you must provide a model parameter"
            await _send_error(reply, ErrorReply(400, message, "invalid_request_error"))
            return
        messages = body.get("messages")
        if not isinstance(messages, list):
            error = ErrorReply(
                400,
                "Missing required parameter: 'messages'.",
                "invalid_request_error",
                code="missing_required_parameter",
                param="messages",
            )
            await _send_error(reply, error)
            return
        if model == UNKNOWN_MODEL:
            await _send_error(reply, _model_not_found(model))
            return
        if model in EMBEDDING_MODELS:
            await _send_error(reply, NOT_A_CHAT_MODEL)
            return
        invalid = _invalid_parameter(body)
        if invalid is not None:
            await _send_error(reply, invalid)
            return

        options = body.get("stream_options") or {}
        call = _Call(
            model=model,
            stream=body.get("stream") is True,
            include_usage=bool(options.get("include_usage")),
            include_obfuscation=options.get("include_obfuscation") is not False,
            prompt_tokens=sum(
                word_count(_message_text(m)) for m in messages if isinstance(m, dict)
            ),
            last_user_text=_last_user_text(messages),
        )
        behaviour = self.next_behaviour(Echo())
        await self._answer_watched(reply, receive, partial(_answer, reply, call, behaviour))

    async def _embeddings(self, reply: ResponseWriter, receive: Receive, body: Any) -> None:
        """Handle POST /v1/embeddings (openai_embeddings.py): validate, answer next behaviour."""
        call = embeddings_call(body, time.monotonic(), [name for name, _ in MODELS])
        if isinstance(call, ErrorReply):
            await _send_error(reply, call)
            return
        behaviour = self.next_behaviour(Echo())
        await self._answer_watched(
            reply, receive, partial(_answer_embeddings, reply, call, behaviour)
        )


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


async def _answer_embeddings(
    reply: ResponseWriter, call: EmbeddingsCall, behaviour: Behaviour
) -> bool:
    """Answer one embeddings call: the vectors (after Echo's delay or a Stall), or the scripted
    failure; chat-only behaviours (tool calls, audio, stream faults) answer normally."""
    match behaviour:
        case Echo(delay_s=seconds) | Stall(seconds=seconds):
            await trio.sleep(seconds)
        case ErrorReply():
            await _send_error(reply, behaviour)
            return False
        case Garbage() | Raw():
            await _answer(reply, _Call(call.model, False, False, False, 0, ""), behaviour)
            return False
        case CutStream():
            await send_embeddings(reply, call, cut=True)
            return True
    await send_embeddings(reply, call)
    return False


async def _answer(reply: ResponseWriter, call: _Call, behaviour: Behaviour) -> bool:
    """Answer one chat completion; True means the caller must drop the connection."""
    match behaviour:
        case Echo():
            await trio.sleep(behaviour.delay_s)
            await _answer_echo(reply, call, behaviour)
        case Stall(seconds=seconds):
            await trio.sleep(seconds)
            await _answer_echo(reply, call, Echo())
        case ToolCalls():
            await _answer_tool_calls(reply, call, behaviour)
        case CustomToolCall():
            await _answer_custom_tool_call(reply, call, behaviour)
        case AudioAnswer():
            await _answer_audio(reply, call, behaviour)
        case ErrorReply():
            await _send_error(reply, behaviour)
        case Garbage(body=body, status=status, content_type=content_type):
            await reply.full(status, {**_common_headers(call), "content-type": content_type}, body)
        case CutStream(after_chunks=n):
            await _answer_cut(reply, call, n)
            return True
        case Raw(parts=parts, status=status, content_type=content_type, interval_s=interval):
            await reply.start(status, {**_common_headers(call), "content-type": content_type})
            for part in parts:
                await trio.sleep(interval)
                await reply.write(part)
            await reply.end()
        case MidStreamError(after_chunks=n, message=message, one_write=one_write):
            if not call.stream:
                await _send_error(reply, ErrorReply(500, message, "server_error"))
            else:
                await _start_stream(reply, call)
                pieces = padded_echo(call.last_user_text, n)[:n]
                events = [_sse(_chunk(call, {"content": piece})) for piece in pieces]
                error = {"message": message, "type": "server_error", "param": None, "code": None}
                events.append(_sse({"error": error}))
                if one_write:
                    events = [b"".join(events)]
                for event in events[:-1]:
                    await reply.write(event)
                await reply.end(events[-1])
        case StallMidStream(after_chunks=n, seconds=seconds):
            if not call.stream:
                await trio.sleep(seconds)
                await _answer_echo(reply, call, Echo())
            else:
                pieces = padded_echo(call.last_user_text, n)
                await _start_stream(reply, call)
                for i, piece in enumerate(pieces):
                    if i == n:
                        await trio.sleep(seconds)
                    await reply.write(_sse(_chunk(call, {"content": piece})))
                await _finish_stream(reply, call, "stop", _usage(call, "".join(pieces)))
    return False


async def _answer_echo(reply: ResponseWriter, call: _Call, echo: Echo) -> None:
    """Answer with text (and optional DeepSeek-style reasoning_content), streamed or not."""
    text = echo.text if echo.text is not None else "echo: " + call.last_user_text
    usage = _usage(call, text, echo.cached_tokens, echo.reasoning_tokens)
    if not call.stream:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if echo.reasoning is not None:
            message["reasoning_content"] = echo.reasoning
        message |= {"refusal": None, "annotations": []}
        await _send_completion(reply, call, message, echo.finish_reason, usage)
        return
    await _start_stream(reply, call)
    for piece in word_pieces(echo.reasoning or ""):
        await trio.sleep(echo.chunk_interval_s)
        await reply.write(_sse(_chunk(call, {"content": None, "reasoning_content": piece})))
    pieces = split_evenly(text, echo.chunks) if echo.chunks is not None else word_pieces(text)
    for piece in pieces:
        await trio.sleep(echo.chunk_interval_s)
        await reply.write(_sse(_chunk(call, {"content": piece})))
    await _finish_stream(reply, call, echo.finish_reason, usage)


async def _answer_tool_calls(reply: ResponseWriter, call: _Call, tool: ToolCalls) -> None:
    """Answer with one function call; streamed arguments arrive in fragments keyed by index."""
    await _answer_one_tool_call(
        reply, call, "function", tool.name, "arguments", tool.arguments, tool.fragments
    )


async def _answer_custom_tool_call(
    reply: ResponseWriter, call: _Call, tool: CustomToolCall
) -> None:
    """Answer with one custom tool call, OpenAI's shape: `custom: {name, input}`; streamed input
    arrives in fragments keyed by index, like function arguments."""
    await _answer_one_tool_call(
        reply, call, "custom", tool.name, "input", tool.input, tool.fragments
    )


async def _answer_one_tool_call(
    reply: ResponseWriter,
    call: _Call,
    kind: str,
    name: str,
    field: str,
    value: str,
    fragments: int,
) -> None:
    """One tool call of ``kind`` ("function" with ``arguments``, "custom" with ``input``)."""
    call_id = "call_" + _random_id(24)
    usage = _usage(call, value)
    if not call.stream:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call_id, "type": kind, kind: {"name": name, field: value}}],
            "refusal": None,
            "annotations": [],
        }
        await _send_completion(reply, call, message, "tool_calls", usage)
        return
    await reply.start(200, _stream_headers(call))
    header = {"index": 0, "id": call_id, "type": kind, kind: {"name": name, field: ""}}
    first = {"role": "assistant", "content": None, "tool_calls": [header]}
    await reply.write(_sse(_chunk(call, first)))
    for fragment in split_evenly(value, fragments):
        delta = {"tool_calls": [{"index": 0, kind: {field: fragment}}]}
        await reply.write(_sse(_chunk(call, delta)))
    await _finish_stream(reply, call, "tool_calls", usage)


async def _answer_audio(reply: ResponseWriter, call: _Call, audio: AudioAnswer) -> None:
    """Answer with audio output (modalities ["text", "audio"]): content null, the words in the
    audio's transcript, audio tokens counted in the usage details."""
    audio_id = "audio_" + _random_id(24)
    usage = _usage(call, audio.transcript)
    usage["completion_tokens_details"]["audio_tokens"] = usage["completion_tokens"]
    if not call.stream:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "audio": {
                "id": audio_id,
                "data": audio.data,
                "expires_at": audio.expires_at,
                "transcript": audio.transcript,
            },
            "annotations": [],
        }
        await _send_completion(reply, call, message, "stop", usage)
        return
    await reply.start(200, _stream_headers(call))
    first = {"role": "assistant", "content": None, "refusal": None}
    await reply.write(_sse(_chunk(call, first)))
    pieces = [
        {"id": audio_id, "transcript": audio.transcript},
        {"data": audio.data},
        {"expires_at": audio.expires_at},
    ]
    for piece in pieces:
        await reply.write(_sse(_chunk(call, {"audio": piece})))
    await _finish_stream(reply, call, "stop", usage)


async def _answer_cut(reply: ResponseWriter, call: _Call, after_chunks: int) -> None:
    """Send part of an answer; the caller then drops the connection mid-body."""
    reply.finished = True  # the server, not the client, ends this one
    if call.stream:
        await _start_stream(reply, call)
        for piece in padded_echo(call.last_user_text, after_chunks)[:after_chunks]:
            await reply.write(_sse(_chunk(call, {"content": piece})))
        return
    # Non-stream: promise a full JSON body by content-length, then deliver only half of it.
    text = "echo: " + call.last_user_text
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text,
        "refusal": None,
        "annotations": [],
    }
    body = _encode(_completion(call, message, "stop", _usage(call, text)))
    headers = {**_json_headers(call), "content-length": str(len(body))}
    await reply.start(200, headers)
    await reply.write(body[: len(body) // 2])


async def _send_completion(
    reply: ResponseWriter, call: _Call, message: dict[str, Any], finish: str, usage: dict[str, Any]
) -> None:
    """Send a non-streaming chat.completion body."""
    await reply.full(200, _json_headers(call), _encode(_completion(call, message, finish, usage)))


async def _start_stream(reply: ResponseWriter, call: _Call) -> None:
    """Send the SSE headers and the first chunk carrying the assistant role."""
    await reply.start(200, _stream_headers(call))
    first = {"role": "assistant", "content": "", "refusal": None}
    await reply.write(_sse(_chunk(call, first)))


async def _finish_stream(
    reply: ResponseWriter, call: _Call, finish: str, usage: dict[str, Any]
) -> None:
    """Send the finish chunk, the usage chunk if asked for, and [DONE]."""
    await reply.write(_sse(_chunk(call, {}, finish)))
    if call.include_usage:
        chunk = _chunk(call, {})
        chunk["choices"] = []
        chunk["usage"] = usage
        await reply.write(_sse(chunk))
    await reply.end(b"data: [DONE]\n\n")


# ---------------------------------------------------------------------------------------------
# Bodies, headers, tokens
# ---------------------------------------------------------------------------------------------


def _completion(
    call: _Call, message: dict[str, Any], finish: str, usage: dict[str, Any]
) -> dict[str, Any]:
    """A chat.completion body."""
    return {
        "id": call.id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _chunk(call: _Call, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """A chat.completion.chunk with one choice."""
    chunk: dict[str, Any] = {
        "id": call.id,
        "object": "chat.completion.chunk",
        "created": call.created,
        "model": call.model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    if call.include_obfuscation:
        chunk["obfuscation"] = secrets.token_urlsafe(6)
    return chunk


def _usage(
    call: _Call, answer: str, cached_tokens: int = 0, reasoning_tokens: int = 0
) -> dict[str, Any]:
    """Usage: prompt = words in all messages, completion = answer words + reasoning_tokens."""
    completion = word_count(answer) + reasoning_tokens
    return {
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": call.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _invalid_parameter(body: Mapping[str, Any]) -> ErrorReply | None:
    """The 400 OpenAI gives for a `temperature` not a number in [0, 2], or a tool it does not
    know (a type other than function and custom, or no name)."""
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float)
    ):
        return _invalid_value(
            f"Invalid type for 'temperature': expected a decimal, but got "
            f"{_json_type(temperature)} instead.",
            "temperature",
            "invalid_type",
        )
    if isinstance(temperature, int | float):
        if temperature > 2:
            return _invalid_value(
                f"Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
                f"but got {temperature} instead.",
                "temperature",
                "decimal_above_max_value",
            )
        if temperature < 0:
            return _invalid_value(
                f"Invalid 'temperature': decimal below minimum value. Expected a value >= 0, "
                f"but got {temperature} instead.",
                "temperature",
                "decimal_below_min_value",
            )
    tools = body.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in ("function", "custom"):
            return _invalid_value(
                f"Invalid value: {_quoted(kind)}. Supported values are: 'function' and 'custom'.",
                f"tools[{i}].type",
                "invalid_value",
            )
        if not isinstance(tool.get(kind), dict) or not isinstance(tool[kind].get("name"), str):
            return _invalid_value(
                f"Missing required parameter: 'tools[{i}].{kind}.name'.",
                f"tools[{i}].{kind}.name",
                "missing_required_parameter",
            )
    return None


def _invalid_value(message: str, param: str, code: str) -> ErrorReply:
    """A 400 invalid_request_error naming the parameter, as OpenAI words them."""
    return ErrorReply(400, message=message, type="invalid_request_error", code=code, param=param)


def _json_type(value: Any) -> str:
    """How OpenAI's messages name a JSON value's type."""
    kinds = {bool: "a boolean", str: "a string", list: "an array", dict: "an object"}
    return kinds.get(type(value), "a value")


def _quoted(value: Any) -> str:
    """A value quoted the way OpenAI's messages quote it ('x' for strings)."""
    return f"'{value}'" if isinstance(value, str) else str(value)


def _model_object(name: str, created: int) -> dict[str, Any]:
    """One entry of GET /v1/models."""
    return {"id": name, "object": "model", "created": created, "owned_by": "system"}


def _common_headers(call: _Call | None) -> dict[str, str]:
    """Headers on every OpenAI answer, the processing time counted from the call's start."""
    return common_headers(None if call is None else call.started_at)


def _json_headers(call: _Call | None = None) -> dict[str, str]:
    """Headers for a JSON answer."""
    return {**_common_headers(call), "content-type": "application/json"}


def _stream_headers(call: _Call) -> dict[str, str]:
    """Headers for an SSE answer."""
    return {
        **_common_headers(call),
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
    }


def _sse(obj: Any) -> bytes:
    """One SSE event: `data: <json>` and a blank line."""
    return b"data: " + _encode(obj) + b"\n\n"


def _message_text(message: Mapping[str, Any]) -> str:
    """All text of one message: a string content or its text parts, space-joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and "text" in part
        )
    return ""


def _last_user_text(messages: list[Any]) -> str:
    """Text of the last user message, or "" if there is none."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""
