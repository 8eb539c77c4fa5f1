"""The fake OpenAI's Responses API: `POST /v1/responses` (JSON and SSE), stored responses,
`GET`/`DELETE /v1/responses/{id}`, scripted behaviours. xAI serves the same API.

:class:`FakeOpenAI` (``openai_upstream.py``) owns one :class:`FakeResponses` as ``.responses``
and routes the Responses paths to it after the key check, so one fake serves both APIs as OpenAI
does. Queue behaviours with ``fake.responses.enqueue(...)``; with none queued it answers
:class:`TextAnswer` (an echo). Every answer is recorded in the fake's ``sent`` like chat's.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from .asgi_server import Received, ResponseWriter
from .openai_wire import (
    BAD_JSON_MESSAGE,
    ErrorReply,
    Raw,
    common_headers,
    encode,
    json_headers,
    send_error,
    stream_headers,
)
from .responses_events import ResponseBuilder, frame_event, new_id, url_citation
from .responses_input import (
    UNKNOWN_RESPONSES_MODEL,
    as_items,
    echo_source,
    input_words,
    invalid_request,
    parameter_error,
    unanswered_call,
)
from .text import split_evenly, word_count, word_pieces

__all__ = [
    "UNKNOWN_RESPONSES_MODEL",
    "CustomToolCall",
    "CutMidStream",
    "FailMidStream",
    "FakeResponses",
    "FunctionCall",
    "FunctionCalls",
    "ResponsesBehaviour",
    "StoredResponse",
    "TextAnswer",
    "WebSearchAnswer",
    "length_stop",
    "responses_event_stream",
]

ENCRYPTED_PREFIX = "gAAAAAB"  # OpenAI's blobs are Fernet tokens; the fake's look alike

# Runs an answer while watching for the client leaving (FakeOpenAI._answer_watched); True from
# the answer drops the connection.
Watched = Callable[[Callable[[], Awaitable[bool]]], Awaitable[None]]


# ---------------------------------------------------------------------------------------------
# Behaviours
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextAnswer:
    """Answer with a message (the default): `text`, or "echo: " + the last user text (or the
    tool output that follows it); with `reasoning`, a reasoning item summarising it comes first.

    `count_items` appends how many input items the fake saw (after `previous_response_id`
    prepended the stored ones); `incomplete` ("max_output_tokens", "content_filter") ends it
    incomplete; `novel_fields` adds a field nobody knows to the response, every item, part and
    event.
    """

    text: str | None = None
    pieces: int | None = None
    reasoning: str | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int = 0
    count_items: bool = False
    incomplete: str | None = None
    novel_fields: bool = False
    delay_s: float = 0.0
    interval_s: float = 0.0


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """One function call the model makes; its streamed arguments arrive in `fragments`."""

    name: str = "get_weather"
    arguments: str = '{"city":"Paris"}'
    fragments: int = 3


@dataclass(frozen=True, slots=True)
class CustomToolCall:
    """One custom (free-form input) tool call, like Codex's apply_patch; its streamed input
    arrives in `fragments`."""

    name: str = "apply_patch"
    input: str = "*** Begin Patch\n*** End Patch"
    fragments: int = 3


@dataclass(frozen=True, slots=True)
class FunctionCalls:
    """Answer with one or several tool call items, function or custom, in order (after a
    reasoning item if `reasoning`)."""

    calls: tuple[FunctionCall | CustomToolCall, ...] = (FunctionCall(),)
    reasoning: str | None = None
    novel_fields: bool = False


@dataclass(frozen=True, slots=True)
class WebSearchAnswer:
    """A hosted web search (a `web_search_call` item with its own events), then a message whose
    text cites the page with a `url_citation` annotation: what a gateway passes but never models."""

    query: str = "weather in Paris today"
    url: str = "https://weather.example/paris"
    title: str = "Paris weather"
    text: str = "It is sunny in Paris today."
    novel_fields: bool = False


Answer = TextAnswer | FunctionCalls | WebSearchAnswer


@dataclass(frozen=True, slots=True)
class FailMidStream:
    """Stream the first `after_events` events of `answer` (never its terminal one), then
    `response.failed` with `code`, or with `error_event` an `error` event (a failure not tied to
    the response). Not streamed: a 500 server_error."""

    after_events: int = 6
    answer: Answer = field(default_factory=TextAnswer)
    code: str = "server_error"
    message: str = "The server had an error while processing your request. Sorry about that!"
    error_event: bool = False


@dataclass(frozen=True, slots=True)
class CutMidStream:
    """Stream the first `after_events` events of `answer`, then drop the connection (no
    terminal event). Not streamed: promise the whole body by content-length, send half."""

    after_events: int = 6
    answer: Answer = field(default_factory=TextAnswer)


ResponsesBehaviour = Answer | FailMidStream | CutMidStream | ErrorReply | Raw


def length_stop(text: str = "The answer was cut short because") -> TextAnswer:
    """A message cut by `max_output_tokens`: status incomplete, `response.incomplete`."""
    return TextAnswer(text=text, incomplete="max_output_tokens")


def responses_event_stream(*events: dict[str, Any] | bytes, interval_s: float = 0.0) -> Raw:
    """Answer with exactly these events: a dict is framed as OpenAI frames it (`event:` and
    `data:` lines; give its `sequence_number` yourself), bytes go out as they are."""
    parts = tuple(e if isinstance(e, bytes) else frame_event(e) for e in events)
    return Raw(parts, content_type="text/event-stream; charset=utf-8", interval_s=interval_s)


# ---------------------------------------------------------------------------------------------
# The endpoint
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A stored response: the whole input it answered (stored items prepended) and itself."""

    items: list[dict[str, Any]]
    response: dict[str, Any]


