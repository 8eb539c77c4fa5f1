"""What the fake Anthropic answers: scripted behaviours, and the message and SSE events built
from one.

An :class:`Answer` is a sequence of content blocks (text, thinking, redacted thinking,
tool_use, a server-side web search) with its stop reason and cache usage; the builder turns it
into the whole message (JSON answer) and the exact event sequence of reference §5 (streamed
answer): `message_start`, per block `content_block_start` / `…_delta`* / `content_block_stop`
(a `ping` after the first start), `message_delta` with the cumulative usage, `message_stop`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .anthropic_blocks import Signatures
from .anthropic_tokens import json_words
from .anthropic_wire import ErrorReply, Raw, encode, new_id
from .text import split_evenly, word_count, word_pieces

__all__ = [
    "NOVEL_EVENT",
    "NOVEL_FIELD",
    "NOVEL_VALUE",
    "Answer",
    "Behaviour",
    "Block",
    "Built",
    "CutMidStream",
    "FailMidStream",
    "RedactedThinking",
    "StallMidStream",
    "Text",
    "Thinking",
    "ToolUse",
    "WebSearch",
    "build",
    "garbage",
    "max_tokens_stop",
    "refusal",
    "stop_sequence_stop",
    "thinking_answer",
    "tool_use",
    "web_search_answer",
]

NOVEL_FIELD = "fake_novel_field"
NOVEL_VALUE = {"added": "later"}
NOVEL_EVENT = "message_annotation"
DEFAULT_THINKING = "The user wants an answer. Let me think about it step by step."


@dataclass(frozen=True, slots=True)
class Text:
    """A text block: `text`, or (None) "echo: " + the last user text (or tool result); streamed
    one word per `text_delta` unless `pieces` says how many. `citations` (whole citation
    objects) make it start with `"citations": []` and stream one `citations_delta` each."""

    text: str | None = None
    pieces: int | None = None
    citations: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Thinking:
    """A thinking block with a signature the fake issues (and later requires back unchanged)."""

    thinking: str = DEFAULT_THINKING
    pieces: int | None = None


@dataclass(frozen=True, slots=True)
class RedactedThinking:
    """A redacted_thinking block: opaque `data` issued by the fake, whole in its start event."""


@dataclass(frozen=True, slots=True)
class ToolUse:
    """A tool_use block; its input streams as `input_json_delta` pieces: first "", then the
    compact JSON in `fragments` pieces."""

    name: str = "get_weather"
    input: Mapping[str, Any] = field(default_factory=lambda: {"city": "Paris"})
    fragments: int = 3


@dataclass(frozen=True, slots=True)
class WebSearch:
    """A server-side web search: a `server_tool_use` block (input streamed) and its
    `web_search_tool_result` (whole in its start event): what a gateway passes through but
    never models. Counted in `usage.server_tool_use.web_search_requests`."""

    query: str = "weather in Paris today"
    url: str = "https://weather.example/paris"
    title: str = "Paris weather"


Block = Text | Thinking | RedactedThinking | ToolUse | WebSearch


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer (the default: one echo text block, after a thinking block when the request
    turns thinking on).

    `stop_reason` None means `tool_use` when a ToolUse block is present, else `end_turn`;
    `stop_sequence` (for stop_reason "stop_sequence") None means the request's first stop
    sequence. Cache figures are reported on top of the counted input tokens (the fake pretends
    a cached prefix that large). `repeat_input_usage` makes `message_delta.usage` repeat the
    input and cache totals, as newer streams do (a client must overwrite, never add).
    `novel_fields` adds a field nobody knows (NOVEL_FIELD) to the message, every block, delta
    and event, and an event of a type nobody knows (NOVEL_EVENT) after `message_start`: what
    the API may add at any time, and a passthrough must hand on untouched.
    """

    blocks: tuple[Block, ...] = (Text(),)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    stop_details: Mapping[str, Any] | None = None
    cache_read_input_tokens: int = 0
    cache_creation_5m_tokens: int = 0
    cache_creation_1h_tokens: int = 0
    repeat_input_usage: bool = True
    novel_fields: bool = False
    delay_s: float = 0.0
    interval_s: float = 0.0


