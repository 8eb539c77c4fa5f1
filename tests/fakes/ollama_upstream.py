"""A fake Ollama server (native API): real HTTP on 127.0.0.1, scripted behaviours.

It speaks ``POST /api/chat`` the way Ollama does (reference §5.1): NDJSON streams of ``done:false``
lines ending with a ``done:true`` metrics line (durations in ns, zero counts omitted), one JSON
object for ``stream:false``, streaming when ``stream`` is missing, whole tool calls with argument
objects, ``thinking``, ``{"error": "..."}`` bodies and a mid-stream error line, top-level
``logprobs`` per line when asked for (since Ollama 0.12.11); and ``GET /api/tags`` in Ollama's
exact shape. ``/api/embed`` (and the legacy ``/api/embeddings``) are served by
``ollama_embeddings.py``; the pulled embedding models are listed by ``/api/tags`` and refuse chat.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import msgspec
import trio

from .asgi_server import Receive, Received, ResponseWriter, ScriptedUpstream
from .ollama_embeddings import embed_answer, not_found_message
from .text import logprob_of, padded_echo, split_evenly, word_count, word_pieces

__all__ = [
    "MAX_TOP_LOGPROBS",
    "MODELS",
    "VERSION",
    "Behaviour",
    "CutStream",
    "ErrorReply",
    "FakeOllama",
    "Garbage",
    "MidStreamError",
    "Received",
    "Reply",
    "Stall",
    "StallMidStream",
    "ToolCalls",
    "logprob_of",
    "not_found_message",
]

VERSION = "0.12.11"  # the first with logprobs
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True, slots=True)
class _Model:
    name: str
    size: int
    digest: str
    family: str
    parameter_size: str
    quantization_level: str
    modified_at: str


MODELS: tuple[_Model, ...] = (
    _Model(
        "llama3.2:latest",
        2019393189,
        "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "llama",
        "3.2B",
        "Q4_K_M",
        "2025-07-01T09:14:05.123456789+02:00",
    ),
    _Model(
        "qwen3:8b",
        5225388164,
        "500a1f067a9f782620b40bee6f7b0c89e17ae61f686b92c24933e4ca4b2b8b41",
        "qwen3",
        "8.2B",
        "Q4_K_M",
        "2025-06-12T17:37:44.706015396+02:00",
    ),
    _Model(
        "nomic-embed-text:latest",
        274302450,
        "0a109f422b47e3a30ba2b10eca18548e944e8a23073ee3f3e947efcf3c45e59f",
        "nomic-bert",
        "137M",
        "F16",
        "2025-05-20T11:02:31.264591127+02:00",
    ),
    _Model(
        "mxbai-embed-large:latest",
        669615493,
        "468836162de7f81e041c43663fedbbba921dcea9b9fefea135685a39b2d83dd8",
        "bert",
        "334M",
        "F16",
        "2025-05-20T11:04:12.981034552+02:00",
    ),
)
# Pulled models that only embed: Ollama refuses to chat with them.
EMBEDDING_ONLY = frozenset({"nomic-embed-text:latest", "mxbai-embed-large:latest"})

_DEFAULT_ERROR_MESSAGES = {
    400: "invalid request",
    401: "unauthorized",
    429: "too many requests, please try again later",
    500: "llama runner process has terminated: exit status 2",
    502: "upstream error: cloud model is unreachable",
}


# ---------------------------------------------------------------------------------------------
# Behaviours
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer normally (the default): `text`, or "echo: " + the last user message.

    `thinking` streams first (as Ollama's `message.thinking`); `prompt_cached` drops
    `prompt_eval_count` from the final line, as Ollama's omitempty does when the prompt was cached.
    """

    text: str | None = None
    thinking: str | None = None
    chunks: int | None = None
    done_reason: str = "stop"
    prompt_cached: bool = False
    delay_s: float = 0.0
    chunk_interval_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """Answer with whole tool calls (arguments as objects) on one `done:false` line."""

    calls: tuple[tuple[str, dict[str, Any]], ...] = (("get_weather", {"city": "Paris"}),)
    text: str = ""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Answer `{"error": message}` with `status` (or `raw_body` verbatim)."""

    status: int
    message: str | None = None
    raw_body: bytes | None = None
    content_type: str = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True)
class MidStreamError:
    """Stream `after_chunks` content lines, then an `{"error": ...}` line; the status stays 200.

    With `one_write` the content lines and the error line leave in one write, so the gateway
    reads them together.
    """

    after_chunks: int = 2
    message: str = "an error was encountered while running the model: unexpected EOF"
    one_write: bool = False


@dataclass(frozen=True, slots=True)
class CutStream:
    """Start a 200 answer, send `after_chunks` content lines, then drop the connection."""

    after_chunks: int = 2


@dataclass(frozen=True, slots=True)
class Garbage:
    """Answer with a body that is not Ollama's protocol."""

    body: bytes = b"<html>oops</html>"
    status: int = 200
    content_type: str = "text/html"