@dataclass(slots=True)
class _Create:
    """One create call as the fake understood it."""

    body: dict[str, Any]
    items: list[dict[str, Any]]  # the whole input: stored items first, then this request's
    returned_blobs: list[str]  # encrypted reasoning the client sent back (all issued here)
    stream: bool
    store: bool
    obfuscation: bool
    encrypted_reasoning: bool
    started_at: float = field(default_factory=time.monotonic)


class FakeResponses:
    """The Responses endpoints of the fake OpenAI: scripted answers and stored responses."""

    def __init__(self) -> None:
        self._queue: deque[ResponsesBehaviour] = deque()
        self.stored: dict[str, StoredResponse] = {}  # by response id, while not deleted
        self.inputs: list[list[dict[str, Any]]] = []  # each create's whole input, in order
        self.encrypted_returned: list[str] = []  # issued reasoning blobs sent back in input
        self._issued: set[str] = set()

    def enqueue(self, *behaviours: ResponsesBehaviour) -> None:
        """Use these behaviours, in order, for the next creates; then TextAnswer()."""
        self._queue.extend(behaviours)

    def clear(self) -> None:
        """Forget the behaviours not used yet."""
        self._queue.clear()

    async def handle(self, request: Received, reply: ResponseWriter, watched: Watched) -> None:
        """Answer one request to /v1/responses or /v1/responses/{id} (the key already checked)."""
        method, path = request.method, request.path
        response_id = path.removeprefix("/v1/responses").removeprefix("/")
        if method == "POST" and path == "/v1/responses":
            await self._create(request.body, reply, watched)
        elif response_id and "/" not in response_id and method in ("GET", "DELETE"):
            stored = self.stored.get(response_id)
            if stored is None:
                message = f"Response with id '{response_id}' not found."
                await send_error(reply, ErrorReply(404, message, "invalid_request_error"))
            elif method == "GET":
                await reply.full(200, json_headers(), encode(stored.response))
            else:
                del self.stored[response_id]
                deleted = {"id": response_id, "object": "response", "deleted": True}
                await reply.full(200, json_headers(), encode(deleted))
        else:
            message = f"Invalid URL ({method} {path})"
            await send_error(reply, ErrorReply(404, message, "invalid_request_error"))

    async def _create(self, body: Any, reply: ResponseWriter, watched: Watched) -> None:
        """POST /v1/responses: OpenAI's checks, the stored input prepended, then the answer."""
        call = self._understand(body)
        if isinstance(call, ErrorReply):
            await send_error(reply, call)
            return
        self.inputs.append(call.items)
        self.encrypted_returned.extend(call.returned_blobs)
        behaviour = self._queue.popleft() if self._queue else TextAnswer()
        await watched(partial(self._answer, reply, call, behaviour))

    def _understand(self, body: Any) -> _Create | ErrorReply:
        """The create call, or the 400 OpenAI gives for it."""
        if not isinstance(body, dict):
            return ErrorReply(400, BAD_JSON_MESSAGE, "invalid_request_error")
        items = as_items(body.get("input"))
        error = parameter_error(body, items)
        if error is not None:
            return error
        assert items is not None  # parameter_error refuses an input that is not items
        returned = [
            item
            for item in items
            if item.get("type") == "reasoning" and item.get("encrypted_content") is not None
        ]
        for item in returned:
            if item["encrypted_content"] not in self._issued:
                message = f"The encrypted content for item {item.get('id')} could not be verified."
                return invalid_request(message, None, "invalid_encrypted_content")
        previous = body.get("previous_response_id")
        if previous is not None:
            stored = self.stored.get(previous) if isinstance(previous, str) else None
            if stored is None:
                message = f"Previous response with id '{previous}' not found."
                return invalid_request(
                    message, "previous_response_id", "previous_response_not_found"
                )
            items = [*stored.items, *stored.response["output"], *items]
        call_id = unanswered_call(items)
        if call_id is not None:
            message = f"No tool call found for function call output with call_id {call_id}."
            return invalid_request(message, "input", None)
        options = body.get("stream_options") or {}
        return _Create(
            body=body,
            items=items,
            returned_blobs=[item["encrypted_content"] for item in returned],
            stream=body.get("stream") is True,
            store=body.get("store") is not False,
            obfuscation=options.get("include_obfuscation") is not False,
            encrypted_reasoning="reasoning.encrypted_content" in (body.get("include") or []),
        )

    async def _answer(
        self, reply: ResponseWriter, call: _Create, behaviour: ResponsesBehaviour
    ) -> bool:
        """Answer one create; True means the caller must drop the connection."""
        match behaviour:
            case ErrorReply():
                await send_error(reply, behaviour)
            case Raw(parts=parts, status=status, content_type=content_type, interval_s=interval):
                headers = {**common_headers(call.started_at), "content-type": content_type}
                await reply.start(status, headers)
                for part in parts:
                    await trio.sleep(interval)
                    await reply.write(part)
                await reply.end()
            case FailMidStream(after_events=n, answer=answer, code=code, message=message):
                if not call.stream:
                    await send_error(reply, ErrorReply(500, message, "server_error"))
                    return False
                builder, _ = self._build(call, answer)
                if behaviour.error_event:
                    events = builder.error_after(n, code, message)
                else:
                    events = builder.failed_after(n, {"code": code, "message": message})
                    self._keep(call, events[-1]["response"])
                await _send_events(reply, call, events, 0.0)
            case CutMidStream(after_events=n, answer=answer):
                builder, final = self._build(call, answer)
                reply.finished = True  # the server, not the client, ends this one
                if call.stream:
                    await reply.start(200, stream_headers(call.started_at))
                    for event in builder.events[: min(n, len(builder.events) - 1)]:
                        await reply.write(frame_event(event))
                else:
                    body = encode(final)
                    headers = {**json_headers(call.started_at), "content-length": str(len(body))}
                    await reply.start(200, headers)
                    await reply.write(body[: len(body) // 2])
                return True
            case _:
                delay, interval = (
                    (behaviour.delay_s, behaviour.interval_s)
                    if isinstance(behaviour, TextAnswer)
                    else (0.0, 0.0)
                )
                await trio.sleep(delay)
                builder, final = self._build(call, behaviour)
                self._keep(call, final)
                if call.stream:
                    await _send_events(reply, call, builder.events, interval)
                else:
                    await reply.full(200, json_headers(call.started_at), encode(final))
        return False

    def _keep(self, call: _Create, response: dict[str, Any]) -> None:
        """Store the response unless the request said `store: false`."""
        if call.store:
            self.stored[response["id"]] = StoredResponse(call.items, response)

    def _build(self, call: _Create, answer: Answer) -> tuple[ResponseBuilder, dict[str, Any]]:
        """Build the whole answer: its events and its final response."""
        builder = ResponseBuilder(
            _skeleton(call.body),
            obfuscation=call.obfuscation,
            novel_fields=answer.novel_fields,
        )
        out_words, reasoning_tokens, cached, incomplete = 0, 0, 0, None
        if not isinstance(answer, WebSearchAnswer) and answer.reasoning is not None:
            builder.reasoning([answer.reasoning], self._issue_blob(call))
            reasoning_tokens = word_count(answer.reasoning)
        match answer:
            case TextAnswer():
                text = answer.text
                if text is None:
                    text = "echo: " + echo_source(call.items)
                    if answer.count_items:
                        text += f" ({len(call.items)} input items)"
                pieces = (
                    split_evenly(text, answer.pieces)
                    if answer.pieces is not None
                    else word_pieces(text)
                )
                status = "completed" if answer.incomplete is None else "incomplete"
                builder.message(pieces, status=status, top_logprobs=_top_logprobs(call.body))
                out_words, cached, incomplete = (
                    word_count(text),
                    answer.cached_tokens,
                    answer.incomplete,
                )
                if answer.reasoning_tokens is not None:
                    reasoning_tokens = answer.reasoning_tokens
            case FunctionCalls():
                for tool in answer.calls:
                    if isinstance(tool, CustomToolCall):
                        pieces = split_evenly(tool.input, tool.fragments)
                        builder.custom_tool_call(tool.name, tool.input, pieces)
                        out_words += word_count(tool.input)
                    else:
                        pieces = split_evenly(tool.arguments, tool.fragments)
                        builder.function_call(tool.name, tool.arguments, pieces)
                        out_words += word_count(tool.arguments)
            case WebSearchAnswer():
                include = call.body.get("include") or []
                wants_sources = "web_search_call.action.sources" in include
                builder.web_search(answer.query, [answer.url] if wants_sources else None)
                citation = url_citation(answer.url, answer.title, 0, len(answer.text))
                builder.message(
                    word_pieces(answer.text),
                    annotations=[citation],
                    top_logprobs=_top_logprobs(call.body),
                )
                out_words = word_count(answer.text)
        usage = _usage(
            input_words(call.items, call.body.get("instructions")),
            out_words + reasoning_tokens,
            reasoning_tokens,
            cached,
        )
        final = builder.finish(usage, incomplete)
        return builder, final

    def _issue_blob(self, call: _Create) -> str | None:
        """A new opaque encrypted-reasoning blob when the request asked for one."""
        if not call.encrypted_reasoning:
            return None
        blob = ENCRYPTED_PREFIX + secrets.token_urlsafe(48)
        self._issued.add(blob)
        return blob


async def _send_events(
    reply: ResponseWriter, call: _Create, events: list[dict[str, Any]], interval_s: float
) -> None:
    """Stream the events, one write each, and end the body after the last (no [DONE])."""
    await reply.start(200, stream_headers(call.started_at))
    for event in events[:-1]:
        await trio.sleep(interval_s)
        await reply.write(frame_event(event))
    await trio.sleep(interval_s)
    await reply.end(frame_event(events[-1]))


def _top_logprobs(body: dict[str, Any]) -> int | None:
    """How many alternatives each token's logprobs list, or None when they were not asked for."""
    if "message.output_text.logprobs" not in (body.get("include") or []):
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) else 0


def _usage(input_tokens: int, output_tokens: int, reasoning: int, cached: int) -> dict[str, Any]:
    """The Responses usage object (output tokens include the reasoning tokens)."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def _given(body: dict[str, Any], name: str, default: Any) -> Any:
    """The request's value for `name`, or OpenAI's default when it is absent or null."""
    value = body.get(name)
    return default if value is None else value


def _skeleton(body: dict[str, Any]) -> dict[str, Any]:
    """The response object in progress, echoing the request's settings as OpenAI does."""
    reasoning = _given(body, "reasoning", {})
    text = {"format": {"type": "text"}, "verbosity": "medium", **_given(body, "text", {})}
    tier = _given(body, "service_tier", "auto")
    return {
        "id": new_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": _given(body, "background", False),
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": body["model"],
        "output": [],
        "parallel_tool_calls": _given(body, "parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "prompt_cache_retention": body.get("prompt_cache_retention"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default" if tier == "auto" else tier,
        "store": body.get("store") is not False,
        "temperature": _given(body, "temperature", 1.0),
        "text": text,
        "tool_choice": _given(body, "tool_choice", "auto"),
        "tools": _given(body, "tools", []),
        "top_logprobs": _given(body, "top_logprobs", 0),
        "top_p": _given(body, "top_p", 1.0),
        "truncation": _given(body, "truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": _given(body, "metadata", {}),
    }
