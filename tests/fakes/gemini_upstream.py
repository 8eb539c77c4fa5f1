"""A fake Gemini (native REST, v1beta) upstream: real HTTP on 127.0.0.1, scripted behaviours.

It follows the protocol reference's checklist (§7 item 2): ``x-goog-api-key`` auth with Google's
400 ``API_KEY_INVALID`` body, camelCase with zero values omitted, SSE events separated by
``\\r\\n\\r\\n`` and no ``[DONE]`` (a JSON array when ``alt=sse`` is missing), usageMetadata on
several chunks, thought parts and signatures, blocked prompts and Google RPC errors. Asked for
``responseLogprobs``, an answer's candidates carry ``logprobsResult`` (each event its own tokens'),
a certain token without ``logProbability`` (proto3 JSON leaves zeros out). ``embedContent`` and
``batchEmbedContents`` are served by ``gemini_embeddings.py``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgspec

from .asgi_server import Receive, Received, ResponseWriter, ScriptedUpstream
from .gemini_embeddings import (
    EMBED_PATH,
    GEMINI_EMBEDDING_MODELS,
    EmbedCall,
    embed_answer,
    embed_call,
    not_embeddable,
)
from .text import logprob_of

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SIGNATURE",
    "IMAGE_TOKENS",
    "MAX_TOP_LOGPROBS",
    "MODELS",
    "UNKNOWN_MODEL",
    "Behaviour",
    "CutStream",
    "Echo",
    "FakeGemini",
    "FunctionCall",
    "Garbage",
    "MidStreamError",
    "PromptBlocked",
    "Received",
    "RpcError",
    "SafetyStop",
    "Thinking",
    "bad_key",
    "logprob_of",
    "not_found",
    "overloaded",
    "rate_limited",
    "server_error",
]

DEFAULT_API_KEY = "gemini-test-key"
DEFAULT_SIGNATURE = "sig-CiQBVKhc7lZ2Yk9fakeSignature"
UNKNOWN_MODEL = "does-not-exist"
IMAGE_TOKENS = 258  # what Gemini charges for a small inline image
MAX_TOP_LOGPROBS = 20
_CHAT_METHODS = ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
_EMBED_METHODS = ["embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent"]
# (name, display name, supportedGenerationMethods)
MODELS: tuple[tuple[str, str, list[str]], ...] = (
    ("models/gemini-2.5-flash", "Gemini 2.5 Flash", _CHAT_METHODS),
    ("models/gemini-2.5-pro", "Gemini 2.5 Pro", _CHAT_METHODS),
    ("models/gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", _CHAT_METHODS),
    ("models/gemini-3-flash-preview", "Gemini 3 Flash Preview", _CHAT_METHODS),
    ("models/gemma-3-27b-it", "Gemma 3 27B", ["generateContent", "countTokens"]),
    ("models/gemini-embedding-001", "Gemini Embedding 001", _EMBED_METHODS),
    ("models/text-embedding-004", "Text Embedding 004", ["embedContent"]),
    ("models/imagen-4.0-generate-001", "Imagen 4", ["predict"]),
)
_STREAM_HEADERS = {
    "content-type": "text/event-stream",
    "x-content-type-options": "nosniff",
    "vary": "Origin, X-Origin, Referer",
}
_JSON_TYPE = "application/json; charset=UTF-8"
_CHAT = re.compile(
    r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$"
)
_TOP_LEVEL = {
    "contents",
    "systemInstruction",
    "system_instruction",
    "generationConfig",
    "generation_config",
    "tools",
    "toolConfig",
    "tool_config",
    "safetySettings",
    "safety_settings",
    "cachedContent",
    "cached_content",
}
_GENERATION_CONFIG = {
    "temperature",
    "topP",
    "topK",
    "maxOutputTokens",
    "stopSequences",
    "candidateCount",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "mediaResolution",
    "speechConfig",
    "thinkingConfig",
}
_PART_FIELDS = {
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "thought",
    "thoughtSignature",
    "executableCode",
    "codeExecutionResult",
    "videoMetadata",
}
_SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
]


# ---------------------------------------------------------------------------------------------
# Behaviours
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Echo:
    """Answer normally (the default): `text`, or "echo: " + the last user text; words streamed."""

    text: str | None = None
    finish_reason: str = "STOP"
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Thinking:
    """Thought-summary parts (``thought: true``) first, then the answer; thoughts are counted."""

    thought_text: str = "Considering the question carefully."
    answer: str = "The answer is 42."
    thoughts_tokens: int = 120


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """One whole ``functionCall`` part carrying a ``thoughtSignature``; finishReason STOP."""

    name: str = "get_weather"
    args: Mapping[str, Any] = field(default_factory=lambda: {"city": "Paris"})
    signature: str | None = DEFAULT_SIGNATURE
    id: str | None = None  # Gemini 2.x sends none; set one to play a model that does
    # Further calls in the same answer (parallel calls), as Gemini sends them: whole parts after
    # the first, without a signature of their own.
    parallel: tuple[tuple[str, Mapping[str, Any]], ...] = ()


@dataclass(frozen=True, slots=True)
class PromptBlocked:
    """HTTP 200 with no candidates and ``promptFeedback.blockReason``."""

    reason: str = "SAFETY"


@dataclass(frozen=True, slots=True)
class SafetyStop:
    """A candidate stopped for SAFETY without any content."""


@dataclass(frozen=True, slots=True)
class RpcError:
    """A Google RPC error body ``{"error": {code, message, status, details}}``."""

    status_code: int
    status: str
    message: str
    details: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class MidStreamError:
    """Stream `after_chunks` text chunks, then an ``{"error": …}`` event, then end.

    With `one_write` the text events and the error leave in one write (SSE only), so the
    gateway reads them together.
    """

    after_chunks: int = 2
    error: RpcError = field(
        default_factory=lambda: RpcError(500, "INTERNAL", "An internal error has occurred.")
    )
    one_write: bool = False


@dataclass(frozen=True, slots=True)
class CutStream:
    """Start a 200 answer, send `after_chunks` chunks, then drop the connection mid-body."""

    after_chunks: int = 2


@dataclass(frozen=True, slots=True)
class Garbage:
    """Answer with a body that is not the Gemini protocol."""

    body: bytes = b"<html>oops</html>"
    status: int = 200
    content_type: str = "text/html"


Behaviour = (
    Echo
    | Thinking
    | FunctionCall
    | PromptBlocked
    | SafetyStop
    | RpcError
    | MidStreamError
    | CutStream
    | Garbage
)


def rate_limited(retry_delay: str = "37s") -> RpcError:
    """A free-tier 429 RESOURCE_EXHAUSTED with QuotaFailure, Help and RetryInfo details."""
    return RpcError(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": (
                            "generativelanguage.googleapis.com/generate_content_free_tier_requests"
                        ),
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                        "quotaValue": "10",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
        ],
    )


def bad_key() -> RpcError:
    """Google's answer to a wrong or missing key: 400, not 401, with ErrorInfo API_KEY_INVALID."""
    message = "API key not valid. Please pass a valid API key."
    return RpcError(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ],
    )


