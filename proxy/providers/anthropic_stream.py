"""Claude's streamed answers (named SSE events, reference §5) as OpenAI chunks.

``message_start`` opens the answer (its id, model and input-side usage); each content block is
``content_block_start`` / ``_delta``* / ``_stop``: text and thinking deltas become ``content`` and
``reasoning_content``, a ``tool_use`` block a tool call (id and name at its start, then its
``input_json_delta`` fragments as the arguments). ``message_delta`` brings the stop reason and
the cumulative usage, ``message_stop`` the end. ``ping`` and unknown events are ignored; an
``error`` event is an error after the chunks before it; a stream without ``message_stop`` was
cut.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from proxy.chat import ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta
from proxy.errors import UpstreamError
from proxy.providers.anthropic_errors import WireError, event_error
from proxy.providers.anthropic_response import (
    AnswerReader,
    UsageTotals,
    WireBlock,
    WireMessage,
    WireUsage,
    arguments_of,
    finish_reason,
    thinking_block,
)
from proxy.providers.anthropic_thinking import carried
from proxy.providers.base import UNREADABLE, ChunkParser, malformed
from proxy.sse import SSEDecoder, SSEError


class _WireDelta(msgspec.Struct):
    """A ``content_block_delta``'s delta, or a ``message_delta``'s."""

    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    thinking: str | None = None
    signature: str | None = None
    stop_reason: str | None = None


class _WireEvent(msgspec.Struct):
    """Any stream event: which fields it has depends on ``type``."""

    type: str
    message: WireMessage | None = None
    index: int = 0
    content_block: WireBlock | None = None
    delta: _WireDelta | None = None
    usage: WireUsage | None = None
    error: WireError | None = None


_decode_event = msgspec.json.Decoder(_WireEvent).decode


class AnthropicChunkParser(ChunkParser[ChatChunk]):
    """One streamed Messages answer into ``chat.completion.chunk`` objects."""

    def __init__(self, reader: AnswerReader, upstream_model: str) -> None:
        self._reader = reader
        self._provider = reader.provider
        self._sse = SSEDecoder()
        self._id = "msg"
        self._created = int(time.time())  # when the answer began: every chunk carries it
        self._model = upstream_model
        self._usage = UsageTotals()
        self._started = False
        self._stopped = False
        # index of a block -> its kind; a tool_use block's position among the calls
        self._blocks: dict[int, str] = {}
        self._call_positions: dict[int, int] = {}
        self._calls = 0
        # thinking blocks finished since the last tool call, and the one being streamed
        self._thinking: list[dict[str, Any]] = []
        self._open_thinking: dict[int, dict[str, Any]] = {}

    def _feed(self, data: bytes, chunks: list[ChatChunk]) -> None:
        try:
            events = self._sse.feed(data)
        except SSEError as exc:
            raise malformed(self._provider, "stream", exc) from None
        for event in events:
            try:
                parsed = _decode_event(event.data.encode())
            except UNREADABLE as exc:
                raise malformed(self._provider, "stream event", exc) from None
            self._event(parsed, chunks)
        if self._sse.failure is not None:
            raise malformed(self._provider, "stream", self._sse.failure)

    def _finish(self, chunks: list[ChatChunk]) -> None:
        self._sse.close()
        if not self._stopped:
            raise UpstreamError(
                f"Upstream {self._provider} ended the stream before message_stop.",
                code="upstream_stream_cut",
            )

    def _before_failure(self, chunks: list[ChatChunk]) -> None:
        # A failed call is logged with the usage seen so far.
        if self._usage.seen and not self._stopped:
            chunks.append(self._chunk([], usage=True))

    def _chunk(self, choices: list[ChunkChoice], *, usage: bool = False) -> ChatChunk:
        return ChatChunk(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=choices,
            usage=self._usage.usage() if usage else None,
        )

    def _delta(self, chunks: list[ChatChunk], delta: Delta) -> None:
        chunks.append(self._chunk([ChunkChoice(0, delta)]))

    def _event(self, event: _WireEvent, chunks: list[ChatChunk]) -> None:
        match event.type:
            case "message_start":
                self._start(event.message, chunks)
            case "content_block_start":
                self._block_start(event, chunks)
            case "content_block_delta":
                self._block_delta(event, chunks)
            case "content_block_stop":
                self._block_stop(event.index)
            case "message_delta":
                self._usage.update(event.usage)
                reason = event.delta.stop_reason if event.delta else None
                finish = finish_reason(reason)
                if finish is not None:
                    chunks.append(self._chunk([ChunkChoice(0, Delta(), finish_reason=finish)]))
            case "message_stop":
                self._stopped = True
                chunks.append(self._chunk([], usage=True))
            case "error":
                raise event_error(self._provider, event.error or WireError())
            case _:
                return  # ping, and event types added after this was written

    def _start(self, message: WireMessage | None, chunks: list[ChatChunk]) -> None:
        if message is not None:
            self._id = message.id or self._id
            self._model = message.model or self._model
            self._usage.update(message.usage)
        if not self._started:
            self._started = True
            self._delta(chunks, Delta(role="assistant", content=""))

    def _block_start(self, event: _WireEvent, chunks: list[ChatChunk]) -> None:
        block = event.content_block
        if block is None:
            return
        self._blocks[event.index] = block.type
        if block.type == "text" and block.text:
            self._delta(chunks, Delta(content=block.text))
        elif block.type == "thinking":
            self._open_thinking[event.index] = {
                "type": "thinking",
                "thinking": block.thinking or "",
                "signature": block.signature or "",
            }
            if block.thinking:
                self._delta(chunks, Delta(reasoning_content=block.thinking))
        elif block.type == "redacted_thinking":
            kept = thinking_block(block)
            if kept is not None:
                self._thinking.append(kept)
        elif block.type == "tool_use":
            self._tool_start(event.index, block, chunks)

    def _tool_start(self, index: int, block: WireBlock, chunks: list[ChatChunk]) -> None:
        position = self._calls
        self._calls += 1
        self._call_positions[index] = position
        call_id = block.id or ""
        thinking, self._thinking = self._thinking, []
        self._reader.memory.remember(call_id, thinking)
        # The start's input is {} when the arguments stream; anything else is the whole input.
        arguments = "" if not block.input else arguments_of(block.input)
        call = ToolCallDelta(
            index=position,
            id=call_id,
            type="function",
            function=FunctionCallDelta(block.name or "", arguments),
            extra_content=carried(thinking) if thinking else msgspec.UNSET,
        )
        self._delta(chunks, Delta(tool_calls=[call]))

    def _block_delta(self, event: _WireEvent, chunks: list[ChatChunk]) -> None:
        delta = event.delta
        if delta is None:
            return
        match delta.type:
            case "text_delta" if delta.text:
                self._delta(chunks, Delta(content=delta.text))
            case "thinking_delta" if delta.thinking:
                block = self._open_thinking.get(event.index)
                if block is not None:
                    block["thinking"] += delta.thinking
                self._delta(chunks, Delta(reasoning_content=delta.thinking))
            case "signature_delta" if delta.signature:
                block = self._open_thinking.get(event.index)
                if block is not None:
                    block["signature"] += delta.signature
            case "input_json_delta" if delta.partial_json:
                position = self._call_positions.get(event.index)
                if position is not None:
                    fragment = FunctionCallDelta(arguments=delta.partial_json)
                    call = ToolCallDelta(index=position, function=fragment)
                    self._delta(chunks, Delta(tool_calls=[call]))
            case _:
                return  # citations, and delta types added later

    def _block_stop(self, index: int) -> None:
        block = self._open_thinking.pop(index, None)
        if block is not None:
            self._thinking.append(block)