@dataclass(frozen=True, slots=True)
class Stall:
    """Send nothing for `seconds`, then answer like Reply()."""

    seconds: float


@dataclass(frozen=True, slots=True)
class StallMidStream:
    """Stream `after_chunks` content lines, stall for `seconds`, then finish like Reply()."""

    after_chunks: int = 1
    seconds: float = 30.0


Behaviour = (
    Reply | ToolCalls | ErrorReply | MidStreamError | CutStream | Garbage | Stall | StallMidStream
)


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """Per-request data shared by the response writers."""

    model: str  # as the client named it: Ollama echoes that, not the resolved tag
    stream: bool
    prompt_tokens: int
    last_user_text: str
    started_ns: int = field(default_factory=time.perf_counter_ns)
    top_logprobs: int | None = None  # None: logprobs not asked for; else alternatives per token


class FakeOllama(ScriptedUpstream[Behaviour]):
    """A scripted Ollama server over real HTTP; chat calls answer Reply() when none is queued."""

    url_suffix = ""  # base_url is "http://127.0.0.1:PORT" once running (Ollama has no /v1 here)

    def __init__(self, *, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key  # when set, a Bearer key is required (a proxy in front of Ollama)

    async def _handle(self, request: Received, reply: ResponseWriter, receive: Receive) -> None:
        """Route one request: the optional key first, then chat, tags, version and the root."""
        method, path = request.method, request.path
        authorization = request.headers.get("authorization")
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            await _send_error(reply, ErrorReply(401))
        elif method == "POST" and path == "/api/chat":
            await self._chat(reply, receive, request.raw, request.body)
        elif method == "POST" and path in ("/api/embed", "/api/embeddings"):
            await self._embed(reply, receive, path, request.raw, request.body)
        elif method == "GET" and path == "/api/tags":
            await reply.full(200, _JSON, _encode({"models": [_tag(m) for m in MODELS]}))
        elif method == "GET" and path == "/api/version":
            await reply.full(200, _JSON, _encode({"version": VERSION}))
        elif method in ("GET", "HEAD") and path == "/":
            await reply.full(200, _TEXT, b"Ollama is running")
        else:
            # Ollama's router answers unknown routes (including /v1 typos) in plain text.
            await reply.full(404, _TEXT, b"404 page not found")

    async def _chat(self, reply: ResponseWriter, receive: Receive, raw: bytes, body: Any) -> None:
        """Handle POST /api/chat: validate like Ollama, pick a behaviour, answer it."""
        if not raw:
            await _send_error(reply, ErrorReply(400, "missing request body"))
            return
        if not isinstance(body, dict):
            message = "invalid character looking for beginning of value"
            await _send_error(reply, ErrorReply(400, message))
            return
        model = body.get("model")
        if not isinstance(model, str) or not model:
            await _send_error(reply, ErrorReply(400, "model is required"))
            return
        pulled = _resolve(model)
        if pulled is None:
            await _send_error(reply, ErrorReply(404, not_found_message(model)))
            return
        if pulled.name in EMBEDDING_ONLY:
            await _send_error(reply, ErrorReply(400, f'"{model}" does not support chat'))
            return
        messages = body.get("messages") or []
        if not messages:
            # Ollama answers an empty conversation by loading the model, in one JSON object.
            line = _line(model, {"role": "assistant", "content": ""}, done=True)
            line["done_reason"] = "load"
            await reply.full(200, _JSON, _encode(line))
            return
        top = body.get("top_logprobs", 0)
        if not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
            message = f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}"
            await _send_error(reply, ErrorReply(400, message))
            return
        call = _Call(
            model=model,
            # Ollama streams unless told not to.
            stream=body.get("stream", True) is not False,
            prompt_tokens=sum(word_count(_text(m)) for m in messages if isinstance(m, dict)),
            last_user_text=_last_user_text(messages),
            top_logprobs=top if body.get("logprobs") is True else None,
        )
        behaviour = self.next_behaviour(Reply())
        await self._answer_watched(reply, receive, partial(_answer, reply, call, behaviour))

    async def _embed(
        self, reply: ResponseWriter, receive: Receive, path: str, raw: bytes, body: Any
    ) -> None:
        """Handle /api/embed and the legacy /api/embeddings (ollama_embeddings.py): validate
        like Ollama, answer the next behaviour."""
        answer = embed_answer(path, raw, body, _pulled_name)
        if isinstance(answer, tuple):
            await _send_error(reply, ErrorReply(*answer))
            return
        behaviour = self.next_behaviour(Reply())
        await self._answer_watched(reply, receive, partial(_answer_embed, reply, answer, behaviour))


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


