"""Gemini translation under the adapter contract: every field translated exactly or refused by
name, logprobs both ways, and answers in OpenAI's exact shape."""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
import pytest

from proxy.chat import ChatChunk, decode_chat_request
from proxy.errors import InvalidRequest
from proxy.providers.gemini import GeminiAdapter

MODEL = "gemini-2.5-flash"
HI = [{"role": "user", "content": "hi"}]


def adapter() -> GeminiAdapter:
    return GeminiAdapter("gemini", "key")


def body_of(**fields: object) -> dict[str, Any]:
    raw = json.dumps({"model": "gemini-x", "messages": HI, **fields}).encode()
    call = adapter().chat_call(decode_chat_request(raw), MODEL)
    result: dict[str, Any] = json.loads(call.body or b"")
    return result


def refused(**fields: object) -> InvalidRequest:
    raw = json.dumps({"model": "gemini-x", "messages": HI, **fields}).encode()
    with pytest.raises(InvalidRequest) as caught:
        adapter().chat_call(decode_chat_request(raw), MODEL)
    assert caught.value.status == 400
    return caught.value


# -- refused or translated, never dropped --------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logit_bias", {"50256": -100}),
        ("modalities", ["text", "audio"]),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("prediction", {"type": "content", "content": "hello"}),
        ("web_search_options", {}),
        ("functions", [{"name": "f", "parameters": {"type": "object"}}]),
        ("function_call", "auto"),
        ("verbosity", "low"),
        ("some_future_field", {"x": 1}),
    ],
)
def test_a_field_that_changes_the_answer_is_refused_by_name(field: str, value: object) -> None:
    error = refused(**{field: value})
    assert error.param == field
    assert field in error.message


@pytest.mark.parametrize(
    "fields",
    [
        {"modalities": ["text"]},
        {"parallel_tool_calls": True},
        {"n": 1},
        {"logprobs": False},
        {"top_logprobs": 0},
        {"stream_options": {"include_usage": True}, "stream": True},
    ],
)
def test_default_values_of_untranslatable_fields_are_fine(fields: dict[str, Any]) -> None:
    body = body_of(**fields)
    assert "modalities" not in json.dumps(body)
    assert "parallel" not in json.dumps(body)


def test_tuning_fields_are_dropped() -> None:
    body = body_of(
        user="u-1",
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        prompt_cache_key="pk",
        safety_identifier="sid",
    )
    assert body == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def test_one_call_per_answer_is_taken_and_not_sent() -> None:
    # Gemini has no such setting: the gateway keeps it (tests/test_one_tool_call.py).
    body = body_of(tools=TOOLS, parallel_tool_calls=False)
    assert body["tools"]
    assert "parallel_tool_calls" not in json.dumps(body)
    assert "parallelToolCalls" not in json.dumps(body)


def test_a_custom_tool_is_refused_naming_it() -> None:
    error = refused(tools=[{"type": "custom", "custom": {"name": "grammar"}}])
    assert error.param == "tools[0].type"


def test_top_logprobs_needs_logprobs_and_a_range_gemini_takes() -> None:
    assert refused(top_logprobs=3).param == "top_logprobs"
    assert refused(logprobs=True, top_logprobs=21).param == "top_logprobs"
    config = body_of(logprobs=True, top_logprobs=20)["generationConfig"]
    assert config == {"responseLogprobs": True, "logprobs": 20}
    assert body_of(logprobs=True)["generationConfig"] == {"responseLogprobs": True}


# -- logprobs ------------------------------------------------------------------------------------

LOGPROBS_RESULT: dict[str, Any] = {
    # Proto3 JSON omits zero values: a certain token has no logProbability at all.
    "topCandidates": [
        {
            "candidates": [
                {"token": "Hé", "tokenId": 5, "logProbability": -0.25},
                {"token": "Hi", "tokenId": 7, "logProbability": -1.5},
            ]
        },
        {"candidates": [{"token": "!", "tokenId": 9}, {"token": ".", "logProbability": -9.5}]},
    ],
    "chosenCandidates": [
        {"token": "Hé", "tokenId": 5, "logProbability": -0.25},
        {"token": "!", "tokenId": 9},
    ],
    "logProbabilitySum": -0.25,
}
OPENAI_LOGPROBS: dict[str, Any] = {
    "content": [
        {
            "token": "Hé",
            "logprob": -0.25,
            "bytes": [72, 195, 169],
            "top_logprobs": [
                {"token": "Hé", "logprob": -0.25, "bytes": [72, 195, 169]},
                {"token": "Hi", "logprob": -1.5, "bytes": [72, 105]},
            ],
        },
        {
            "token": "!",
            "logprob": 0.0,
            "bytes": [33],
            "top_logprobs": [
                {"token": "!", "logprob": 0.0, "bytes": [33]},
                {"token": ".", "logprob": -9.5, "bytes": [46]},
            ],
        },
    ],
    "refusal": None,
}


