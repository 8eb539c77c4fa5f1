"""Exact wire answers of DeepSeek and xAI, the OpenAI-compatible upstreams with quirks.

Each helper returns a behaviour for :class:`FakeOpenAI` reproducing one quirk from the protocol
reference (§3 DeepSeek, §4 xAI): DeepSeek's cache counters, keep-alive comments and blank-line
padding, its 402/422 errors and ``insufficient_system_resource``; xAI's usage where completion
tokens exclude reasoning, and its string-shaped error bodies.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.openai_upstream import ErrorReply, Raw

CREATED = 1760000000


# GET /models as each answers it (protocol reference §3.1, §4.1): DeepSeek gives no creation
# time; xAI's entries are OpenAI's shape with its own owner.
DEEPSEEK_LISTED: list[dict[str, Any]] = [
    {"id": "deepseek-v4-flash", "object": "model", "owned_by": "deepseek"},
    {"id": "deepseek-v4-pro", "object": "model", "owned_by": "deepseek"},
]
XAI_LISTED: list[dict[str, Any]] = [
    {"id": "grok-4.3", "created": 1761955200, "object": "model", "owned_by": "xai"},
    {"id": "grok-code-fast-1", "created": 1756166400, "object": "model", "owned_by": "xai"},
]


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
    body = {
        "id": "d1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_ds",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def deepseek_usage(prompt: int, completion: int, hit: int, reasoning: int = 0) -> dict[str, Any]:
    """DeepSeek's older usage shape: cache counters, no prompt_tokens_details."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
        "prompt_cache_hit_tokens": hit,
        "prompt_cache_miss_tokens": prompt - hit,
    }


def deepseek_stream(
    reasoning: str = "Compare 9.11 and 9.8.",
    text: str = "9.8 is larger.",
    *,
    finish: str = "stop",
    model: str = "deepseek-reasoner",
) -> Raw:
    """A thinking-mode stream: keep-alives first, reasoning deltas, content, usage on the finish
    chunk (not a separate one), [DONE]."""
    parts = [
        b": keep-alive\n\n",
        b"\n\n",
        _chunk(model, {"role": "assistant", "content": None, "reasoning_content": reasoning}),
        b": keep-alive\n\n",
        _chunk(model, {"content": text, "reasoning_content": None}),
        _chunk(model, {"content": ""}, finish, usage=deepseek_usage(12, 90, hit=8, reasoning=80)),
        b"data: [DONE]\n\n",
    ]
    return Raw(tuple(parts))


def deepseek_completion(
    reasoning: str = "Compare 9.11 and 9.8.",
    text: str = "9.8 is larger.",
    *,
    tool_call: bool = False,
    finish: str = "stop",
) -> Raw:
    """A non-streaming answer padded with the blank lines DeepSeek sends while it thinks."""
    message: dict[str, Any] = {"role": "assistant", "content": text, "reasoning_content": reasoning}
    if tool_call:
        message["content"] = ""
        message["tool_calls"] = [
            {
                "id": "call_ds_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ]
        finish = "tool_calls"
    body = {
        "id": "d2",
        "object": "chat.completion",
        "created": CREATED,
        "model": "deepseek-reasoner",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": deepseek_usage(20, 30, hit=16, reasoning=10),
        "system_fingerprint": "fp_ds",
    }
    return Raw((b"\n", b"\n\n", json.dumps(body).encode()), content_type="application/json")


def deepseek_error(status: int, message: str) -> ErrorReply:
    """DeepSeek's OpenAI-shaped errors (402 insufficient balance, 422 invalid parameters)."""
    kinds = {402: "unknown_error", 422: "invalid_request_error"}
    return ErrorReply(status, message, kinds.get(status, "invalid_request_error"))


def xai_usage(prompt: int, completion: int, reasoning: int) -> dict[str, Any]:
    """xAI's usage: completion EXCLUDES reasoning, total includes it."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion + reasoning,
        "prompt_tokens_details": {"text_tokens": prompt, "cached_tokens": 6, "image_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
        "num_sources_used": 0,
    }


def xai_completion(text: str = "Hi.", *, model: str = "grok-4.3") -> Raw:
    """A non-streaming grok answer with the docs example's token counts (26 + 168 + 304)."""
    body = {
        "id": "x1",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": "stop",
            }
        ],
        "usage": xai_usage(26, 168, 304),
        "system_fingerprint": "fp_x",
    }
    return Raw((json.dumps(body).encode(),), content_type="application/json")


def xai_stream(text: str = "Hi there", *, model: str = "grok-4.3") -> Raw:
    """A grok stream whose separate usage chunk has xAI's counting."""
    words = text.split(" ")
    parts = [_chunk(model, {"role": "assistant", "content": words[0]})]
    parts += [_chunk(model, {"content": " " + word}) for word in words[1:]]
    parts.append(_chunk(model, {}, "stop"))
    usage = {
        "id": "d1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [],
        "usage": xai_usage(26, 168, 304),
    }
    parts.append(b"data: " + json.dumps(usage).encode() + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return Raw(tuple(parts))


def xai_bad_key() -> ErrorReply:
    """xAI's answer to a wrong key: 400 with a string-shaped error."""
    body = {
        "code": "Client specified an invalid argument",
        "error": "Incorrect API key provided: xa***ey. You can obtain an API key from "
        "https://console.x.ai.",
    }
    return ErrorReply(400, raw_body=json.dumps(body).encode())


def xai_reasoning_effort_rejected(model: str = "grok-4.3") -> ErrorReply:
    """xAI's 400 for a parameter the model does not take: the client's request was bad."""
    body = {
        "code": "Client specified an invalid argument",
        "error": f"Model {model} does not support parameter reasoningEffort.",
    }
    return ErrorReply(400, raw_body=json.dumps(body).encode())
