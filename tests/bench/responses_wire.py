"""The bench upstream's Responses API answers, precomputed as bytes (``tests.bench.servers``).

``POST /v1/responses`` answers one completed response object: one assistant message with one
``output_text`` part, usage with its token details. With ``"stream":true`` it answers the event
sequence OpenAI sends for it (``event:`` + ``data:`` lines, ``sequence_number`` 0, 1, 2, …, no
``[DONE]``): created, in_progress, output_item.added, content_part.added, then one
``response.output_text.delta`` event per streamed piece (``servers.STREAM_CHUNKS`` of them), then
output_text.done, content_part.done, output_item.done and ``response.completed`` with usage.

Every answer carries its own response id, as OpenAI's do: a gateway storing responses by id must
store each one, not find the first again. The id has a fixed width, so the bytes around it and
every length are precomputed; an answer costs one ``replace`` of the placeholder.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any, Final

TEXT: Final = "Hello! How can I help you today?"
INPUT_TOKENS: Final = 9
OUTPUT_TOKENS: Final = 9
MODEL: Final = "gpt-4o-2024-08-06"
_ID_DIGITS: Final = 24
PLACEHOLDER: Final = b"resp_" + b"@" * _ID_DIGITS  # stands for the response id in every answer
_MESSAGE_ID: Final = "msg_bench000000000000000000000000"
_CREATED_AT: Final = 1_700_000_000

_ids = itertools.count()
_ID_PREFIX: Final = os.urandom(4).hex()  # ids stay unique across upstream processes


def next_id() -> bytes:
    """A fresh response id, exactly as wide as :data:`PLACEHOLDER`."""
    return b"resp_%s%016x" % (_ID_PREFIX.encode(), next(_ids))


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message(status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": _MESSAGE_ID,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _usage(output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": INPUT_TOKENS,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": INPUT_TOKENS + output_tokens,
    }


def _response(
    status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    """A response object with the request settings OpenAI echoes (the defaults here)."""
    return {
        "id": PLACEHOLDER.decode(),
        "object": "response",
        "created_at": _CREATED_AT,
        "status": status,
        "background": False,
        "completed_at": _CREATED_AT + 1 if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": MODEL,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "user": None,
        "metadata": {},
        "usage": usage,
    }


RESPONSE: Final = _dumps(
    _response("completed", [_message("completed", [_text_part(TEXT)])], _usage(OUTPUT_TOKENS))
)


def _event(sequence_number: int, kind: str, **fields: Any) -> bytes:
    """One SSE event as OpenAI frames it: its type on an ``event:`` line, then its JSON."""
    data = {"type": kind, "sequence_number": sequence_number, **fields}
    return b"event: " + kind.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


def stream_events(pieces: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[bytes, ...]]:
    """The opening events, ``pieces`` delta events and the closing events, each framed as SSE;
    :data:`PLACEHOLDER` stands for the response id."""
    deltas = [f" tok{i}" for i in range(pieces)]
    text = "".join(deltas)
    place = {"item_id": _MESSAGE_ID, "output_index": 0, "content_index": 0}
    started = _response("in_progress", [], None)
    opening = (
        _event(0, "response.created", response=started),
        _event(1, "response.in_progress", response=started),
        _event(2, "response.output_item.added", output_index=0, item=_message("in_progress", [])),
        _event(3, "response.content_part.added", **place, part=_text_part("")),
    )
    # Real deltas carry an ``obfuscation`` pad (on by default) that evens out their sizes.
    delta_events = tuple(
        _event(
            4 + i,
            "response.output_text.delta",
            **place,
            delta=delta,
            logprobs=[],
            obfuscation="bench0pad0"[: 10 - len(delta) % 10],
        )
        for i, delta in enumerate(deltas)
    )
    done = _message("completed", [_text_part(text)])
    after = 4 + pieces
    closing = (
        _event(after, "response.output_text.done", **place, text=text, logprobs=[]),
        _event(after + 1, "response.content_part.done", **place, part=_text_part(text)),
        _event(after + 2, "response.output_item.done", output_index=0, item=done),
        _event(
            after + 3,
            "response.completed",
            response=_response("completed", [done], _usage(pieces)),
        ),
    )
    return opening, delta_events, closing
