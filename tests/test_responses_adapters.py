"""The Responses answer built from what the real translating adapters parse out of their
upstreams' bytes: the stream and the whole answer give the same response, and the SDK takes
every event."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.providers.base import WireAdapter
from proxy.providers.gemini import GeminiAdapter
from proxy.providers.ollama import OllamaAdapter
from proxy.providers.openai_compat import OpenAICompatAdapter
from proxy.responses_events import ResponseEventStream
from proxy.responses_from_chat import response_object
from tests.responses_sdk import accumulate, decoded

BODY = {"model": "m", "input": "hi", "stream": True}


def ollama_line(message: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "created_at": "2025-07-07T20:22:19Z",
        "message": message,
        "done": False,
        **fields,
    }


OLLAMA_DONE = {"done": True, "done_reason": "stop", "prompt_eval_count": 20, "eval_count": 9}
OLLAMA_CALL = {"function": {"name": "look", "arguments": {"at": "sky"}}}
OLLAMA_STREAM = b"".join(
    json.dumps(line).encode() + b"\n"
    for line in (
        ollama_line({"role": "assistant", "content": "", "thinking": "Look "}),
        ollama_line({"role": "assistant", "content": "", "thinking": "up."}),
        ollama_line({"role": "assistant", "content": "The sky"}),
        ollama_line({"role": "assistant", "content": " is blue."}),
        ollama_line({"role": "assistant", "content": "", "tool_calls": [OLLAMA_CALL]}),
        ollama_line({"role": "assistant", "content": ""}, **OLLAMA_DONE),
    )
)
OLLAMA_WHOLE = json.dumps(
    ollama_line(
        {
            "role": "assistant",
            "content": "The sky is blue.",
            "thinking": "Look up.",
            "tool_calls": [OLLAMA_CALL],
        },
        **OLLAMA_DONE,
    )
).encode()


def sse(*chunks: dict[str, Any]) -> bytes:
    return (
        b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks)
        + b"data: [DONE]\n\n"
    )


def deepseek_chunk(
    delta: dict[str, Any], finish: str | None = None, **fields: Any
) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "deepseek-v4-flash",
        "choices": [choice],
        **fields,
    }


DEEPSEEK_USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 12,
    "total_tokens": 42,
    "prompt_tokens_details": {"cached_tokens": 16},
    "completion_tokens_details": {"reasoning_tokens": 7},
    "prompt_cache_hit_tokens": 16,
    "prompt_cache_miss_tokens": 14,
}
DEEPSEEK_STREAM = b": keep-alive\n\n" + sse(
    deepseek_chunk({"role": "assistant", "content": None, "reasoning_content": "Compare 9.11"}),
    deepseek_chunk({"content": None, "reasoning_content": " and 9.8."}),
    deepseek_chunk({"content": "9.8 is ", "reasoning_content": None}),
    deepseek_chunk({"content": "larger."}, "stop"),
    {**deepseek_chunk({}), "choices": [], "usage": DEEPSEEK_USAGE},
)
DEEPSEEK_WHOLE = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-v4-flash",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "9.8 is larger.",
                    "reasoning_content": "Compare 9.11 and 9.8.",
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": DEEPSEEK_USAGE,
    }
).encode()


def gemini_event(parts: list[dict[str, Any]], finish: str | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "abc"}


GEMINI_USAGE: dict[str, Any] = {
    "promptTokenCount": 8,
    "candidatesTokenCount": 5,
    "thoughtsTokenCount": 30,
    "totalTokenCount": 43,
    "cachedContentTokenCount": 4,
}
GEMINI_CALLS: list[dict[str, Any]] = [
    {
        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
        "thoughtSignature": "sig-1",
    },
    {"functionCall": {"name": "now", "args": {}}},
]
GEMINI_STREAM = b"".join(
    b"data: " + json.dumps(event).encode() + b"\r\n\r\n"
    for event in (
        gemini_event([{"text": "Pondering", "thought": True}]),
        gemini_event([{"text": " more.", "thought": True}]),
        gemini_event([{"text": "Hel"}]),
        gemini_event([{"text": "lo, ünïcode!"}]),
        {**gemini_event(GEMINI_CALLS, "STOP"), "usageMetadata": GEMINI_USAGE},
    )
)
GEMINI_WHOLE = json.dumps(
    {
        **gemini_event(
            [
                {"text": "Pondering more.", "thought": True},
                {"text": "Hello, ünïcode!"},
                *GEMINI_CALLS,
            ],
            "STOP",
        ),
        "usageMetadata": GEMINI_USAGE,
    }
).encode()


def normalised(response: dict[str, Any]) -> dict[str, Any]:
    """Without what each build makes fresh: item ids, the completion time, and the call ids
    Ollama's translation makes up (it names no call)."""
    copy: dict[str, Any] = json.loads(json.dumps(response))
    for index, item in enumerate(copy["output"]):
        item["id"] = index
        if "call_id" in item:
            item["call_id"] = index
    copy["completed_at"] = copy["completed_at"] and 1
    return copy


@pytest.mark.parametrize(
    ("adapter", "stream", "whole", "types"),
    [
        (
            OllamaAdapter("ollama", None),
            OLLAMA_STREAM,
            OLLAMA_WHOLE,
            ["reasoning", "message", "function_call"],
        ),
        (
            OpenAICompatAdapter("deepseek", "sk-x"),
            DEEPSEEK_STREAM,
            DEEPSEEK_WHOLE,
            ["reasoning", "message"],
        ),
        (
            GeminiAdapter("gemini", "key"),
            GEMINI_STREAM,
            GEMINI_WHOLE,
            ["reasoning", "message", "function_call", "function_call"],
        ),
    ],
)
@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_an_adapters_stream_and_whole_answer_give_one_response(
    adapter: WireAdapter, stream: bytes, whole: bytes, types: list[str], size: int
) -> None:
    parser = adapter.chunk_parser("m")
    events = ResponseEventStream(BODY, response_id="resp_1", created_at=1, model="m")
    frames = events.start()
    for start in range(0, len(stream), size):
        for chunk in parser.feed(stream[start : start + size]):
            frames += events.feed(chunk)
    for chunk in parser.finish():
        frames += events.feed(chunk)
    frames += events.finish(None)
    accumulate(decoded(frames))
    answer = adapter.parse_response(whole, "m")
    expected = response_object(answer, BODY, response_id="resp_1", created_at=1, model="m")
    assert normalised(events.response) == normalised(expected)
    assert [item["type"] for item in expected["output"]] == types
    assert expected["usage"]["total_tokens"] > 0