async def _answer_embed(
    reply: ResponseWriter, answer: dict[str, Any], behaviour: Behaviour
) -> bool:
    """Answer one embed call: the vectors (after Reply's delay or a Stall), or the scripted
    failure (chat-only behaviours answer normally); True means drop the connection."""
    body = _encode(answer)
    match behaviour:
        case Reply(delay_s=seconds) | Stall(seconds=seconds):
            await trio.sleep(seconds)
        case ErrorReply():
            await _send_error(reply, behaviour)
            return False
        case Garbage(body=garbage, status=status, content_type=content_type):
            await reply.full(status, {"content-type": content_type}, garbage)
            return False
        case CutStream():
            reply.finished = True  # the server, not the client, ends this one
            await reply.start(200, {**_JSON, "content-length": str(len(body))})
            await reply.write(body[: len(body) // 2])
            return True
    await reply.full(200, _JSON, body)
    return False


async def _answer(reply: ResponseWriter, call: _Call, behaviour: Behaviour) -> bool:
    """Answer one chat call; True means the caller must drop the connection."""
    match behaviour:
        case Reply():
            await trio.sleep(behaviour.delay_s)
            await _answer_text(reply, call, behaviour)
        case Stall(seconds=seconds):
            await trio.sleep(seconds)
            await _answer_text(reply, call, Reply())
        case ToolCalls():
            await _answer_tool_calls(reply, call, behaviour)
        case ErrorReply():
            await _send_error(reply, behaviour)
        case Garbage(body=body, status=status, content_type=content_type):
            await reply.full(status, {"content-type": content_type}, body)
        case CutStream(after_chunks=n):
            await _answer_cut(reply, call, n)
            return True
        case MidStreamError(after_chunks=n, message=message, one_write=one_write):
            if not call.stream:
                await _send_error(reply, ErrorReply(500, message))
            else:
                await reply.start(200, _NDJSON)
                pieces = padded_echo(call.last_user_text, n)[:n]
                lines = [_ndjson(_line(call.model, _message(piece))) for piece in pieces]
                lines.append(_ndjson({"error": message}))
                if one_write:
                    lines = [b"".join(lines)]
                for line in lines[:-1]:
                    await reply.write(line)
                await reply.end(lines[-1])
        case StallMidStream(after_chunks=n, seconds=seconds):
            if not call.stream:
                await trio.sleep(seconds)
                await _answer_text(reply, call, Reply())
            else:
                pieces = padded_echo(call.last_user_text, n)
                await reply.start(200, _NDJSON)
                for i, piece in enumerate(pieces):
                    if i == n:
                        await trio.sleep(seconds)
                    await reply.write(_ndjson(_line(call.model, _message(piece))))
                done = _done_line(call, "stop", word_count("".join(pieces)), cached=False)
                await reply.end(_ndjson(done))
    return False


async def _answer_text(reply: ResponseWriter, call: _Call, behaviour: Reply) -> None:
    """Answer with text (and optional thinking), streamed as NDJSON or as one object."""
    text = behaviour.text if behaviour.text is not None else "echo: " + call.last_user_text
    thinking = behaviour.thinking or ""
    eval_count = word_count(text) + word_count(thinking)
    if not call.stream:
        message = _message(text)
        if thinking:
            message["thinking"] = thinking
        final = _done_line(call, behaviour.done_reason, eval_count, behaviour.prompt_cached)
        final["message"] = message
        if call.top_logprobs is not None:
            final["logprobs"] = [
                _logprob(piece, i, call.top_logprobs) for i, piece in enumerate(word_pieces(text))
            ]
        await reply.full(200, _JSON, _encode(final))
        return
    await reply.start(200, _NDJSON)
    for piece in word_pieces(thinking):
        await trio.sleep(behaviour.chunk_interval_s)
        await reply.write(_ndjson(_line(call.model, _message("", thinking=piece))))
    pieces = (
        split_evenly(text, behaviour.chunks) if behaviour.chunks is not None else word_pieces(text)
    )
    for i, piece in enumerate(pieces):
        await trio.sleep(behaviour.chunk_interval_s)
        line = _line(call.model, _message(piece))
        if call.top_logprobs is not None:
            line["logprobs"] = [_logprob(piece, i, call.top_logprobs)]
        await reply.write(_ndjson(line))
    done = _done_line(call, behaviour.done_reason, eval_count, behaviour.prompt_cached)
    await reply.end(_ndjson(done))


def _logprob(token: str, position: int, top: int) -> dict[str, Any]:
    """One token's entry of ``logprobs``, with Go's omitempty (no empty bytes or alternatives)."""
    entry: dict[str, Any] = {"token": token, "logprob": logprob_of(position)}
    if token:
        entry["bytes"] = list(token.encode())
    alternatives = [
        {"token": f"alt{j}", "logprob": logprob_of(position) - j, "bytes": list(f"alt{j}".encode())}
        for j in range(1, top)
    ]
    if top:
        entry["top_logprobs"] = [dict(entry), *alternatives]
    return entry


async def _answer_tool_calls(reply: ResponseWriter, call: _Call, tools: ToolCalls) -> None:
    """Answer with whole tool calls: Ollama sends them on one done:false line, then stop."""
    tool_calls = [
        {"function": {"index": i, "name": name, "arguments": arguments}}
        for i, (name, arguments) in enumerate(tools.calls)
    ]
    # About four characters of arguments per token, like a real tokenizer on JSON.
    eval_count = word_count(tools.text) + sum(len(_encode(a)) // 4 + 1 for _, a in tools.calls)
    message = _message(tools.text)
    message["tool_calls"] = tool_calls
    if not call.stream:
        final = _done_line(call, "stop", eval_count, cached=False)
        final["message"] = message
        await reply.full(200, _JSON, _encode(final))
        return
    await reply.start(200, _NDJSON)
    await reply.write(_ndjson(_line(call.model, message)))
    await reply.end(_ndjson(_done_line(call, "stop", eval_count, cached=False)))


async def _answer_cut(reply: ResponseWriter, call: _Call, after_chunks: int) -> None:
    """Send part of an answer; the caller then drops the connection mid-body."""
    reply.finished = True  # the server, not the client, ends this one
    if call.stream:
        await reply.start(200, _NDJSON)
        for piece in padded_echo(call.last_user_text, after_chunks)[:after_chunks]:
            await reply.write(_ndjson(_line(call.model, _message(piece))))
        return
    # Non-stream: promise a full JSON body by content-length, then deliver only half of it.
    text = "echo: " + call.last_user_text
    final = _done_line(call, "stop", word_count(text), cached=False)
    final["message"] = _message(text)
    body = _encode(final)
    await reply.start(200, {**_JSON, "content-length": str(len(body))})
    await reply.write(body[: len(body) // 2])


async def _send_error(reply: ResponseWriter, error: ErrorReply) -> None:
    """Send Ollama's error body `{"error": "<string>"}` (or the raw body verbatim)."""
    if error.raw_body is not None:
        body = error.raw_body
    else:
        message = error.message or _DEFAULT_ERROR_MESSAGES.get(error.status, "error")
        body = _encode({"error": message})
    await reply.full(error.status, {"content-type": error.content_type}, body)


# ---------------------------------------------------------------------------------------------
# Lines, models, tokens
# ---------------------------------------------------------------------------------------------

_JSON = {"content-type": "application/json; charset=utf-8"}
_NDJSON = {"content-type": "application/x-ndjson"}
_TEXT = {"content-type": "text/plain; charset=utf-8"}


def _message(content: str, *, thinking: str | None = None) -> dict[str, Any]:
    """An assistant message of a line."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return message


def _line(model: str, message: dict[str, Any], *, done: bool = False) -> dict[str, Any]:
    """One line of a chat answer."""
    return {"model": model, "created_at": _now(), "message": message, "done": done}


def _done_line(call: _Call, done_reason: str, eval_count: int, cached: bool) -> dict[str, Any]:
    """The final line: done_reason and metrics, durations in nanoseconds, zero counts omitted."""
    total = max(time.perf_counter_ns() - call.started_ns, 1_000)
    line = _line(call.model, _message(""), done=True)
    line["done_reason"] = done_reason
    line["total_duration"] = total
    line["load_duration"] = total // 10
    if not cached:  # Go's omitempty: a cached prompt evaluated nothing, so both fields vanish
        line["prompt_eval_count"] = call.prompt_tokens
        line["prompt_eval_duration"] = total // 5
    if eval_count:
        line["eval_count"] = eval_count
        line["eval_duration"] = total // 2
    return line


def _tag(model: _Model) -> dict[str, Any]:
    """One entry of GET /api/tags, in Ollama's exact shape."""
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": model.modified_at,
        "size": model.size,
        "digest": model.digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": model.family,
            "families": [model.family],
            "parameter_size": model.parameter_size,
            "quantization_level": model.quantization_level,
        },
    }


def _resolve(name: str) -> _Model | None:
    """The pulled model a name means; no tag means ":latest", as in Ollama."""
    full = name if ":" in name else name + ":latest"
    return next((m for m in MODELS if m.name == full), None)


def _pulled_name(name: str) -> str | None:
    """The full name of the pulled model a name means, or None."""
    pulled = _resolve(name)
    return None if pulled is None else pulled.name


def _now() -> str:
    """Ollama's created_at: RFC 3339 with nanoseconds, UTC."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}123Z"


def _encode(obj: Any) -> bytes:
    """Compact JSON."""
    return msgspec.json.encode(obj)


def _ndjson(obj: Any) -> bytes:
    """One NDJSON line."""
    return _encode(obj) + b"\n"


def _text(message: Mapping[str, Any]) -> str:
    """All text of one message: a string content (Ollama has no parts)."""
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _last_user_text(messages: list[Any]) -> str:
    """Text of the last user message, or "" if there is none."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message)
    return ""