@dataclass(frozen=True, slots=True)
class FailMidStream:
    """Stream `answer` until `after_deltas` content_block_delta events went out, then an `error`
    event (`error_type`, `message`) and end the body without `message_stop`. Not streamed: the
    error as a JSON answer (529 for overloaded_error, else 500)."""

    after_deltas: int = 2
    answer: Answer = field(default_factory=Answer)
    error_type: str = "overloaded_error"
    message: str = "Overloaded"

    def as_reply(self) -> ErrorReply:
        """The error as a JSON answer, for a call that did not stream."""
        status = 529 if self.error_type == "overloaded_error" else 500
        return ErrorReply(status, self.message, self.error_type)


@dataclass(frozen=True, slots=True)
class CutMidStream:
    """Stream the first `after_events` events of `answer`, then drop the connection (no
    `message_stop`); with `drop_connection` False, end the body cleanly there instead (an
    incomplete stream the SDK does not notice). Not streamed: promise the whole body by
    content-length, send half."""

    after_events: int = 5
    answer: Answer = field(default_factory=Answer)
    drop_connection: bool = True


@dataclass(frozen=True, slots=True)
class StallMidStream:
    """Stream the first `after_events` events of `answer`, send nothing for `seconds`, then the
    rest. Not streamed: wait `seconds`, then answer."""

    after_events: int = 4
    seconds: float = 30.0
    answer: Answer = field(default_factory=Answer)


Behaviour = Answer | FailMidStream | CutMidStream | StallMidStream | ErrorReply | Raw


def thinking_answer(thinking: str = DEFAULT_THINKING, text: str | None = None) -> Answer:
    """A thinking block (signed) and then a text block."""
    return Answer((Thinking(thinking), Text(text)))


def tool_use(
    *calls: ToolUse, thinking: str | None = None, text: str | None = None, redacted: bool = False
) -> Answer:
    """One or several tool_use blocks (default: get_weather for Paris), after an optional
    thinking block (or a redacted one) and an optional text block; stop_reason tool_use."""
    blocks: list[Block] = []
    if thinking is not None:
        blocks.append(Thinking(thinking))
    if redacted:
        blocks.append(RedactedThinking())
    if text is not None:
        blocks.append(Text(text))
    blocks.extend(calls or (ToolUse(),))
    return Answer(tuple(blocks))


def web_search_answer(
    search: WebSearch | None = None, text: str = "It is sunny in Paris today."
) -> Answer:
    """A web search, then a text block citing its result (a `web_search_result_location`)."""
    search = search or WebSearch()
    citation = {
        "type": "web_search_result_location",
        "cited_text": text,
        "url": search.url,
        "title": search.title,
        "encrypted_index": "Eo8BCioIBxgCIiQ0NGFlNjc2Yi05NThmLTRkNzgtYjQ2Zi01MGRhODUxMTUwNDkSDA==",
    }
    return Answer((search, Text(text, citations=(citation,))))


def max_tokens_stop(text: str = "The answer was cut short because") -> Answer:
    """A text block cut by `max_tokens`: stop_reason max_tokens."""
    return Answer((Text(text),), stop_reason="max_tokens")


def stop_sequence_stop(text: str = "Counting: one, two", sequence: str | None = None) -> Answer:
    """A text block ended by a stop sequence (`sequence`, or the request's first)."""
    return Answer((Text(text),), stop_reason="stop_sequence", stop_sequence=sequence)


def refusal(
    text: str = "I can't help with that.", category: str = "cyber", explanation: str | None = None
) -> Answer:
    """A refusal: stop_reason refusal with `stop_details`."""
    details = {
        "type": "refusal",
        "category": category,
        "explanation": explanation or "The request was declined by a safety classifier.",
    }
    return Answer((Text(text),), stop_reason="refusal", stop_details=details)


def garbage(body: bytes = b"<html>oops</html>", status: int = 200) -> Raw:
    """A body that is not the Anthropic protocol."""
    return Raw((body,), status=status, content_type="text/html")


