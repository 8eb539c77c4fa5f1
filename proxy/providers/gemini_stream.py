"""Gemini's streamed answers (SSE of ``GenerateContentResponse``) as OpenAI chunks."""

from __future__ import annotations

import secrets
import time

from proxy.chat import ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta, Usage
from proxy.errors import UpstreamError
from proxy.providers.base import ChunkParser, malformed
from proxy.providers.gemini_response import (
    AnswerReader,
    GenerateResponse,
    WireCandidate,
    block_reason,
    finish_reason,
    logprobs_of,
    response_id,
    usage_of,
)
from proxy.sse import Event, SSEDecoder, SSEError


class GeminiChunkParser(ChunkParser[ChatChunk]):
    """SSE events of ``GenerateContentResponse`` (CRLF, no ``[DONE]``) into OpenAI chunks."""

    def __init__(self, reader: AnswerReader, upstream_model: str) -> None:
        self._reader = reader
        self._sse = SSEDecoder()
        self._id: str | None = None
        self._created = int(time.time())  # when the answer began: every chunk carries it
        self._model = upstream_model
        self._started: set[int] = set()  # choices that have had their role delta
        self._tool_calls: dict[int, int] = {}  # choice -> tool calls emitted so far
        self._usage: Usage | None = None
        self._finished = False

    def _feed(self, data: bytes, chunks: list[ChatChunk]) -> None:
        # An {"error": …} event raises the mapped error.
        try:
            events = self._sse.feed(data)
        except SSEError as exc:
            raise malformed(self._reader.provider, "stream", exc) from None
        # Complete events before a bad line of this read are parsed first (the base class
        # delivers their chunks, then the error).
        self._parse_events(events, chunks)
        if self._sse.failure is not None:
            raise malformed(self._reader.provider, "stream", self._sse.failure)

    def _parse_events(self, events: list[Event], chunks: list[ChatChunk]) -> None:
        for event in events:
            self._event(self._reader.decode(event.data.encode(), "stream event"), chunks)

    def _finish(self, chunks: list[ChatChunk]) -> None:
        # The body ended: complete only after a finishReason (there is no end marker).
        self._sse.close()
        if not self._finished:
            raise UpstreamError(
                f"Upstream {self._reader.provider} ended the stream before it was complete.",
                code="upstream_stream_cut",
            )
        self._flush_usage(chunks)

    def _before_failure(self, chunks: list[ChatChunk]) -> None:
        # Every event carries the usage so far: a failed call is logged with what it used.
        self._flush_usage(chunks)

    def _flush_usage(self, chunks: list[ChatChunk]) -> None:
        """The usage chunk, always last, with the last (authoritative) ``usageMetadata``; the
        caller decides whether the client sees it."""
        if self._usage is not None:
            chunks.append(self._chunk([], usage=self._usage))

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatChunk:
        return ChatChunk(
            id=self._id or "chatcmpl-" + secrets.token_hex(12),
            created=self._created,
            model=self._model,
            choices=choices,
            usage=usage,
        )

    def _event(self, reply: GenerateResponse, chunks: list[ChatChunk]) -> None:
        if self._id is None:
            self._id = response_id(reply)
            self._model = reply.model_version or self._model
        if reply.usage_metadata is not None:
            self._usage = usage_of(reply.usage_metadata)
        if not reply.candidates and block_reason(reply):
            self._finished = True
            if 0 not in self._started:
                self._started.add(0)
                chunks.append(self._chunk([ChunkChoice(0, Delta(role="assistant", content=""))]))
            chunks.append(self._chunk([ChunkChoice(0, Delta(), finish_reason="content_filter")]))
            return
        for candidate in reply.candidates:
            self._candidate(candidate, chunks)

    def _candidate(self, candidate: WireCandidate, chunks: list[ChatChunk]) -> None:
        index = candidate.index
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[ToolCallDelta] = []
        for part in candidate.content.parts if candidate.content else ():
            if part.function_call is not None:
                # Gemini sends each call whole, so one delta carries all of it.
                call = self._reader.tool_call(part, part.function_call)
                position = self._tool_calls.get(index, 0)
                self._tool_calls[index] = position + 1
                calls.append(
                    ToolCallDelta(
                        index=position,
                        id=call.id,
                        type="function",
                        function=FunctionCallDelta(call.function.name, call.function.arguments),
                        extra_content=call.extra_content,
                    )
                )
            elif part.text:
                (thoughts if part.thought else texts).append(part.text)
        # The logprobs of this event's own tokens ride on the chunk that carries them.
        logprobs = logprobs_of(candidate)
        first = index not in self._started
        if first or texts or thoughts or calls:
            self._started.add(index)
            delta = Delta(
                role="assistant" if first else None,
                content="".join(texts) if texts else ("" if first and not calls else None),
                reasoning_content="".join(thoughts) if thoughts else None,
                tool_calls=calls or None,
            )
            chunks.append(self._chunk([ChunkChoice(index, delta, logprobs)]))
            logprobs = None
        finish = finish_reason(candidate, called=index in self._tool_calls)
        if finish is not None:
            self._finished = True
            choice = ChunkChoice(index, Delta(), logprobs, finish_reason=finish)
            chunks.append(self._chunk([choice]))