def wire(value: object) -> Any:
    return json.loads(msgspec.json.encode(value))


def test_logprobs_of_an_answer_in_openais_shape() -> None:
    answer = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "Hé!"}]},
                "finishReason": "STOP",
                "avgLogprobs": -0.125,
                "logprobsResult": LOGPROBS_RESULT,
            }
        ]
    }
    response = adapter().parse_response(json.dumps(answer).encode(), MODEL)
    assert wire(response)["choices"][0]["logprobs"] == OPENAI_LOGPROBS


def test_logprobs_without_top_candidates_have_empty_top_lists() -> None:
    result = {"chosenCandidates": [{"token": "a", "logProbability": -1.0}]}
    answer = {
        "candidates": [
            {
                "content": {"parts": [{"text": "a"}]},
                "finishReason": "STOP",
                "logprobsResult": result,
            }
        ]
    }
    response = adapter().parse_response(json.dumps(answer).encode(), MODEL)
    assert wire(response)["choices"][0]["logprobs"] == {
        "content": [{"token": "a", "logprob": -1.0, "bytes": [97], "top_logprobs": []}],
        "refusal": None,
    }
    plain = {"candidates": [{"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"}]}
    no_logprobs = adapter().parse_response(json.dumps(plain).encode(), MODEL)
    assert wire(no_logprobs)["choices"][0]["logprobs"] is None


def sse(*events: object) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)


def test_each_streamed_chunk_carries_its_own_tokens_logprobs() -> None:
    first = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "Hé"}]},
                "logprobsResult": {
                    "topCandidates": LOGPROBS_RESULT["topCandidates"][:1],
                    "chosenCandidates": LOGPROBS_RESULT["chosenCandidates"][:1],
                },
            }
        ],
        "responseId": "r1",
    }
    second = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "!"}]},
                "finishReason": "STOP",
                "logprobsResult": {
                    "topCandidates": LOGPROBS_RESULT["topCandidates"][1:],
                    "chosenCandidates": LOGPROBS_RESULT["chosenCandidates"][1:],
                },
            }
        ],
        "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3},
        "responseId": "r1",
    }
    parser = adapter().chunk_parser(MODEL)
    chunks: list[ChatChunk] = [*parser.feed(sse(first, second)), *parser.finish()]
    texts = [wire(c)["choices"][0] for c in chunks if c.choices]
    assert [c["delta"].get("content") for c in texts] == ["Hé", "!", None]
    assert texts[0]["logprobs"] == {"content": OPENAI_LOGPROBS["content"][:1], "refusal": None}
    assert texts[1]["logprobs"] == {"content": OPENAI_LOGPROBS["content"][1:], "refusal": None}
    assert texts[2]["logprobs"] is None  # the finish chunk adds no tokens


# -- OpenAI's exact shape ------------------------------------------------------------------------


def test_an_answer_has_openais_shape_with_zero_counts_and_a_real_created() -> None:
    before = int(time.time())
    answer = {
        "candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4},
        "modelVersion": MODEL,
        "responseId": "abc",
    }
    body = wire(adapter().parse_response(json.dumps(answer).encode(), MODEL))
    assert before <= body["created"] <= int(time.time())
    assert body["object"] == "chat.completion"
    assert body["system_fingerprint"] is None
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi", "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 1,
        "total_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def test_a_tool_call_answer_leaves_out_reasoning_and_keeps_null_content() -> None:
    answer = {
        "candidates": [
            {
                "content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
                "finishReason": "STOP",
            }
        ]
    }
    message = wire(adapter().parse_response(json.dumps(answer).encode(), MODEL))["choices"][0][
        "message"
    ]
    assert set(message) == {"role", "content", "refusal", "annotations", "tool_calls"}
    assert message["content"] is None
