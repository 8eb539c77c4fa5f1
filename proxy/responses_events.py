"""A chat chunk stream as the Responses API's SSE event sequence (responses-api.md §6, §8).

Each event leaves framed as bytes (``event: <type>`` then ``data: <compact JSON>``) with a
``sequence_number`` counted from 0. Items open as their first delta arrives and close with their
``…done`` events when the next kind starts (reasoning, then the message, then the function
calls), as OpenAI orders them; the function calls of one turn stay open together, since a chat
upstream may interleave their fragments by ``index``. The response object the last event
carries is the one :func:`proxy.responses_from_chat.response_object` builds for the same answer
not streamed, when the deltas come in that order (every upstream sends them so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.chat import ChatChunk, ToolCallDelta, Usage
from proxy.errors import GatewayError
from proxy.responses_from_chat import (
    build_response,
    function_call_item,
    message_item,
    new_item_id,
    outcome,
    output_logprobs,
    output_text_part,
    reasoning_item,
    refusal_part,
    response_usage,
    unique_call_id,
)

_encode = msgspec.json.Encoder().encode


class _Reasoning:
    """The open reasoning item: its summary text so far."""

    def __init__(self, item_id: str, output_index: int) -> None:
        self.item_id = item_id
        self.output_index = output_index
        self.text: list[str] = []


class _Message:
    """The open message item: its closed parts and the one being written."""

    def __init__(self, item_id: str, output_index: int) -> None:
        self.item_id = item_id
        self.output_index = output_index
        self.parts: list[dict[str, Any]] = []
        self.kind: str | None = None  # "output_text" or "refusal": the open part's
        self.text: list[str] = []
        self.logprobs: list[dict[str, Any]] = []

    def open_part(self, kind: str) -> None:
        """Start a part of ``kind`` (the last one must be closed)."""
        self.kind = kind

    def close_part(self, part: dict[str, Any]) -> None:
        """Keep the finished ``part`` and clear the one being written."""
        self.parts.append(part)
        self.kind = None
        self.text = []
        self.logprobs = []


class _Call:
    """An open function call item."""

    def __init__(self, item_id: str, output_index: int, call_id: str, name: str) -> None:
        self.item_id = item_id
        self.output_index = output_index
        self.call_id = call_id
        self.name = name
        self.arguments: list[str] = []

    def name_late(self, name: str) -> None:
        """Take the function's name from a fragment after the first (the first lacked it)."""
        if not self.name:
            self.name = name


