"""Ollama's streamed answers (NDJSON lines) as OpenAI chunks."""

from __future__ import annotations

import time

from proxy.chat import ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta
from proxy.errors import UpstreamError
from proxy.providers.base import ChunkParser, malformed
from proxy.providers.logprobs import ChoiceLogprobs
from proxy.providers.ollama_response import (
    LineMessage,
    arguments_json,
    completion_id,
    created_of,
    decode_line,
    finish_reason,
    logprobs_of,
    tool_call_id,
    usage_of,
)

#: A streamed line longer than this is not a chat chunk; refusing it bounds our memory.
MAX_LINE_BYTES = 4 * 1024 * 1024


class OllamaChunkParser(ChunkParser[ChatChunk]):
    """NDJSON lines → OpenAI chunks: role first, deltas, a finish chunk, then a usage chunk."""

    def __init__(self, provider: str, upstream_model: str) -> None:
        self._provider = provider
        self._id = completion_id()
        self._created = int(time.time())  # until the first line tells when Ollama began
        self._model = upstream_model
        self._buffer = bytearray()
        self._started = False
        self._done = False
        self._tool_calls = 0  # OpenAI indexes tool calls across the whole answer

    def _feed(self, data: bytes, chunks: list[ChatChunk]) -> None:
        # The chunks of the lines completed by data.
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            self._line(bytes(buffer[start:end]), chunks)
            start = end + 1
        del buffer[:start]
        self._check_length(len(buffer))

    def _finish(self, chunks: list[ChatChunk]) -> None:
        # The body ended: complete only after a done: true line.
        if self._buffer:
            # A last line without its newline is still a line.
            self._line(bytes(self._buffer), chunks)
            self._buffer.clear()
        if not self._done:
            raise UpstreamError(
                f"Upstream {self._provider} ended the stream before it was complete.",
                code="upstream_stream_cut",
            )

    def _check_length(self, size: int) -> None:
        if size > MAX_LINE_BYTES:
            raise malformed(self._provider, "stream", f"a line is over {MAX_LINE_BYTES} bytes")

    def _line(self, raw: bytes, chunks: list[ChatChunk]) -> None:
        self._check_length(len(raw))
        if self._done or not raw.strip():
            return
        line = decode_line(self._provider, "stream line", raw)
        if line.error is not None:
            raise UpstreamError(f"Upstream {self._provider} failed mid-stream: {line.error}")
        if not self._started:
            self._started = True
            self._model = line.model or self._model
            self._created = created_of(line)
            chunks.append(self._chunk(Delta(role="assistant", content="")))
        # The logprobs of this line's own tokens ride on the chunk that carries them.
        logprobs = logprobs_of(line)
        message = line.message
        if message is not None and (message.content or message.thinking or message.tool_calls):
            chunks.append(self._chunk(self._delta(message), logprobs=logprobs))
            logprobs = None
        if line.done:
            self._done = True
            reason = finish_reason(line.done_reason, self._tool_calls > 0)
            chunks.append(self._chunk(Delta(), reason, logprobs))
            # Always sent: the gateway logs it, and decides whether the client sees it.
            chunks.append(
                ChatChunk(
                    id=self._id, created=self._created, model=self._model, usage=usage_of(line)
                )
            )
        elif logprobs is not None:
            chunks.append(self._chunk(Delta(), logprobs=logprobs))

    def _delta(self, message: LineMessage) -> Delta:
        calls: list[ToolCallDelta] = []
        for call in message.tool_calls or ():
            # Ollama sends each call whole, so one delta carries all of it.
            function = FunctionCallDelta(
                call.function.name, arguments_json(call.function.arguments)
            )
            calls.append(ToolCallDelta(self._tool_calls, tool_call_id(), "function", function))
            self._tool_calls += 1
        return Delta(
            content=message.content or None,
            reasoning_content=message.thinking or None,
            tool_calls=calls or None,
        )

    def _chunk(
        self, delta: Delta, finish: str | None = None, logprobs: ChoiceLogprobs | None = None
    ) -> ChatChunk:
        return ChatChunk(
            id=self._id,
            created=self._created,
            model=self._model,
            choices=[ChunkChoice(delta=delta, logprobs=logprobs, finish_reason=finish)],
        )
