"""Ollama's answers (a whole ``/api/chat`` object, or one NDJSON line) read into OpenAI's shape.

Tool-call argument objects become JSON strings with generated ids, ``thinking`` becomes
``reasoning_content``, ``logprobs`` OpenAI's ``choices[].logprobs``, ``created_at`` the answer's
``created``, and the counts a usage with every detail, zeros included.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import UNSET, Struct

from proxy.chat import ChatResponse, Choice, ResponseMessage, ResponseToolCall, Usage
from proxy.chat_form import FunctionCall
from proxy.providers.base import UNREADABLE, decode_as, unix_time
from proxy.providers.logprobs import ChoiceLogprobs, TokenLogprob, TopLogprob, utf8_bytes

# done_reason -> finish_reason; "load"/"unload" answer requests that generated nothing.
_FINISH_REASONS: Mapping[str, str] = {"stop": "stop", "length": "length"}


class _LineFunction(Struct):
    name: str
    # An object from Ollama itself; a string from proxies that speak OpenAI's habit.
    arguments: dict[str, Any] | str | None = None
    index: int | None = None


class _LineToolCall(Struct):
    function: _LineFunction


class LineMessage(Struct):
    """The ``message`` of an answer or of one line: what it adds."""

    role: str = "assistant"
    content: str = ""
    thinking: str = ""
    tool_calls: list[_LineToolCall] | None = None


class _TokenLogprob(Struct):
    token: str
    logprob: float = 0.0
    bytes: list[int] | None = None  # Go's omitempty: left out when empty


class _Logprob(Struct):
    token: str
    logprob: float = 0.0
    bytes: list[int] | None = None
    top_logprobs: list[_TokenLogprob] = []


class OllamaLine(Struct):
    """One NDJSON line of a chat answer (or the whole non-streaming answer, or an error)."""

    model: str = ""
    message: LineMessage | None = None
    done: bool = False
    done_reason: str = ""
    # Go's omitempty drops zero counts, e.g. prompt_eval_count when the prompt was cached.
    prompt_eval_count: int = 0
    eval_count: int = 0
    error: str | None = None
    created_at: str | None = None  # RFC 3339 with nanoseconds
    logprobs: list[_Logprob] | None = None  # this line's own tokens, when they were asked for


_encode = msgspec.json.Encoder().encode
_decode_line = msgspec.json.Decoder(OllamaLine).decode
_decode_any = msgspec.json.Decoder().decode


def decode_line(provider: str, what: str, data: bytes) -> OllamaLine:
    """One answer object or stream line; garbage is an UpstreamError."""
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


def rfc3339_time(stamp: str | None) -> int | None:
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
    message = line.message or LineMessage()
    calls = [
        ResponseToolCall(
            id=tool_call_id(),
            function=FunctionCall(call.function.name, arguments_json(call.function.arguments)),
        )
        for call in message.tool_calls or ()
    ]
    return ChatResponse(
        id=completion_id(),
        created=created_of(line),
        model=line.model or upstream_model,
        choices=[
            Choice(
                message=ResponseMessage(
                    # Like OpenAI: no text beside tool calls is null, not "".
                    content=message.content or (None if calls else ""),
                    reasoning_content=message.thinking or UNSET,
                    tool_calls=calls or UNSET,
                ),
                logprobs=logprobs_of(line),
                finish_reason=finish_reason(line.done_reason, bool(calls)),
            )
        ],
        usage=usage_of(line),
    )


def created_of(line: OllamaLine) -> int:
    """When Ollama made the answer (its ``created_at``), else now."""
    return rfc3339_time(line.created_at) or int(time.time())


def logprobs_of(line: OllamaLine) -> ChoiceLogprobs | None:
    """OpenAI's logprobs of the tokens in ``line`` (one line's own, when streaming); None when
    Ollama sent none (they were not asked for)."""
    if line.logprobs is None:
        return None
    return ChoiceLogprobs(
        content=[
            TokenLogprob(
                token=entry.token,
                logprob=entry.logprob,
                bytes=entry.bytes if entry.bytes is not None else utf8_bytes(entry.token),
                top_logprobs=[
                    TopLogprob(
                        top.token,
                        top.logprob,
                        top.bytes if top.bytes is not None else utf8_bytes(top.token),
                    )
                    for top in entry.top_logprobs
                ],
            )
            for entry in line.logprobs
        ]
    )