class ResponseEventStream:
    """Turns one chat chunk stream into the Responses SSE events, and keeps the final response."""

    def __init__(
        self, body: Mapping[str, Any], *, response_id: str, created_at: int, model: str
    ) -> None:
        self._body = body
        self._response_id = response_id
        self._created_at = created_at
        self._model = model
        self._sequence = 0
        self._events: list[bytes] = []
        self._output: list[dict[str, Any]] = []
        self._reasoning: _Reasoning | None = None
        self._message: _Message | None = None
        self._calls: dict[int, _Call] = {}
        self._call_ids: set[str] = set()
        self._usage: Usage | None = None
        self._finish_reason: str | None = None
        self._started = False
        self._final: dict[str, Any] | None = None

    @property
    def response(self) -> dict[str, Any]:
        """The final response object once the stream finished or failed (for storing); before
        that, the response as it stands (status ``in_progress``)."""
        if self._final is not None:
            return self._final
        return self._snapshot("in_progress", [])

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress`` (the other calls start a stream
        not yet started, their events first)."""
        self._start()
        return self._take()

    def _start(self) -> None:
        if not self._started:
            self._started = True
            snapshot = self._snapshot("in_progress", [])
            self._emit("response.created", response=snapshot)
            self._emit("response.in_progress", response=snapshot)

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        """The events one chunk makes."""
        if self._final is not None:
            return []
        self._start()
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.reasoning_content:
                self._reasoning_delta(delta.reasoning_content)
            if delta.content:
                self._part_delta("output_text", delta.content, output_logprobs(choice.logprobs))
            if delta.refusal:
                self._part_delta("refusal", delta.refusal, [])
            for call in delta.tool_calls or ():
                self._call_delta(call)
            if choice.finish_reason is not None:
                self._finish_reason = choice.finish_reason
        return self._take()

    def finish(self, usage: Usage | None) -> list[bytes]:
        """Close what is open, then ``response.completed`` (or ``response.incomplete`` for a
        length or content-filter stop). ``usage``, when given, wins over a usage chunk's."""
        if self._final is not None:
            return []
        self._start()
        if usage is not None:
            self._usage = usage
        status, details = outcome(self._finish_reason)
        item_status = "incomplete" if status == "incomplete" else "completed"
        if not self._output:
            # An empty answer is still a message, with empty text (as OpenAI gives it).
            self._part_delta("output_text", "", [])
        self._close(item_status)
        self._final = self._snapshot(status, self._output, details)
        self._emit(f"response.{status}", response=self._final)
        return self._take()

    def fail(self, error: GatewayError) -> list[bytes]:
        """Close what is open as incomplete, then ``response.failed`` carrying the error."""
        if self._final is not None:
            return []
        self._start()
        self._close("incomplete")
        failure = {"code": error.code or "server_error", "message": error.message}
        self._final = self._snapshot("failed", self._output, error=failure)
        self._emit("response.failed", response=self._final)
        return self._take()

    # -- items ------------------------------------------------------------------------------

    def _reasoning_delta(self, text: str) -> None:
        reasoning = self._reasoning
        if reasoning is None:
            self._close("completed")
            reasoning = self._reasoning = _Reasoning(new_item_id("rs"), len(self._output))
            item = reasoning_item(reasoning.item_id, [])
            self._added(item)
            self._emit(
                "response.reasoning_summary_part.added",
                **self._summary_place(reasoning),
                part={"type": "summary_text", "text": ""},
            )
        reasoning.text.append(text)
        self._emit(
            "response.reasoning_summary_text.delta", **self._summary_place(reasoning), delta=text
        )

    def _part_delta(self, kind: str, text: str, logprobs: list[dict[str, Any]]) -> None:
        message = self._message
        if message is None:
            self._close("completed")
            message = self._message = _Message(new_item_id("msg"), len(self._output))
            self._added(message_item(message.item_id, [], "in_progress"))
        if message.kind != kind:
            self._close_part(message)
            message.open_part(kind)
            empty = output_text_part("") if kind == "output_text" else refusal_part("")
            self._emit("response.content_part.added", **self._part_place(message), part=empty)
        if not text:
            return
        message.text.append(text)
        if kind == "output_text":
            message.logprobs.extend(logprobs)
            self._emit(
                "response.output_text.delta",
                **self._part_place(message),
                delta=text,
                logprobs=logprobs,
            )
        else:
            self._emit("response.refusal.delta", **self._part_place(message), delta=text)

    def _call_delta(self, fragment: ToolCallDelta) -> None:
        if self._reasoning is not None or self._message is not None:
            self._close("completed")
        function = fragment.function
        call = self._calls.get(fragment.index)
        if call is None:
            call_id = unique_call_id(fragment.id, self._call_ids)
            name = (function.name if function else None) or ""
            call = _Call(new_item_id("fc"), len(self._output), call_id, name)
            self._calls[fragment.index] = call
            self._added(function_call_item(call.item_id, call_id, name, "", "in_progress"))
        elif function is not None and function.name:
            call.name_late(function.name)
        if function is not None and function.arguments:
            call.arguments.append(function.arguments)
            self._emit(
                "response.function_call_arguments.delta",
                item_id=call.item_id,
                output_index=call.output_index,
                delta=function.arguments,
            )

    def _close(self, status: str) -> None:
        """Close whatever item is open, in the order they were opened."""
        reasoning, self._reasoning = self._reasoning, None
        if reasoning is not None:
            text = "".join(reasoning.text)
            place = self._summary_place(reasoning)
            self._emit("response.reasoning_summary_text.done", **place, text=text)
            part = {"type": "summary_text", "text": text}
            self._emit("response.reasoning_summary_part.done", **place, part=part)
            self._done(reasoning.output_index, reasoning_item(reasoning.item_id, [text], status))
        message, self._message = self._message, None
        if message is not None:
            self._close_part(message)
            item = message_item(message.item_id, message.parts, status)
            self._done(message.output_index, item)
        calls, self._calls = self._calls, {}
        for call in sorted(calls.values(), key=lambda call: call.output_index):
            arguments = "".join(call.arguments)
            self._emit(
                "response.function_call_arguments.done",
                item_id=call.item_id,
                output_index=call.output_index,
                arguments=arguments,
            )
            item = function_call_item(call.item_id, call.call_id, call.name, arguments, status)
            self._done(call.output_index, item)

    def _close_part(self, message: _Message) -> None:
        if message.kind is None:
            return
        text = "".join(message.text)
        place = self._part_place(message)
        if message.kind == "output_text":
            part = output_text_part(text, [], message.logprobs)
            self._emit("response.output_text.done", **place, text=text, logprobs=message.logprobs)
        else:
            part = refusal_part(text)
            self._emit("response.refusal.done", **place, refusal=text)
        self._emit("response.content_part.done", **place, part=part)
        message.close_part(part)

    def _added(self, item: dict[str, Any]) -> None:
        self._output.append(item)
        self._emit("response.output_item.added", output_index=len(self._output) - 1, item=item)

    def _done(self, output_index: int, item: dict[str, Any]) -> None:
        self._output[output_index] = item
        self._emit("response.output_item.done", output_index=output_index, item=item)

    @staticmethod
    def _summary_place(reasoning: _Reasoning) -> dict[str, Any]:
        return {
            "item_id": reasoning.item_id,
            "output_index": reasoning.output_index,
            "summary_index": 0,
        }

    @staticmethod
    def _part_place(message: _Message) -> dict[str, Any]:
        return {
            "item_id": message.item_id,
            "output_index": message.output_index,
            "content_index": len(message.parts),
        }

    # -- framing ----------------------------------------------------------------------------

    def _snapshot(
        self,
        status: str,
        output: list[dict[str, Any]],
        incomplete_details: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return build_response(
            self._body,
            response_id=self._response_id,
            created_at=self._created_at,
            model=self._model,
            status=status,
            output=output,
            usage=None if status == "in_progress" else response_usage(self._usage),
            incomplete_details=incomplete_details,
            error=error,
        )

    def _emit(self, kind: str, **fields: Any) -> None:
        data = _encode({"type": kind, **fields, "sequence_number": self._sequence})
        self._sequence += 1
        self._events.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    def _take(self) -> list[bytes]:
        events, self._events = self._events, []
        return events
