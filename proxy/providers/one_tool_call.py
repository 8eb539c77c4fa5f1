"""``parallel_tool_calls: false`` kept by the gateway for upstreams that cannot be told it.

Gemini and Ollama have no setting that stops a model from calling several tools in one answer.
A client that sends ``parallel_tool_calls: false`` (Codex CLI does, with every request) asks for
at most one call per answer, so the gateway hands it the first call the model made, and only that:
the client runs it and sends its output back, and the model, seeing the whole conversation again,
calls the next tool it still needs on the next turn. Text, reasoning, the finish reason and usage
are untouched (the upstream did produce, and bill, the calls not handed on).
"""

from __future__ import annotations

from typing import final

from msgspec.structs import replace

from proxy.chat import ChatChunk, ChatRequest, ChatResponse, ChunkChoice, ToolCallDelta
from proxy.providers.base import ChunkParser

__all__ = ["OneToolCallParser", "asks_one_tool_call", "first_tool_call_only"]


def asks_one_tool_call(request: ChatRequest) -> bool:
    """Whether the client allows at most one tool call per answer and may get one at all."""
    body = request.form()
    return body.parallel_tool_calls is False and bool(body.tools) and body.tool_choice != "none"


def first_tool_call_only(response: ChatResponse) -> ChatResponse:
    """``response`` with each choice's tool calls cut to the first."""
    choices = [
        replace(choice, message=replace(choice.message, tool_calls=calls[:1]))
        if isinstance(calls := choice.message.tool_calls, list) and len(calls) > 1
        else choice
        for choice in response.choices
    ]
    return replace(response, choices=choices)


@final
class OneToolCallParser(ChunkParser[ChatChunk]):
    """Another parser's chunks with, in each choice, only the deltas of its first tool call."""

    def __init__(self, inner: ChunkParser[ChatChunk]) -> None:
        self._inner = inner
        self._kept: dict[int, int] = {}  # choice index -> the index of the tool call it keeps

    def _feed(self, data: bytes, chunks: list[ChatChunk]) -> None:
        self._take(self._inner.feed(data), chunks)

    def _finish(self, chunks: list[ChatChunk]) -> None:
        self._take(self._inner.finish(), chunks)

    def _take(self, parsed: list[ChatChunk], chunks: list[ChatChunk]) -> None:
        chunks.extend(self._filtered(chunk) for chunk in parsed)
        if self._inner.failure is not None:
            # The inner parser held an error behind these chunks: hold it here the same way.
            raise self._inner.failure

    def _filtered(self, chunk: ChatChunk) -> ChatChunk:
        for position, choice in enumerate(chunk.choices):
            calls = choice.delta.tool_calls
            if calls:
                chunk.choices[position] = self._first_call_of(choice, calls)
        return chunk

    def _first_call_of(self, choice: ChunkChoice, calls: list[ToolCallDelta]) -> ChunkChoice:
        kept_index = self._kept.setdefault(choice.index, calls[0].index)
        kept = [call for call in calls if call.index == kept_index]
        if len(kept) == len(calls):
            return choice
        return replace(choice, delta=replace(choice.delta, tool_calls=kept or None))