def not_found(model: str) -> RpcError:
    """The 404 for an unknown model, worded like Google."""
    return RpcError(
        404,
        "NOT_FOUND",
        f"models/{model} is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    )


def overloaded() -> RpcError:
    """A 503 UNAVAILABLE (the model is overloaded)."""
    return RpcError(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def server_error() -> RpcError:
    """A 500 INTERNAL."""
    return RpcError(
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    )


def _invalid(message: str) -> RpcError:
    return RpcError(400, "INVALID_ARGUMENT", message)


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """Per-request data shared by the response writers."""

    model: str
    sse: bool  # streamGenerateContent with alt=sse
    array: bool  # streamGenerateContent without alt=sse: one JSON array
    prompt_tokens: int
    image_tokens: int
    last_user_text: str
    response_id: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    top_logprobs: int | None = None  # None: logprobs not asked for; else alternatives per token

    @property
    def streaming(self) -> bool:
        return self.sse or self.array


class FakeGemini(ScriptedUpstream[Behaviour]):
    """A scripted Gemini upstream over real HTTP; generate calls answer Echo() if none is queued."""

    url_suffix = "/v1beta"  # base_url is "http://127.0.0.1:PORT/v1beta" once running

    def __init__(self, *, api_key: str = DEFAULT_API_KEY) -> None:
        super().__init__()
        self.api_key = api_key

    async def _handle(self, request: Received, reply: ResponseWriter, receive: Receive) -> None:
        """Route one request: the key first, then generate calls and the model list."""
        method, path, body, raw = request.method, request.path, request.body, request.raw
        params = _query(request.query)

        # Google also takes ?key=…; the gateway must not use it (keys stay out of URLs).
        if request.headers.get("x-goog-api-key", params.get("key")) != self.api_key:
            await _send_error(reply, bad_key())
            return
        chat = _CHAT.match(path)
        embed = EMBED_PATH.match(path)
        if method == "POST" and chat is not None:
            await self._generate(reply, receive, chat["model"], chat["method"], params, body, raw)
        elif method == "POST" and embed is not None:
            await self._embed(reply, receive, embed["model"], embed["method"], body)
        elif method == "GET" and path == "/v1beta/models":
            models = [_model_object(*entry) for entry in MODELS]
            await reply.full(200, {"content-type": _JSON_TYPE}, _pretty({"models": models}))
        elif method == "GET" and path.startswith("/v1beta/models/"):
            wanted = "models/" + path.removeprefix("/v1beta/models/")
            found = [_model_object(*entry) for entry in MODELS if entry[0] == wanted]
            if found:
                await reply.full(200, {"content-type": _JSON_TYPE}, _pretty(found[0]))
            else:
                await _send_error(reply, not_found(wanted.removeprefix("models/")))
        else:
            await _send_error(
                reply, RpcError(404, "NOT_FOUND", f"Method not found: {method} {path}")
            )

    async def _generate(
        self,
        reply: ResponseWriter,
        receive: Receive,
        model: str,
        method: str,
        params: Mapping[str, str],
        body: Any,
        raw: bytes,
    ) -> None:
        """Validate like Google, pick a behaviour, answer it."""
        if not isinstance(body, dict):
            detail = "Invalid JSON payload received." if raw else "Request contains no body."
            await _send_error(reply, _invalid(detail))
            return
        problem = _validate(body, model)
        if problem is not None:
            await _send_error(reply, _invalid(problem))
            return
        if model == UNKNOWN_MODEL or model in GEMINI_EMBEDDING_MODELS:
            await _send_error(reply, not_found(model))
            return
        streaming = method == "streamGenerateContent"
        text_tokens, image_tokens = _prompt_tokens(body)
        call = _Call(
            model=model,
            sse=streaming and params.get("alt") == "sse",
            array=streaming and params.get("alt") != "sse",
            prompt_tokens=text_tokens + image_tokens,
            image_tokens=image_tokens,
            last_user_text=_last_user_text(body["contents"]),
            top_logprobs=_top_logprobs(body),
        )
        behaviour = self.next_behaviour(Echo())
        await self._answer_watched(reply, receive, partial(_answer, reply, call, behaviour))

    async def _embed(
        self, reply: ResponseWriter, receive: Receive, model: str, method: str, body: Any
    ) -> None:
        """Validate an embed call like Google (gemini_embeddings.py), answer the next behaviour."""
        call = embed_call(body, model, method)
        if isinstance(call, str):
            await _send_error(reply, _invalid(call))
            return
        if model not in GEMINI_EMBEDDING_MODELS:
            await _send_error(reply, RpcError(404, "NOT_FOUND", not_embeddable(model, method)))
            return
        behaviour = self.next_behaviour(Echo())
        await self._answer_watched(reply, receive, partial(_answer_embed, reply, call, behaviour))


def _query(query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name:
            out[name] = value
    return out


def _validate(body: dict[str, Any], model: str) -> str | None:
    """The message of Google's 400 for a body it would refuse, or None."""
    for name in body:
        if name not in _TOP_LEVEL:
            return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role") not in ("user", "model"):
            return f"Please use a valid role: user, model. (contents[{i}])"
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return (
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
        for j, part in enumerate(parts):
            problem = _validate_part(part, f"contents[{i}].parts[{j}]")
            if problem is not None:
                return problem
        if model.startswith("gemini-3") and content["role"] == "model":
            calls = [p for p in parts if "functionCall" in p]
            if calls and "thoughtSignature" not in calls[0]:
                return (
                    "Function call is missing a thought_signature in functionCall parts. This "
                    "is required for tools to work correctly, and missing thought_signature may "
                    "lead to degraded model performance."
                )
    config = body.get("generationConfig", {})
    for name in config:
        if name not in _GENERATION_CONFIG:
            return (
                f'Invalid JSON payload received. Unknown name "{name}" at '
                "'generation_config': Cannot find field."
            )
    top = config.get("logprobs")
    if top is not None and not config.get("responseLogprobs"):
        return "logprobs is only valid if responseLogprobs is true."
    if top is not None and not (isinstance(top, int) and 0 <= top <= MAX_TOP_LOGPROBS):
        return f"logprobs must be in the range [0, {MAX_TOP_LOGPROBS}]."
    system = body.get("systemInstruction")
    if system is not None and not (isinstance(system, dict) and system.get("parts")):
        return "* GenerateContentRequest.system_instruction.parts: must not be empty"
    return None


def _validate_part(part: Any, where: str) -> str | None:
    if not isinstance(part, dict) or not part:
        return f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one"
    for name in part:
        if name not in _PART_FIELDS:
            return f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}'"
    call = part.get("functionCall")
    if call is not None and not (isinstance(call.get("name"), str) and _is_object(call, "args")):
        return f"* GenerateContentRequest.{where}.function_call: args must be an object"
    result = part.get("functionResponse")
    if result is not None and not (
        isinstance(result.get("name"), str) and isinstance(result.get("response"), dict)
    ):
        return f"* GenerateContentRequest.{where}.function_response: name and response required"
    inline = part.get("inlineData")
    if inline is not None and not (inline.get("mimeType") and inline.get("data")):
        return f"* GenerateContentRequest.{where}.inline_data: mime_type and data required"
    return None


def _is_object(container: Mapping[str, Any], key: str) -> bool:
    return key not in container or isinstance(container[key], dict)


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


async def _answer(reply: ResponseWriter, call: _Call, behaviour: Behaviour) -> bool:
    """Answer one generate call; True means the caller must drop the connection."""
    match behaviour:
        case Echo():
            text = behaviour.text if behaviour.text is not None else "echo: " + call.last_user_text
            events = _text_events(call, _words(text), behaviour.finish_reason)
            if behaviour.cached_tokens:
                events[-1]["usageMetadata"]["cachedContentTokenCount"] = behaviour.cached_tokens
            await _send_events(reply, call, events)
        case Thinking():
            await _send_events(reply, call, _thinking_events(call, behaviour))
        case FunctionCall():
            await _send_events(reply, call, [_function_call_event(call, behaviour)])
        case PromptBlocked(reason=reason):
            event = _event(call, None, _usage(call))
            event["promptFeedback"] = {"blockReason": reason, "safetyRatings": _SAFETY_RATINGS}
            await _send_events(reply, call, [event])
        case SafetyStop():
            candidate = {"finishReason": "SAFETY", "safetyRatings": _SAFETY_RATINGS}
            await _send_events(reply, call, [_event(call, candidate, _usage(call))])
        case RpcError():
            await _send_error(reply, behaviour)
        case Garbage(body=body, status=status, content_type=content_type):
            await reply.full(status, {"content-type": content_type}, body)
        case MidStreamError(after_chunks=n, error=error, one_write=one_write):
            if not call.streaming:
                await _send_error(reply, error)
            else:
                events = _text_events(call, _padded_words(call, n), "STOP")[:n]
                await _stream(reply, call, events, error=_error_body(error), one_write=one_write)
        case CutStream(after_chunks=n):
            reply.finished = True  # the server, not the client, ends this one
            if call.streaming:
                events = _text_events(call, _padded_words(call, n), "STOP")[:n]
                await _stream(reply, call, events, cut=True)
            else:
                body = _pretty(_text_events(call, ["echo: " + call.last_user_text], "STOP")[0])
                await reply.start(
                    200, {"content-type": _JSON_TYPE, "content-length": str(len(body))}
                )
                await reply.write(body[: len(body) // 2])
            return True
    return False


async def _answer_embed(reply: ResponseWriter, call: EmbedCall, behaviour: Behaviour) -> bool:
    """Answer one embed call: the vectors, or the scripted failure (generate-only behaviours
    answer normally); True means the caller must drop the connection."""
    body = _pretty(embed_answer(call))
    match behaviour:
        case RpcError() | MidStreamError():
            await _send_error(
                reply, behaviour if isinstance(behaviour, RpcError) else behaviour.error
            )
        case Garbage(body=garbage, status=status, content_type=content_type):
            await reply.full(status, {"content-type": content_type}, garbage)
        case CutStream():
            reply.finished = True  # the server, not the client, ends this one
            await reply.start(200, {"content-type": _JSON_TYPE, "content-length": str(len(body))})
            await reply.write(body[: len(body) // 2])
            return True
        case _:
            await reply.full(200, {"content-type": _JSON_TYPE}, body)
    return False


async def _send_events(reply: ResponseWriter, call: _Call, events: list[dict[str, Any]]) -> None:
    """Stream the events, or merge them into one response for generateContent."""
    if call.streaming:
        await _stream(reply, call, events)
    else:
        await reply.full(200, {"content-type": _JSON_TYPE}, _pretty(_merge(events)))


async def _stream(
    reply: ResponseWriter,
    call: _Call,
    events: list[dict[str, Any]],
    *,
    error: dict[str, Any] | None = None,
    cut: bool = False,
    one_write: bool = False,
) -> None:
    """SSE with CRLF separators and no [DONE]; or Google's streamed JSON array."""
    if call.sse:
        await reply.start(200, _STREAM_HEADERS)
        encoded = [b"data: " + _encode(event) + b"\r\n\r\n" for event in events]
        tail = b"data: " + _encode(error) + b"\r\n\r\n" if error else b""
        if one_write and not cut:
            encoded, tail = [], b"".join(encoded) + tail
        for event in encoded:
            await reply.write(event)
        if cut:
            return
        await reply.end(tail)
        return
    # Without alt=sse Google streams one JSON array, its elements pretty-printed.
    await reply.start(200, {"content-type": _JSON_TYPE})
    elements = [_pretty(event) for event in events] + ([_pretty(error)] if error else [])
    for i, element in enumerate(elements):
        if cut and i == len(events):
            return
        await reply.write((b"[" if i == 0 else b"\n,\r\n") + element)
    if cut:
        return
    await reply.end(b"\n]" if elements else b"[]")


async def _send_error(reply: ResponseWriter, error: RpcError) -> None:
    await reply.full(error.status_code, {"content-type": _JSON_TYPE}, _pretty(_error_body(error)))


def _error_body(error: RpcError) -> dict[str, Any]:
    inner: dict[str, Any] = {
        "code": error.status_code,
        "message": error.message,
        "status": error.status,
    }
    if error.details:
        inner["details"] = [dict(detail) for detail in error.details]
    return {"error": inner}


def _text_events(call: _Call, pieces: list[str], finish: str) -> list[dict[str, Any]]:
    """One event per piece; early ones carry prompt-only usage, the last the full usage."""
    pieces = pieces or [""]
    events = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        candidate: dict[str, Any] = {"content": {"parts": [{"text": piece}], "role": "model"}}
        if call.top_logprobs is not None:
            candidate["logprobsResult"] = _logprobs_result(piece, i, call.top_logprobs)
        if last:
            candidate["finishReason"] = finish
        usage = _usage(call, _count("".join(pieces))) if last else _usage(call)
        events.append(_event(call, candidate, usage))
    return events


def _thinking_events(call: _Call, thinking: Thinking) -> list[dict[str, Any]]:
    thought = {
        "content": {"parts": [{"text": thinking.thought_text, "thought": True}], "role": "model"}
    }
    events = [_event(call, thought, _usage(call))]
    answers = _text_events(call, _words(thinking.answer), "STOP")
    answers[-1]["usageMetadata"] = _usage(
        call, _count(thinking.answer), thoughts=thinking.thoughts_tokens
    )
    return events + answers


def _function_call_event(call: _Call, function: FunctionCall) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": function.name, "args": dict(function.args)}
    if function.id is not None:
        payload["id"] = function.id
    part: dict[str, Any] = {"functionCall": payload}
    if function.signature is not None:
        part["thoughtSignature"] = function.signature
    more = [
        {"functionCall": {"name": name, "args": dict(args)}} for name, args in function.parallel
    ]
    candidate = {"content": {"parts": [part, *more], "role": "model"}, "finishReason": "STOP"}
    return _event(call, candidate, _usage(call, 10))


def _event(call: _Call, candidate: dict[str, Any] | None, usage: dict[str, Any]) -> dict[str, Any]:
    """A GenerateContentResponse; ``index`` 0 is omitted like every zero value."""
    event: dict[str, Any] = {}
    if candidate is not None:
        event["candidates"] = [candidate]
    event["usageMetadata"] = usage
    event["modelVersion"] = call.model
    event["responseId"] = call.response_id
    return event


def _merge(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-streaming response for a list of stream events: parts joined, last usage."""
    merged = dict(events[-1])
    if "candidates" in merged:
        parts: list[dict[str, Any]] = []
        for event in events:
            for part in event["candidates"][0].get("content", {}).get("parts", []):
                if (
                    parts
                    and "text" in part
                    and "text" in parts[-1]
                    and (part.get("thought") == parts[-1].get("thought"))
                ):
                    parts[-1] = {**parts[-1], "text": parts[-1]["text"] + part["text"]}
                else:
                    parts.append(dict(part))
        candidate = dict(merged["candidates"][0])
        if parts:
            candidate["content"] = {"parts": parts, "role": "model"}
        results = [e["candidates"][0]["logprobsResult"] for e in events if _has_logprobs(e)]
        if results:
            candidate["logprobsResult"] = _joined_logprobs(results)
        merged["candidates"] = [candidate]
    return merged


def _logprobs_result(token: str, position: int, top: int) -> dict[str, Any]:
    """One token's ``logprobsResult``, zero values left out as Google does."""
    chosen = _logprob_candidate(token, logprob_of(position))
    result: dict[str, Any] = {"chosenCandidates": [chosen]}
    if top:
        alternatives = [
            _logprob_candidate(f"alt{j}", logprob_of(position) - j) for j in range(1, top)
        ]
        result["topCandidates"] = [{"candidates": [chosen, *alternatives]}]
    if logprob_of(position):
        result["logProbabilitySum"] = logprob_of(position)
    return result


def _logprob_candidate(token: str, logprob: float) -> dict[str, Any]:
    candidate: dict[str, Any] = {"token": token, "tokenId": 1000 + len(token)}
    if logprob:
        candidate["logProbability"] = logprob
    return candidate


def _has_logprobs(event: dict[str, Any]) -> bool:
    return "logprobsResult" in event.get("candidates", [{}])[0]


def _joined_logprobs(results: list[dict[str, Any]]) -> dict[str, Any]:
    joined: dict[str, Any] = {
        "chosenCandidates": [c for r in results for c in r["chosenCandidates"]]
    }
    tops = [c for r in results for c in r.get("topCandidates", [])]
    if tops:
        joined["topCandidates"] = tops
    total = sum(r.get("logProbabilitySum", 0.0) for r in results)
    if total:
        joined["logProbabilitySum"] = total
    return joined


def _top_logprobs(body: dict[str, Any]) -> int | None:
    config = body.get("generationConfig", {})
    if not config.get("responseLogprobs"):
        return None
    top = config.get("logprobs", 0)
    return top if isinstance(top, int) else 0


def _usage(call: _Call, candidates: int = 0, *, thoughts: int = 0) -> dict[str, Any]:
    """usageMetadata with zero counts omitted, as Google sends it."""
    usage: dict[str, Any] = {"promptTokenCount": call.prompt_tokens}
    if candidates:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = call.prompt_tokens + candidates + thoughts
    details = [{"modality": "TEXT", "tokenCount": call.prompt_tokens - call.image_tokens}]
    if call.image_tokens:
        details.append({"modality": "IMAGE", "tokenCount": call.image_tokens})
    usage["promptTokensDetails"] = details
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


# ---------------------------------------------------------------------------------------------
# Bodies and tokens
# ---------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    """``text`` split after each word, spaces kept, so the pieces join back to it."""
    return re.findall(r"\S+\s*", text) or [text]


def _count(text: str) -> int:
    return len(text.split())


def _padded_words(call: _Call, n: int) -> list[str]:
    words = _words("echo: " + call.last_user_text)
    return words + ["more "] * max(n + 1 - len(words), 0)


def _prompt_tokens(body: dict[str, Any]) -> tuple[int, int]:
    """(text tokens, image tokens): one per word of text, a fixed count per inline image."""
    text = images = 0
    sources = [*body["contents"], body.get("systemInstruction") or {}]
    for content in sources:
        for part in content.get("parts", []):
            if "text" in part:
                text += _count(part["text"])
            inline = part.get("inlineData")
            if inline and str(inline.get("mimeType", "")).startswith("image/"):
                images += IMAGE_TOKENS
    return text, images


def _last_user_text(contents: list[dict[str, Any]]) -> str:
    for content in reversed(contents):
        if content["role"] != "user":
            continue
        texts = [p["text"] for p in content["parts"] if "text" in p]
        if texts:
            return " ".join(texts)
    return ""


def _model_object(name: str, display: str, methods: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "version": "001",
        "displayName": display,
        "description": f"{display}, as served by the fake.",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": methods,
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
    }


def _encode(obj: Any) -> bytes:
    return msgspec.json.encode(obj)


def _pretty(obj: Any) -> bytes:
    """Google answers indented JSON."""
    return msgspec.json.format(msgspec.json.encode(obj), indent=2)
