"""A fake Anthropic API upstream: real HTTP on 127.0.0.1, Anthropic's protocol exactly.

Serves `POST /v1/messages` (JSON and SSE, `?beta=true` too), `POST /v1/messages/count_tokens`,
`GET /v1/models` (paged) and `GET /v1/models/{id}`, after Anthropic's header checks: the key in
`x-api-key` or `Authorization: Bearer` (x-api-key wins when both come), `anthropic-version`
required (`2023-06-01` or `2026-10-21`), `anthropic-beta` names in `refused_betas` refused,
bodies over `max_body_bytes` refused (413). `base_url` is "http://127.0.0.1:PORT" (no `/v1`,
as the SDK and the provider expect).

A create is validated as the API validates it (`anthropic_checks.py`, `anthropic_content.py`:
a 400 naming the field path), the model looked up (404 `model: <name>`), and only then the next
queued behaviour taken (`anthropic_answers.py`), so a refused request does not use one up:

    fake.enqueue(tool_use(ToolUse("get_weather", {"city": "Paris"})))   # then the default
    fake.enqueue(thinking_answer("Let me see."), rate_limited("7"), overloaded())
    fake.enqueue(FailMidStream(after_deltas=2), CutMidStream(after_events=5))
    fake.enqueue(Answer(cache_read_input_tokens=1800), web_search_answer(), refusal())
    fake.enqueue_count(2095)                       # count_tokens answers

Unscripted, it answers as Claude would: "echo: " + the last user text (or the tool result it
carries), ended at the request's first stop sequence found in it or cut at `max_tokens` words;
a thinking block first when thinking is on; the forced tool called when `tool_choice` is
any/tool. Thinking signatures and redacted-thinking data it issued are required back unchanged
(`fake.sign(text)` issues one for a hand-built history).

Every request is recorded in `received` (method, path, query, headers, raw bytes, decoded body)
and every answer in `sent` (status, headers, the body bytes in write order), so tests can assert
what a gateway sent upstream and passed on, byte for byte. Token counts follow
`anthropic_tokens.py`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from .anthropic_answers import (
    Answer,
    Behaviour,
    Built,
    CutMidStream,
    FailMidStream,
    RedactedThinking,
    Request,
    StallMidStream,
    Text,
    Thinking,
    ToolUse,
    WebSearch,
    build,
    garbage,
    max_tokens_stop,
    refusal,
    stop_sequence_stop,
    thinking_answer,
    tool_use,
    web_search_answer,
)
from .anthropic_blocks import Signatures
from .anthropic_checks import (
    API_VERSIONS,
    INTERLEAVED_BETA,
    ModelLimits,
    check_count,
    check_create,
    thinking_enabled,
)
from .anthropic_models import MODELS, ModelInfo, models_page
from .anthropic_tokens import input_tokens
from .anthropic_wire import (
    ErrorReply,
    Raw,
    api_error,
    bad_request,
    common_headers,
    encode,
    event_stream,
    frame_event,
    invalid_key,
    json_answer,
    json_headers,
    not_found,
    overloaded,
    parse_event_stream,
    permission_denied,
    rate_limited,
    request_id,
    send_error,
    stream_headers,
)
from .asgi_server import Message, Receive, Received, ResponseWriter, Scope, ScriptedUpstream, Send
from .openai_upstream import Sent

# The behaviours and error replies tests queue are re-exported here, so one import serves.
__all__ = [
    "DEFAULT_API_KEY",
    "MAX_BODY_BYTES",
    "MODELS",
    "Answer",
    "CutMidStream",
    "ErrorReply",
    "FailMidStream",
    "FakeAnthropic",
    "ModelInfo",
    "Raw",
    "RedactedThinking",
    "Sent",
    "StallMidStream",
    "Text",
    "Thinking",
    "ToolUse",
    "WebSearch",
    "api_error",
    "bad_request",
    "event_stream",
    "garbage",
    "invalid_key",
    "json_answer",
    "max_tokens_stop",
    "not_found",
    "overloaded",
    "parse_event_stream",
    "permission_denied",
    "rate_limited",
    "refusal",
    "stop_sequence_stop",
    "thinking_answer",
    "tool_use",
    "web_search_answer",
]

DEFAULT_API_KEY = "sk-ant-api03-upstream-test-key"


MAX_BODY_BYTES = 32 * 1024 * 1024  # the Messages API's request size limit
_NO_KEY = "x-api-key header is required"
_NO_VERSION = "anthropic-version: header is required"


@dataclass(slots=True)
class _Call:
    """One create call as the fake understood it."""

    request: Request
    stream: bool
    req_id: str
    started_at: float


class FakeAnthropic(ScriptedUpstream[Behaviour]):
    """A scripted Anthropic upstream over real HTTP; messages answer an echo when none is queued."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        models: Iterable[ModelInfo] = MODELS,
        refused_betas: Iterable[str] = (),
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        # Newest first, as the API lists them.
        self.models = sorted(models, key=lambda m: m.created_at, reverse=True)
        self.refused_betas = frozenset(refused_betas)
        self.max_body_bytes = max_body_bytes
        self.signatures = Signatures()  # thinking signatures issued, required back unchanged
        self.sent: list[Sent] = []  # every answer as it left (status, headers, body bytes)
        self._counts: deque[int | ErrorReply] = deque()

    def enqueue_count(self, *answers: int | ErrorReply) -> None:
        """Answer the next count_tokens calls with these counts (or errors); then the rule's."""
        self._counts.extend(answers)

    def sign(self, thinking: str) -> str:
        """A signature the fake accepts back for this thinking text (for hand-built histories)."""
        return self.signatures.sign(thinking)

    def find_model(self, name: str) -> ModelInfo | None:
        """The model with this id or alias, or None."""
        return next((m for m in self.models if name in (m.id, m.alias)), None)

    def requests_to(self, path: str) -> list[Received]:
        """The recorded requests to this path (query string aside)."""
        return [r for r in self.received if r.path == path]

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
        """Route one request: key, version and betas first, then the endpoint."""
        refusal = self._header_refusal(request.headers)
        if refusal is not None:
            await send_error(reply, refusal)
            return
        if len(request.raw) > self.max_body_bytes:
            message = (
                f"Request exceeds the maximum allowed number of bytes ({self.max_body_bytes})."
            )
            await send_error(reply, ErrorReply(413, message, "request_too_large"))
            return
        method, path = request.method, request.path
        version = request.headers["anthropic-version"]
        if method == "POST" and path == "/v1/messages":
            await self._create(request, version, reply, receive)
        elif method == "POST" and path == "/v1/messages/count_tokens":
            await self._count(request, version, reply)
        elif method == "GET" and path == "/v1/models":
            page = models_page(self.models, request.query)
            if isinstance(page, str):
                await send_error(reply, bad_request(page))
            else:
                await reply.full(200, json_headers(request_id()), encode(page))
        elif method == "GET" and path.startswith("/v1/models/"):
            model = self.find_model(path.removeprefix("/v1/models/"))
            if model is None:
                await send_error(reply, not_found(path.removeprefix("/v1/models/")))
            else:
                req_id = request_id()
                await reply.full(200, json_headers(req_id), encode(model.as_json()))
        else:
            await send_error(reply, ErrorReply(404, "Not Found", "not_found_error"))

    def _header_refusal(self, headers: dict[str, str]) -> ErrorReply | None:
        """The 401 or 400 Anthropic gives for these headers, or None."""
        key = headers.get("x-api-key")
        if key is None:
            authorization = headers.get("authorization", "")
            if authorization.startswith("Bearer "):
                key = authorization.removeprefix("Bearer ").strip()
        if key is None:
            return ErrorReply(401, _NO_KEY, "authentication_error")
        if key != self.api_key:
            return invalid_key()
        version = headers.get("anthropic-version")
        if version is None:
            return bad_request(_NO_VERSION)
        if version not in API_VERSIONS:
            return bad_request(f"anthropic-version: invalid version {version!r}")
        refused = sorted(_betas(headers) & self.refused_betas)
        if refused:
            names = ", ".join(refused)
            return bad_request(
                f"Unexpected value(s) `{names}` for the `anthropic-beta` header. Please consult "
                "our documentation at docs.claude.com or try again without the header."
            )
        return None

    async def _create(
        self, request: Received, version: str, reply: ResponseWriter, receive: Receive
    ) -> None:
        """POST /v1/messages: the API's checks, then the scripted (or default) answer."""
        body = request.body
        model = self.find_model(body["model"]) if _has_model(body) else None
        limits = None if model is None else ModelLimits(model.max_tokens, model.exclusive_sampling)
        problem = check_create(
            body,
            version=version,
            betas=_betas(request.headers),
            signatures=self.signatures,
            model=limits,
        )
        if problem is not None:
            await send_error(reply, bad_request(problem))
            return
        if model is None:
            await send_error(reply, not_found(body["model"]))
            return
        call = _Call(
            Request(
                model=body["model"],
                input_tokens=input_tokens(body),
                echo=_echo_source(body["messages"]),
                max_tokens=body["max_tokens"],
                stop_sequences=tuple(body.get("stop_sequences") or ()),
                omit_thinking=(body.get("thinking") or {}).get("display") == "omitted",
            ),
            stream=body.get("stream") is True,
            req_id=request_id(),
            started_at=time.monotonic(),
        )
        behaviour = self.next_behaviour(_default_answer(body, _betas(request.headers)))
        await self._answer_watched(reply, receive, partial(self._answer, reply, call, behaviour))

    async def _answer(self, reply: ResponseWriter, call: _Call, behaviour: Behaviour) -> bool:
        """Answer one create call; True means the caller must drop the connection."""
        match behaviour:
            case ErrorReply():
                await send_error(reply, behaviour, call.req_id)
            case Raw(parts=parts, status=status, content_type=content_type, interval_s=interval):
                headers = {**common_headers(call.req_id), "content-type": content_type}
                await reply.start(status, headers)
                for part in parts:
                    await trio.sleep(interval)
                    await reply.write(part)
                await reply.end()
            case FailMidStream(after_deltas=n, answer=answer):
                if not call.stream:
                    await send_error(reply, behaviour.as_reply(), call.req_id)
                    return False
                built = build(answer, call.request, self.signatures)
                events = _until_deltas(built.events, n)
                error = {"type": behaviour.error_type, "message": behaviour.message}
                events.append({"type": "error", "error": error})
                await self._stream(reply, call, events, answer.interval_s)
            case CutMidStream(after_events=n, answer=answer):
                built = build(answer, call.request, self.signatures)
                events = built.events[: min(n, len(built.events) - 1)]
                if call.stream and not behaviour.drop_connection:
                    await self._stream(reply, call, events, answer.interval_s)
                    return False
                reply.finished = True  # the server, not the client, ends this one
                if call.stream:
                    await reply.start(200, stream_headers(call.req_id))
                    for event in events:
                        await reply.write(frame_event(event))
                else:
                    data = encode(built.message)
                    headers = {**json_headers(call.req_id), "content-length": str(len(data))}
                    await reply.start(200, headers)
                    await reply.write(data[: len(data) // 2])
                return True
            case StallMidStream(after_events=n, seconds=seconds, answer=answer):
                built = build(answer, call.request, self.signatures)
                if not call.stream:
                    await trio.sleep(seconds)
                    await _send_message(reply, call, built)
                    return False
                await reply.start(200, stream_headers(call.req_id))
                for i, event in enumerate(built.events[:-1]):
                    if i == n:
                        await trio.sleep(seconds)
                    await reply.write(frame_event(event))
                await reply.end(frame_event(built.events[-1]))
            case Answer():
                await trio.sleep(behaviour.delay_s)
                built = build(behaviour, call.request, self.signatures)
                if call.stream:
                    await self._stream(reply, call, built.events, behaviour.interval_s)
                else:
                    await _send_message(reply, call, built)
        return False

    async def _stream(
        self,
        reply: ResponseWriter,
        call: _Call,
        events: list[dict[str, Any]],
        interval_s: float,
    ) -> None:
        """Send the events, one write each, ending the body with the last."""
        await reply.start(200, stream_headers(call.req_id))
        for event in events[:-1]:
            await trio.sleep(interval_s)
            await reply.write(frame_event(event))
        await trio.sleep(interval_s)
        await reply.end(frame_event(events[-1]))

    async def _count(self, request: Received, version: str, reply: ResponseWriter) -> None:
        """POST /v1/messages/count_tokens: its own field set, then a count (scripted or ruled)."""
        body = request.body
        problem = check_count(body, version=version)
        if problem is not None:
            await send_error(reply, bad_request(problem))
            return
        if self.find_model(body["model"]) is None:
            await send_error(reply, not_found(body["model"]))
            return
        scripted = self._counts.popleft() if self._counts else None
        if isinstance(scripted, ErrorReply):
            await send_error(reply, scripted)
            return
        count = input_tokens(body) if scripted is None else scripted
        await reply.full(200, json_headers(request_id()), encode({"input_tokens": count}))


async def _send_message(reply: ResponseWriter, call: _Call, built: Built) -> None:
    """Send the whole message as a JSON answer."""
    await reply.full(200, json_headers(call.req_id), encode(built.message))


def _until_deltas(events: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The events up to and including the `n`-th content_block_delta (all but the last two, the
    message's end, when there are fewer)."""
    out: list[dict[str, Any]] = []
    seen = 0
    for event in events[:-2]:
        if event["type"] == "content_block_delta":
            if seen == n:
                break
            seen += 1
        out.append(event)
    return out


def _default_answer(body: dict[str, Any], betas: frozenset[str]) -> Answer:
    """What Claude would do unscripted: call the tool a `tool_choice` of any/tool forces, else
    echo, after a thinking block when thinking is on (after tool results only with interleaved
    thinking, as Claude thinks again only then)."""
    choice = body.get("tool_choice") or {}
    if choice.get("type") in ("any", "tool"):
        tools = [t for t in body.get("tools") or [] if "name" in t]
        wanted = choice.get("name", tools[0]["name"] if tools else "")
        tool: dict[str, Any] = next((t for t in tools if t["name"] == wanted), {})
        return Answer((ToolUse(wanted, _sample_input(tool.get("input_schema") or {})),))
    last = body["messages"][-1]
    after_tools = (
        last["role"] == "user"
        and isinstance(last["content"], list)
        and any(block["type"] == "tool_result" for block in last["content"])
    )
    thinks = thinking_enabled(body) and (not after_tools or INTERLEAVED_BETA in betas)
    return Answer((Thinking(), Text())) if thinks else Answer()


def _sample_input(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool input filling the schema's required properties with plain values of their type."""
    samples: dict[Any, Any] = {"string": "sample", "integer": 1, "number": 1.5, "boolean": True}
    properties = schema.get("properties") or {}
    return {
        name: samples.get((properties.get(name) or {}).get("type"))
        for name in schema.get("required") or []
    }


def _betas(headers: dict[str, str]) -> frozenset[str]:
    """The names in the `anthropic-beta` header (repeated headers joined)."""
    raw = headers.get("anthropic-beta", "")
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def _has_model(body: Any) -> bool:
    """Whether the body names a model as a string."""
    return isinstance(body, dict) and isinstance(body.get("model"), str)


def _echo_source(messages: list[dict[str, Any]]) -> str:
    """The last user message's text, or the text of the tool results it carries."""
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            return content
        texts = [b["text"] for b in content if b["type"] == "text"]
        if texts:
            return " ".join(texts)
        results = [_result_text(b.get("content")) for b in content if b["type"] == "tool_result"]
        return " ".join(results)
    return ""


def _result_text(content: Any) -> str:
    """The text of a tool_result's content."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(b["text"] for b in content if b.get("type") == "text")
    return ""
