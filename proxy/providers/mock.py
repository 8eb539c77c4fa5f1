"""The ``mock`` provider's answers: deterministic echoes for demos, tests and load tests.

It answers with ``"echo: "`` and the last user message's text, counts one token per word, and is
priced at 0. Latency and chunking are applied by the actor (this module is pure).
"""

from __future__ import annotations

import itertools
import re

from proxy.chat import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
)
from proxy.chat_form import Message, TextPart

MOCK_MODELS = ("mock", "mock-echo")
_WORDS = re.compile(r"\S+\s*")
_ids = itertools.count(1)


def _text_of(message: Message) -> str:
    if isinstance(message.content, str):
        return message.content
    if isinstance(message.content, list):
        return " ".join(part.text for part in message.content if isinstance(part, TextPart))
    return ""


def answer_text(request: ChatRequest) -> str:
    """What the mock says: an echo of the last user message."""
    for message in reversed(request.form().messages):
        if message.role == "user":
            return f"echo: {_text_of(message)}"
    return "echo:"


def usage_of(request: ChatRequest, answer: str) -> Usage:
    """One token per whitespace-separated word, deterministic for tests and demos."""
    prompt = sum(len(_text_of(message).split()) for message in request.form().messages)
    completion = len(answer.split())
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def _next_id() -> str:
    return f"chatcmpl-mock-{next(_ids)}"


def mock_response(request: ChatRequest, model: str, created: int) -> ChatResponse:
    """The whole answer for a non-streaming call."""
    text = answer_text(request)
    return ChatResponse(
        id=_next_id(),
        created=created,
        model=model,
        choices=[Choice(message=ResponseMessage(content=text), finish_reason="stop")],
        usage=usage_of(request, text),
        system_fingerprint="fp_mock",
    )


def split_text(text: str, pieces: int) -> list[str]:
    """``text`` in ``pieces`` parts (0 = one per word, spaces kept), none empty."""
    words = _WORDS.findall(text) or [text]
    if pieces <= 0 or pieces >= len(words):
        return words
    size = -(-len(words) // pieces)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def mock_chunks(
    request: ChatRequest, model: str, created: int, chunk_count: int
) -> list[ChatChunk]:
    """The stream for a streaming call: role, content pieces, finish, usage."""
    text = answer_text(request)
    chunk_id = _next_id()

    def chunk(delta: Delta, finish: str | None = None) -> ChatChunk:
        choice = ChunkChoice(delta=delta, finish_reason=finish)
        return ChatChunk(id=chunk_id, created=created, model=model, choices=[choice])

    chunks = [chunk(Delta(role="assistant", content=""))]
    chunks.extend(chunk(Delta(content=piece)) for piece in split_text(text, chunk_count))
    chunks.append(chunk(Delta(), "stop"))
    chunks.append(
        ChatChunk(id=chunk_id, created=created, model=model, usage=usage_of(request, text))
    )
    return chunks