# ---------------------------------------------------------------------------------------------
# Building the message and its events
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Built:
    """One answer built: the whole message, and the stream's events in order."""

    message: dict[str, Any]
    events: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Request:
    """What the builder reads from the request."""

    model: str
    input_tokens: int
    echo: str  # the last user text (or the tool result it answers)
    max_tokens: int
    stop_sequences: tuple[str, ...]
    omit_thinking: bool = False  # thinking.display "omitted": blocks carry only the signature


def build(answer: Answer, request: Request, signatures: Signatures) -> Built:
    """The message and its SSE events for `answer` to `request`."""
    message_id = new_id("msg")
    events: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    output = 0
    searches = 0
    stop_reason, stop_sequence = answer.stop_reason, answer.stop_sequence
    for block in answer.blocks:
        if isinstance(block, Text) and block.text is None:
            text, ended, matched = _echo(request)
            if ended is not None and stop_reason is None:
                stop_reason, stop_sequence = ended, matched
            if not text:
                continue  # max_tokens 0: nothing said
            block = Text(text, block.pieces, block.citations)
        if isinstance(block, Thinking) and request.omit_thinking:
            block = Thinking("", block.pieces)
        for whole, deltas in _block_parts(block, signatures):
            index = len(content)
            start = _start_of(whole)
            events.append({"type": "content_block_start", "index": index, "content_block": start})
            if index == 0:
                events.append({"type": "ping"})
            events.extend(
                {"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas
            )
            events.append({"type": "content_block_stop", "index": index})
            content.append(whole)
            output += _output_tokens(whole)
        searches += isinstance(block, WebSearch)
    output = max(output, 1)
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    if stop_reason != "stop_sequence":
        stop_sequence = None
    elif stop_sequence is None:
        stop_sequence = request.stop_sequences[0] if request.stop_sequences else "###"
    usage = _usage(answer, request.input_tokens, output, searches)
    start_usage = {**usage, "output_tokens": 1}
    start_usage.pop("server_tool_use", None)
    skeleton: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events.insert(0, {"type": "message_start", "message": skeleton})
    delta: dict[str, Any] = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
    if answer.stop_details is not None:
        delta["stop_details"] = dict(answer.stop_details)
    events.append({"type": "message_delta", "delta": delta, "usage": _delta_usage(answer, usage)})
    events.append({"type": "message_stop"})
    message = {**skeleton, "content": content, **delta, "usage": usage}
    if answer.novel_fields:
        _add_novel_fields(message, events)
    return Built(message, events)


def _add_novel_fields(message: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Put NOVEL_FIELD on the message, its blocks, every event and delta, and a NOVEL_EVENT
    after message_start."""
    for obj in [message, *message["content"]]:
        obj[NOVEL_FIELD] = NOVEL_VALUE
    for event in events:
        event[NOVEL_FIELD] = NOVEL_VALUE
        for key in ("message", "content_block", "delta"):
            if isinstance(event.get(key), dict):
                event[key] = {**event[key], NOVEL_FIELD: NOVEL_VALUE}
    events.insert(1, {"type": NOVEL_EVENT, "note": "a new event type"})


def _echo(request: Request) -> tuple[str, str | None, str | None]:
    """The echo text as the model would end it: before the first of the request's stop
    sequences it contains, and within `max_tokens` words; with the stop reason that ended it
    early (None when it ran its course) and the matched stop sequence."""
    text = "echo: " + request.echo
    found = [(text.find(s), s) for s in request.stop_sequences if s in text]
    if found:
        at, sequence = min(found)
        text = text[:at]
    pieces = word_pieces(text)
    if len(pieces) > request.max_tokens:
        return "".join(pieces[: request.max_tokens]), "max_tokens", None
    if found:
        return text, "stop_sequence", sequence
    return text, None, None


def _block_parts(
    block: Block, signatures: Signatures
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The content block(s) `block` makes, each whole and as its deltas."""
    match block:
        case Text(text=text, pieces=pieces, citations=citations):
            assert text is not None
            whole: dict[str, Any] = {"type": "text", "text": text}
            if citations:
                whole["citations"] = [dict(c) for c in citations]
            deltas = [{"type": "citations_delta", "citation": dict(c)} for c in citations]
            deltas += [{"type": "text_delta", "text": p} for p in _pieces(text, pieces)]
            return [(whole, deltas)]
        case Thinking(thinking=thinking, pieces=pieces):
            signature = signatures.sign(thinking)
            whole = {"type": "thinking", "thinking": thinking, "signature": signature}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _pieces(thinking, pieces)]
            deltas.append({"type": "signature_delta", "signature": signature})
            return [(whole, deltas)]
        case RedactedThinking():
            return [({"type": "redacted_thinking", "data": signatures.redact()}, [])]
        case ToolUse(name=name, input=arguments, fragments=fragments):
            whole = {"type": "tool_use", "id": new_id("toolu"), "name": name}
            whole["input"] = dict(arguments)
            return [(whole, _json_deltas(arguments, fragments))]
        case WebSearch(query=query, url=url, title=title):
            call_id = new_id("srvtoolu")
            arguments = {"query": query}
            call: dict[str, Any] = {"type": "server_tool_use", "id": call_id}
            call |= {"name": "web_search", "input": arguments}
            result = {
                "type": "web_search_tool_result",
                "tool_use_id": call_id,
                "content": [
                    {
                        "type": "web_search_result",
                        "title": title,
                        "url": url,
                        "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNj",
                        "page_age": "October 21, 2026",
                    }
                ],
            }
            return [(call, _json_deltas(arguments, 2)), (result, [])]
    raise AssertionError(block)


def _start_of(whole: dict[str, Any]) -> dict[str, Any]:
    """A block as its content_block_start event carries it: empty where deltas fill it."""
    kind = whole["type"]
    if kind == "text":
        return {"type": "text", "text": "", **({"citations": []} if "citations" in whole else {})}
    if kind == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    if kind in ("tool_use", "server_tool_use"):
        return {**whole, "input": {}}
    return whole


def _json_deltas(arguments: Mapping[str, Any], fragments: int) -> list[dict[str, Any]]:
    """A tool input as input_json_delta events: "" first, then the JSON in pieces."""
    text = encode(dict(arguments)).decode()
    return [
        {"type": "input_json_delta", "partial_json": p}
        for p in ["", *split_evenly(text, fragments)]
    ]


def _pieces(text: str, pieces: int | None) -> list[str]:
    """The deltas of a text: one per word, or `pieces` near-equal ones."""
    return split_evenly(text, pieces) if pieces is not None else word_pieces(text)


def _output_tokens(whole: dict[str, Any]) -> int:
    """A block's output tokens (the fake's rule: words; tool inputs as compact JSON)."""
    kind = whole["type"]
    if kind == "text":
        return word_count(whole["text"])
    if kind == "thinking":
        return word_count(whole["thinking"])
    if kind in ("tool_use", "server_tool_use"):
        return json_words(whole["input"])
    return 0


def _usage(answer: Answer, input_tokens: int, output: int, searches: int) -> dict[str, Any]:
    """The message's usage object."""
    usage: dict[str, Any] = {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": answer.cache_creation_5m_tokens
        + answer.cache_creation_1h_tokens,
        "cache_read_input_tokens": answer.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": answer.cache_creation_5m_tokens,
            "ephemeral_1h_input_tokens": answer.cache_creation_1h_tokens,
        },
        "output_tokens": output,
        "service_tier": "standard",
    }
    if searches:
        usage["server_tool_use"] = {"web_search_requests": searches, "web_fetch_requests": 0}
    return usage


def _delta_usage(answer: Answer, usage: dict[str, Any]) -> dict[str, Any]:
    """`message_delta.usage`: cumulative totals (input side repeated when asked)."""
    delta: dict[str, Any] = {}
    if answer.repeat_input_usage:
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            delta[name] = usage[name]
    delta["output_tokens"] = usage["output_tokens"]
    if "server_tool_use" in usage:
        delta["server_tool_use"] = usage["server_tool_use"]
    return delta
