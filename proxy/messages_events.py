"""A chat chunk stream as the Messages API's SSE event sequence (anthropic-messages.md §5, §8).

Every event leaves framed with its name (``event: <type>`` then ``data: <compact JSON>``; the
SDKs ignore an event without one): ``message_start`` first, then each content block started,
given its deltas and stopped in turn (thinking, text, each tool call with its arguments as
``input_json_delta`` pieces), then ``message_delta`` with the stop reason and the cumulative
usage, then ``message_stop``. A failure after the start is one ``error`` event and the end of
the stream, with no ``message_stop``, as Claude ends a failed stream.

Usage: a chat provider reports it only with its last chunk, after the answer. ``message_start``
carries the input tokens the caller estimated (or 0), and ``message_delta`` the provider's real
totals (input, cache read, output), which the SDKs and Claude Code take over the start's (§5:
overwrite, never add). The final message equals
:func:`proxy.messages_from_chat.message_object` for the same answer not streamed.

Blocks are sequential, as Claude sends them: a tool call's block stops when the next call
starts. A chat upstream that went back to an earlier call (fragments interleaved by ``index``;
none of ours does) cannot be told in this protocol: :meth:`feed` raises an UpstreamError then,
as it does when a call's arguments turn out to be no JSON object; the caller ends the stream
with :meth:`fail`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.chat import ChatChunk, ToolCallDelta, Usage
from proxy.errors import GatewayError, UpstreamError
from proxy.messages_errors import error_event
from proxy.messages_from_chat import (
    build_message,
    message_usage,
    shows_thinking,
    stop_reason,
    text_block,
    thinking_block,
    tool_input,
    tool_use_block,
    unique_tool_use_id,
)

_encode = msgspec.json.Encoder().encode

#: Claude's keep-alive event; a caller may send it while the upstream is silent.
PING = b'event: ping\ndata: {"type":"ping"}\n\n'


class _Block:
    """The open content block: its index, kind and what its deltas said so far."""

    def __init__(self, index: int, kind: str) -> None:
        self.index = index
        self.kind = kind  # "thinking", "text" or "tool_use"
        self.pieces: list[str] = []


class _Call(_Block):
    """An open tool_use block (or one waiting for its function's name to start)."""

    def __init__(self, index: int, call_index: int, call_id: str, name: str) -> None:
        super().__init__(index, "tool_use")
        self.call_index = call_index
        self.call_id = call_id
        self.name = name
        self.started = False

    def name_late(self, name: str) -> None:
        """Take the function's name from a fragment after the first (the first lacked it)."""
        if not self.name:
            self.name = name

    def begin(self) -> str:
        """Mark the block started; what its arguments said before, to send in one piece."""
        self.started = True
        return "".join(self.pieces)


class MessageEventStream:
    """Turns one chat chunk stream into the Messages SSE events, and keeps the final message."""

    def __init__(
        self,
        raw_request: Mapping[str, Any],
        *,
        message_id: str,
        model: str,
        input_tokens: int | None = None,
        request_id: str | None = None,
    ) -> None:
        self._message_id = message_id
        self._model = model
        self._input_estimate = input_tokens or 0
        self._request_id = request_id
        self._show_thinking = shows_thinking(raw_request)
        self._events: list[bytes] = []
        self._content: list[dict[str, Any]] = []
        self._open: _Block | None = None
        self._call_ids: set[str] = set()
        self._closed_calls: set[int] = set()
        self._usage: Usage | None = None
        self._finish_reason: str | None = None
        self._refused = False
        self._started = False
        self._final: dict[str, Any] | None = None

    @property
    def message(self) -> dict[str, Any]:
        """The final message once the stream finished (or failed: then ``stop_reason`` is
        null); before that, the message as it stands."""
        if self._final is not None:
            return self._final
        return self._snapshot(None)

    def start(self) -> list[bytes]:
        """``message_start`` (the other calls start a stream not yet started, its event
        first)."""
        self._start()
        return self._take()

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        usage = {
            "input_tokens": self._input_estimate,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 0,
        }
        message = build_message(
            message_id=self._message_id, model=self._model, content=[], reason=None, usage=usage
        )
        self._emit("message_start", message=message)

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        """The events one chunk makes; an UpstreamError when the answer cannot be said as
        Messages (see the module docstring)."""
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
                self._thinking(delta.reasoning_content)
            if delta.content:
                self._text(delta.content)
            if delta.refusal:
                self._refused = True
                self._text(delta.refusal)
            for fragment in delta.tool_calls or ():
                self._call(fragment)
            if choice.finish_reason is not None:
                self._finish_reason = choice.finish_reason
        return self._take()

    def finish(self, usage: Usage | None = None) -> list[bytes]:
        """Stop the open block, then ``message_delta`` and ``message_stop``. ``usage``, when
        given, wins over a usage chunk's. An UpstreamError as :meth:`feed` raises it."""
        if self._final is not None:
            return []
        self._start()
        if usage is not None:
            self._usage = usage
        self._close()
        reason = stop_reason(
            self._finish_reason, tool_calls=bool(self._call_ids), refused=self._refused
        )
        self._final = self._snapshot(reason)
        totals = dict(self._final["usage"])
        del totals["cache_creation"]
        delta = {
            "stop_reason": reason,
            "stop_sequence": None,
            "stop_details": self._final["stop_details"],
        }
        self._emit("message_delta", delta=delta, usage=totals)
        self._emit("message_stop")
        return self._take()

    def fail(self, error: GatewayError) -> list[bytes]:
        """The events not yet taken, then one ``error`` event carrying ``error``."""
        if self._final is not None:
            return []
        self._final = self._snapshot(None)
        self._events.append(error_event(error, self._request_id))
        return self._take()

    # -- blocks -------------------------------------------------------------------------------

    def _thinking(self, text: str) -> None:
        block = self._open_block("thinking", thinking_block(""))
        block.pieces.append(text)
        if self._show_thinking:
            self._delta(block, {"type": "thinking_delta", "thinking": text})

    def _text(self, text: str) -> None:
        block = self._open_block("text", text_block(""))
        block.pieces.append(text)
        self._delta(block, {"type": "text_delta", "text": text})

    def _open_block(self, kind: str, empty: dict[str, Any]) -> _Block:
        if self._open is not None and self._open.kind == kind:
            return self._open
        self._close()
        block = self._open = _Block(len(self._content), kind)
        self._content.append(empty)
        self._emit("content_block_start", index=block.index, content_block=empty)
        return block

    def _call(self, fragment: ToolCallDelta) -> None:
        function = fragment.function
        name = (function.name if function else None) or ""
        arguments = (function.arguments if function else None) or ""
        call = self._open
        if not isinstance(call, _Call) or call.call_index != fragment.index:
            if fragment.index in self._closed_calls:
                raise UpstreamError(
                    "The upstream interleaved the arguments of its tool calls, which the "
                    "Messages API cannot stream; retry, or ask without streaming.",
                    code="interleaved_tool_calls",
                )
            self._close()
            call_id = unique_tool_use_id(fragment.id, self._call_ids)
            call = self._open = _Call(len(self._content), fragment.index, call_id, name)
            self._content.append(tool_use_block(call_id, name, {}))
        elif name:
            call.name_late(name)
        call.pieces.append(arguments)
        if not call.started and call.name:
            # Claude names the tool in the block's start: wait for the name, then say what
            # came before it in one piece.
            arguments = call.begin()
            start = tool_use_block(call.call_id, call.name, {})
            self._content[call.index] = start
            self._emit("content_block_start", index=call.index, content_block=start)
        if call.started and arguments:
            self._delta(call, {"type": "input_json_delta", "partial_json": arguments})

    def _close(self) -> None:
        """Stop the open block, its content final."""
        block, self._open = self._open, None
        if block is None:
            return
        text = "".join(block.pieces)
        if isinstance(block, _Call):
            self._closed_calls.add(block.call_index)
            if not block.started:
                raise UpstreamError(
                    "The upstream made a tool call without naming the tool.",
                    code="invalid_tool_call",
                )
            final = tool_use_block(block.call_id, block.name, tool_input(text, block.name))
        elif block.kind == "thinking":
            final = thinking_block(text if self._show_thinking else "")
        else:
            final = text_block(text)
        self._content[block.index] = final
        self._emit("content_block_stop", index=block.index)

    # -- framing ------------------------------------------------------------------------------

    def _snapshot(self, reason: str | None) -> dict[str, Any]:
        usage = message_usage(self._usage)
        if self._usage is None:
            usage["input_tokens"] = self._input_estimate
        content = list(self._content)
        block = self._open
        if block is not None and block.kind != "tool_use":
            # The open block as far as it got (a failed stream is logged with it).
            text = "".join(block.pieces)
            if block.kind == "text":
                content[block.index] = text_block(text)
            else:
                content[block.index] = thinking_block(text if self._show_thinking else "")
        return build_message(
            message_id=self._message_id,
            model=self._model,
            content=content,
            reason=reason,
            usage=usage,
        )

    def _delta(self, block: _Block, delta: dict[str, Any]) -> None:
        self._emit("content_block_delta", index=block.index, delta=delta)

    def _emit(self, kind: str, **fields: Any) -> None:
        data = _encode({"type": kind, **fields})
        self._events.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    def _take(self) -> list[bytes]:
        events, self._events = self._events, []
        return events
