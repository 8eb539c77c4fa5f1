"""Claude's answers (a Messages ``message``) read into OpenAI's shape (reference §3, §8).

``text`` blocks join into ``content``, ``thinking`` blocks into ``reasoning_content`` (their
signatures, and ``redacted_thinking`` blocks, carried on the tool calls: see
:mod:`proxy.providers.anthropic_thinking`), ``tool_use`` blocks become tool calls, and the usage
counts the cache: prompt tokens are input plus cache writes plus cache reads.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from msgspec import UNSET

from proxy.chat import (
    ChatResponse,
    Choice,
    CompletionTokensDetails,
    PromptTokensDetails,
    ResponseMessage,
    ResponseToolCall,
    TokenCount,
    Usage,
)
from proxy.chat_form import FunctionCall
from proxy.providers.anthropic_thinking import ThinkingMemory, carried
from proxy.providers.base import decode_as

_encode = msgspec.json.Encoder().encode

#: ``stop_reason`` -> ``finish_reason`` (reference §8); an unknown reason ends as ``stop``.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class WireOutputDetails(msgspec.Struct):
    """``usage.output_tokens_details``."""

    thinking_tokens: TokenCount = 0


class WireUsage(msgspec.Struct):
    """A message's ``usage`` (cumulative in a stream's ``message_delta``)."""

    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    cache_creation_input_tokens: TokenCount | None = None
    cache_read_input_tokens: TokenCount | None = None
    output_tokens_details: WireOutputDetails | None = None


class WireBlock(msgspec.Struct):
    """One content block; which fields it has depends on ``type`` (unknown types are skipped)."""

    type: str
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class WireMessage(msgspec.Struct):
    """A ``message`` object: the whole answer, or the start of a stream."""

    id: str = ""
    model: str | None = None
    content: list[WireBlock] = []
    stop_reason: str | None = None
    usage: WireUsage | None = None


_decode_message = msgspec.json.Decoder(WireMessage).decode


def finish_reason(stop_reason: str | None) -> str | None:
    """OpenAI's ``finish_reason`` for Claude's ``stop_reason``."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def thinking_block(block: WireBlock) -> dict[str, Any] | None:
    """The block as it must go back on the next turn, for the two thinking kinds."""
    if block.type == "thinking":
        return {"type": "thinking", "thinking": block.thinking or "", "signature": block.signature}
    if block.type == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.data or ""}
    return None


class UsageTotals:
    """The usage of one answer as Claude reports it, each count overwritten by later reports."""

    def __init__(self) -> None:
        self.input = 0
        self.output = 0
        self.cache_write = 0
        self.cache_read = 0
        self.thinking = 0
        self.seen = False

    def update(self, usage: WireUsage | None) -> None:
        """Take the counts ``usage`` gives (totals, never increments)."""
        if usage is None:
            return
        self.seen = True
        if usage.input_tokens is not None:
            self.input = usage.input_tokens
        if usage.output_tokens is not None:
            self.output = usage.output_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_write = usage.cache_creation_input_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        if usage.output_tokens_details is not None:
            self.thinking = usage.output_tokens_details.thinking_tokens

    def usage(self) -> Usage:
        """OpenAI's usage: the prompt counts every input token, cached or not."""
        prompt = self.input + self.cache_write + self.cache_read
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=self.output,
            total_tokens=prompt + self.output,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=self.cache_read),
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=self.thinking),
            cache_creation_input_tokens=self.cache_write,
            cache_read_input_tokens=self.cache_read,
        )


def arguments_of(value: Any) -> str:
    """A ``tool_use.input`` as OpenAI's JSON arguments string."""
    return _encode(value if value is not None else {}).decode()


class AnswerReader:
    """Reads whole answers for one adapter, remembering the thinking its tool calls carry."""

    def __init__(self, provider: str, memory: ThinkingMemory) -> None:
        self.provider = provider
        self.memory = memory

    def response(self, body: bytes, upstream_model: str) -> ChatResponse:
        """A ``chat.completion`` from a Messages ``message``."""
        message = decode_as(_decode_message, self.provider, "response", body)
        texts: list[str] = []
        thoughts: list[str] = []
        pending: list[dict[str, Any]] = []
        calls: list[ResponseToolCall] = []
        for block in message.content:
            if block.type == "text":
                texts.append(block.text or "")
            elif block.type in ("thinking", "redacted_thinking"):
                kept = thinking_block(block)
                if kept is not None:
                    pending.append(kept)
                if block.thinking:
                    thoughts.append(block.thinking)
            elif block.type == "tool_use":
                calls.append(self.tool_call(block, pending))
                pending = []
        totals = UsageTotals()
        totals.update(message.usage)
        reply = ResponseMessage(
            content="".join(texts) if texts or not calls else None,
            reasoning_content="".join(thoughts) if thoughts else UNSET,
            tool_calls=calls or UNSET,
        )
        return ChatResponse(
            id=message.id or "msg",
            created=int(time.time()),
            model=message.model or upstream_model,
            choices=[Choice(message=reply, finish_reason=finish_reason(message.stop_reason))],
            usage=totals.usage() if totals.seen else None,
        )

    def tool_call(self, block: WireBlock, thinking: list[dict[str, Any]]) -> ResponseToolCall:
        """A tool call from a ``tool_use`` block, carrying the thinking blocks before it."""
        call_id = block.id or ""
        self.memory.remember(call_id, thinking)
        return ResponseToolCall(
            id=call_id,
            function=FunctionCall(block.name or "", arguments_of(block.input)),
            extra_content=carried(thinking) if thinking else UNSET,
        )
