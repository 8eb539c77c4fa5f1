"""A Responses API answer as OpenAI builds it: output items and the SSE event sequence (pure).

One :class:`ResponseBuilder` per answer. Its methods add output items in order and record the
events a stream would carry (``sequence_number`` from 0); the final response object is what a
non-streamed call answers and what ``response.completed`` carries, so both forms always agree.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

import msgspec

from .openai_wire import encode, random_id
from .text import expected_logprobs, word_pieces

__all__ = [
    "NOVEL_FIELD",
    "NOVEL_VALUE",
    "ResponseBuilder",
    "frame_event",
    "new_id",
    "parse_event_stream",
    "url_citation",
]

# A field no client or gateway knows, added everywhere when a behaviour asks for it, to prove a
# relay keeps what it does not model.
NOVEL_FIELD = "fake_future_field"
NOVEL_VALUE: dict[str, Any] = {"kept": [1, "two", None], "nested": {"x": 0.5}}


def new_id(prefix: str) -> str:
    """An OpenAI-style id with its kind prefix: resp_, msg_, rs_, fc_, ctc_, ws_, call_."""
    return f"{prefix}_" + random_id(32 if prefix != "call" else 24)


def frame_event(event: dict[str, Any]) -> bytes:
    """One SSE event as OpenAI frames it: `event: <type>`, `data: <one-line JSON>`, blank line."""
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + encode(event) + b"\n\n"


def parse_event_stream(raw: bytes) -> list[dict[str, Any]]:
    """The events of a Responses SSE body, checked against OpenAI's framing: each one exactly
    `event: <type>` and `data: <one-line JSON object>` repeating that type, then a blank line;
    `sequence_number` 0, 1, 2, …; no `[DONE]`; nothing after the last whole event. A ValueError
    names the first break (for the fake's own streams and for a gateway's alike)."""
    if b"[DONE]" in raw:
        raise ValueError("a Responses stream has no [DONE]")
    if not raw.endswith(b"\n\n"):
        raise ValueError(f"the body does not end with a whole event: {raw[-80:]!r}")
    events: list[dict[str, Any]] = []
    for block in raw.split(b"\n\n")[:-1]:
        lines = block.split(b"\n")
        if len(lines) != 2 or not lines[0].startswith(b"event: "):
            raise ValueError(f"not an event: line then a data: line: {block[:120]!r}")
        if not lines[1].startswith(b"data: "):
            raise ValueError(f"no data: line: {block[:120]!r}")
        try:
            event = msgspec.json.decode(lines[1].removeprefix(b"data: "))
        except msgspec.DecodeError as error:
            raise ValueError(f"data is not JSON: {lines[1][:120]!r}") from error
        kind = lines[0].removeprefix(b"event: ").decode()
        if not isinstance(event, dict) or event.get("type") != kind:
            raise ValueError(f"the data does not repeat the event type {kind!r}")
        if event.get("sequence_number") != len(events):
            number = event.get("sequence_number")
            raise ValueError(f"sequence_number {number} where {len(events)} was due ({kind})")
        events.append(event)
    return events


def url_citation(url: str, title: str, start: int, end: int) -> dict[str, Any]:
    """An `output_text` annotation citing a web page for the text between two indices."""
    return {
        "type": "url_citation",
        "start_index": start,
        "end_index": end,
        "title": title,
        "url": url,
    }


class ResponseBuilder:
    """Builds one response: its output items and the event sequence that streams them."""

    def __init__(
        self, skeleton: dict[str, Any], *, obfuscation: bool, novel_fields: bool = False
    ) -> None:
        self._skeleton = skeleton  # the response object's echoed settings, status in_progress
        self._obfuscation = obfuscation
        self._novel = novel_fields
        self.events: list[dict[str, Any]] = []
        self.output: list[dict[str, Any]] = []
        self.emit("response.created", response=self.response("in_progress"))
        self.emit("response.in_progress", response=self.response("in_progress"))

    def response(
        self,
        status: str,
        *,
        output: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        incomplete_reason: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The response object in this state (a deep copy: events never share parts)."""
        body = copy.deepcopy(self._skeleton)
        body |= {
            "status": status,
            "output": copy.deepcopy(output or []),
            "usage": usage,
            "error": error,
            "incomplete_details": None
            if incomplete_reason is None
            else {"reason": incomplete_reason},
        }
        if status in ("completed", "incomplete", "failed"):
            body["completed_at"] = int(time.time()) if status == "completed" else None
        if self._novel:
            body[NOVEL_FIELD] = copy.deepcopy(NOVEL_VALUE)
        return body

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Record one event: its type, the next sequence number, its fields."""
        event: dict[str, Any] = {"type": kind, "sequence_number": len(self.events), **fields}
        if self._novel:
            event[NOVEL_FIELD] = copy.deepcopy(NOVEL_VALUE)
        self.events.append(event)
        return event

    def _delta(self, kind: str, **fields: Any) -> None:
        """A delta event: with OpenAI's random `obfuscation` padding unless it was turned off."""
        if self._obfuscation:
            fields["obfuscation"] = secrets.token_urlsafe(secrets.randbelow(12) + 1)
        self.emit(kind, **fields)

    def _item(self, item: dict[str, Any]) -> dict[str, Any]:
        """An output item (with the novel field when asked)."""
        if self._novel:
            item[NOVEL_FIELD] = copy.deepcopy(NOVEL_VALUE)
        return item

    def _added(self, item: dict[str, Any]) -> int:
        """Announce a new output item; its output index."""
        index = len(self.output)
        self.output.append(item)
        self.emit("response.output_item.added", output_index=index, item=copy.deepcopy(item))
        return index

    def _done(self, index: int, item: dict[str, Any]) -> None:
        """Finish an output item: the complete item replaces the announced one."""
        self.output[index] = item
        self.emit("response.output_item.done", output_index=index, item=copy.deepcopy(item))

    def reasoning(self, summary: list[str], encrypted_content: str | None) -> None:
        """A reasoning item whose summary parts stream word by word."""
        item_id = new_id("rs")
        index = self._added(self._item({"id": item_id, "type": "reasoning", "summary": []}))
        parts = []
        for summary_index, text in enumerate(summary):
            where = {"item_id": item_id, "output_index": index, "summary_index": summary_index}
            empty = {"type": "summary_text", "text": ""}
            self.emit("response.reasoning_summary_part.added", **where, part=empty)
            for piece in word_pieces(text):
                self._delta("response.reasoning_summary_text.delta", **where, delta=piece)
            self.emit("response.reasoning_summary_text.done", **where, text=text)
            part = {"type": "summary_text", "text": text}
            self.emit("response.reasoning_summary_part.done", **where, part=part)
            parts.append(part)
        item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": parts}
        if encrypted_content is not None:
            item["encrypted_content"] = encrypted_content
        self._done(index, self._item(item))

    def message(
        self,
        pieces: list[str],
        *,
        annotations: list[dict[str, Any]] | None = None,
        status: str = "completed",
        top_logprobs: int | None = None,
    ) -> None:
        """An assistant message with one output_text part streamed in these pieces (each piece
        a token with its log probability and `top_logprobs` alternatives when that is given)."""
        logprobs = [] if top_logprobs is None else expected_logprobs(pieces, 0, top_logprobs)
        item_id = new_id("msg")
        added = {
            "id": item_id,
            "type": "message",
            "status": "in_progress",
            "content": [],
            "role": "assistant",
        }
        index = self._added(self._item(added))
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        self.emit("response.content_part.added", **where, part=self._item(empty))
        for i, piece in enumerate(pieces):
            piece_logprobs = logprobs[i : i + 1]
            self._delta("response.output_text.delta", **where, delta=piece, logprobs=piece_logprobs)
        for annotation_index, annotation in enumerate(annotations or []):
            self.emit(
                "response.output_text.annotation.added",
                **where,
                annotation_index=annotation_index,
                annotation=annotation,
            )
        text = "".join(pieces)
        self.emit("response.output_text.done", **where, text=text, logprobs=logprobs)
        part = {
            "type": "output_text",
            "annotations": list(annotations or []),
            "logprobs": logprobs,
            "text": text,
        }
        self.emit("response.content_part.done", **where, part=self._item(part))
        done = {**added, "status": status, "content": [self._item(copy.deepcopy(part))]}
        self._done(index, self._item(done))

    def function_call(self, name: str, arguments: str, fragments: list[str]) -> str:
        """A function call item (`call_id` for the client's answer, `fc_` item id); its call_id."""
        item_id, call_id = new_id("fc"), new_id("call")
        added = {
            "id": item_id,
            "type": "function_call",
            "status": "in_progress",
            "arguments": "",
            "call_id": call_id,
            "name": name,
        }
        index = self._added(self._item(added))
        where = {"item_id": item_id, "output_index": index}
        for fragment in fragments:
            self._delta("response.function_call_arguments.delta", **where, delta=fragment)
        self.emit("response.function_call_arguments.done", **where, arguments=arguments)
        self._done(index, self._item({**added, "status": "completed", "arguments": arguments}))
        return call_id

    def custom_tool_call(self, name: str, tool_input: str, fragments: list[str]) -> str:
        """A custom tool call item (free-form `input`, `ctc_` item id); its call_id."""
        item_id, call_id = new_id("ctc"), new_id("call")
        added = {
            "id": item_id,
            "type": "custom_tool_call",
            "status": "in_progress",
            "call_id": call_id,
            "input": "",
            "name": name,
        }
        index = self._added(self._item(added))
        where = {"item_id": item_id, "output_index": index}
        for fragment in fragments:
            self._delta("response.custom_tool_call_input.delta", **where, delta=fragment)
        self.emit("response.custom_tool_call_input.done", **where, input=tool_input)
        self._done(index, self._item({**added, "status": "completed", "input": tool_input}))
        return call_id

    def web_search(self, query: str, sources: list[str] | None) -> None:
        """A built-in web_search_call item with its in_progress/searching/completed events."""
        item_id = new_id("ws")
        action: dict[str, Any] = {"type": "search", "query": query}
        added = {
            "id": item_id,
            "type": "web_search_call",
            "status": "in_progress",
            "action": action,
        }
        index = self._added(self._item(added))
        where = {"item_id": item_id, "output_index": index}
        for phase in ("in_progress", "searching", "completed"):
            self.emit(f"response.web_search_call.{phase}", **where)
        if sources is not None:
            action = {**action, "sources": [{"type": "url", "url": url} for url in sources]}
        self._done(index, self._item({**added, "status": "completed", "action": action}))

    def finish(self, usage: dict[str, Any], incomplete_reason: str | None = None) -> dict[str, Any]:
        """End with `response.completed` (or `response.incomplete`); the final response."""
        status = "completed" if incomplete_reason is None else "incomplete"
        final = self.response(
            status, output=self.output, usage=usage, incomplete_reason=incomplete_reason
        )
        self.emit(f"response.{status}", response=final)
        return final

    def failed_after(self, count: int, error: dict[str, Any]) -> list[dict[str, Any]]:
        """The first `count` events (never the terminal one), then `response.failed` carrying
        the items finished so far."""
        events = self.events[: min(count, len(self.events) - 1)]
        finished = [e["item"] for e in events if e["type"] == "response.output_item.done"]
        failed = self.response("failed", output=finished, error=error)
        terminal: dict[str, Any] = {
            "type": "response.failed",
            "sequence_number": len(events),
            "response": failed,
        }
        return [*events, terminal]

    def error_after(self, count: int, code: str, message: str) -> list[dict[str, Any]]:
        """The first `count` events (never the terminal one), then an `error` event."""
        events = self.events[: min(count, len(self.events) - 1)]
        error = {
            "type": "error",
            "sequence_number": len(events),
            "code": code,
            "message": message,
            "param": None,
        }
        return [*events, error]
