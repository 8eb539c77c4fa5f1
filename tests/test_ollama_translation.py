"""Ollama translation under the adapter contract: every field translated exactly or refused by
name, logprobs both ways, and answers in OpenAI's exact shape."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from proxy.chat import ChatChunk, decode_chat_request
from proxy.errors import InvalidRequest
from proxy.providers.ollama import OllamaAdapter

ADAPTER = OllamaAdapter("ollama", None)
HI = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


def body_of(**fields: object) -> dict[str, Any]:
    raw = json.dumps({"model": "ollama/x", "messages": HI, **fields}).encode()
    call = ADAPTER.chat_call(decode_chat_request(raw), "llama3.2")
    result: dict[str, Any] = json.loads(call.body or b"")
    return result


def refused(**fields: object) -> InvalidRequest:
    raw = json.dumps({"model": "ollama/x", "messages": HI, **fields}).encode()
    with pytest.raises(InvalidRequest) as caught:
        ADAPTER.chat_call(decode_chat_request(raw), "llama3.2")
    assert caught.value.status == 400
    return caught.value


def wire(value: object) -> Any:
    return json.loads(msgspec.json.encode(value))


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
        ("verbosity", "low"),
        ("some_future_field", {"x": 1}),
        ("n", 3),
    ],
)
def test_a_field_that_changes_the_answer_is_refused_by_name(field: str, value: object) -> None:
    error = refused(**{field: value})
    assert error.param == field
    assert field in error.message


def test_one_call_per_answer_is_taken_and_not_sent() -> None:
    # Ollama has no such setting: the gateway keeps it (tests/test_one_tool_call.py).
    body = body_of(tools=TOOLS, parallel_tool_calls=False)
    assert body["tools"]
    assert "parallel_tool_calls" not in body


@pytest.mark.parametrize(
    "fields",
    [
        {"modalities": ["text"]},
        {"parallel_tool_calls": True, "tools": TOOLS},
        {"n": 1},
        {"logprobs": False},
        {"top_logprobs": 0},
        {"stream_options": {"include_usage": True}, "stream": True},
    ],
)
def test_default_values_of_untranslatable_fields_are_fine(fields: dict[str, Any]) -> None:
    body = body_of(**fields)
    assert not {"modalities", "parallel_tool_calls", "n", "logprobs"} & set(body)


def test_tuning_fields_are_dropped() -> None:
    body = body_of(
        user="u-1",
        metadata={"k": "v"},
        store=False,
        service_tier="auto",
        prompt_cache_key="pk",
        safety_identifier="sid",
    )
    assert body == {"model": "llama3.2", "messages": HI, "stream": False}


def test_logprobs_are_asked_for_at_the_top_level() -> None:
    body = body_of(logprobs=True, top_logprobs=3)
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    assert "options" not in body
    plain = body_of(logprobs=True)
    assert plain["logprobs"] is True
    assert "top_logprobs" not in plain
    assert refused(top_logprobs=2).param == "top_logprobs"
    assert refused(logprobs=True, top_logprobs=21).param == "top_logprobs"


# -- logprobs in answers -------------------------------------------------------------------------

OLLAMA_LOGPROBS = [
    {
        "token": "Hé",
        "logprob": -0.25,
        "bytes": [72, 195, 169],
        "top_logprobs": [
            {"token": "Hé", "logprob": -0.25, "bytes": [72, 195, 169]},
            {"token": "Hi", "logprob": -1.5},
        ],
    },
    {"token": "!", "logprob": 0},  # Go's omitempty: no bytes, no alternatives
]
OPENAI_CONTENT = [
    {
        "token": "Hé",
        "logprob": -0.25,
        "bytes": [72, 195, 169],
        "top_logprobs": [
            {"token": "Hé", "logprob": -0.25, "bytes": [72, 195, 169]},
            {"token": "Hi", "logprob": -1.5, "bytes": [72, 105]},
        ],
    },
    {"token": "!", "logprob": 0.0, "bytes": [33], "top_logprobs": []},
]


def final(**fields: Any) -> dict[str, Any]:
    return {
        "model": "llama3.2",
        "created_at": "2025-07-07T20:22:19.123456789Z",
        "message": {"role": "assistant", "content": "Hé!"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 5,
        "eval_count": 2,
        **fields,
    }


def test_logprobs_of_an_answer_in_openais_shape() -> None:
    answer = final(logprobs=OLLAMA_LOGPROBS)
    response = ADAPTER.parse_response(json.dumps(answer).encode(), "llama3.2")
    assert wire(response)["choices"][0]["logprobs"] == {
        "content": OPENAI_CONTENT,
        "refusal": None,
    }
    plain = ADAPTER.parse_response(json.dumps(final()).encode(), "llama3.2")
    assert wire(plain)["choices"][0]["logprobs"] is None


def test_each_streamed_chunk_carries_its_own_tokens_logprobs() -> None:
    first = {
        "model": "llama3.2",
        "created_at": "2025-07-07T20:22:19.18Z",
        "message": {"role": "assistant", "content": "Hé"},
        "done": False,
        "logprobs": OLLAMA_LOGPROBS[:1],
    }
    second = {**first, "message": {"role": "assistant", "content": "!"}}
    second["logprobs"] = OLLAMA_LOGPROBS[1:]
    last = final(message={"role": "assistant", "content": ""})
    raw = b"".join(json.dumps(o).encode() + b"\n" for o in (first, second, last))
    parser = ADAPTER.chunk_parser("llama3.2")
    chunks: list[ChatChunk] = [*parser.feed(raw), *parser.finish()]
    choices = [wire(c)["choices"][0] for c in chunks if c.choices]
    contents = [c["delta"].get("content") for c in choices]
    assert contents == ["", "Hé", "!", None]
    assert [c["logprobs"] for c in choices] == [
        None,
        {"content": OPENAI_CONTENT[:1], "refusal": None},
        {"content": OPENAI_CONTENT[1:], "refusal": None},
        None,
    ]
    # created is when Ollama began the answer, the same on every chunk.
    assert {c.created for c in chunks} == {1751919739}


# -- OpenAI's exact shape ------------------------------------------------------------------------


def test_an_answer_has_openais_shape_with_zero_counts_and_ollamas_time() -> None:
    body = wire(ADAPTER.parse_response(json.dumps(final()).encode(), "llama3.2"))
    assert body["created"] == 1751919739  # 2025-07-07T20:22:19Z: when Ollama made it
    assert body["object"] == "chat.completion"
    assert body["system_fingerprint"] is None
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hé!", "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def test_an_answer_without_a_time_is_stamped_now() -> None:
    answer = final()
    del answer["created_at"]
    body = wire(ADAPTER.parse_response(json.dumps(answer).encode(), "llama3.2"))
    assert body["created"] > 1_751_919_739


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "f"}}])
def test_a_forced_tool_call_is_refused_ollama_cannot_force_one(choice: object) -> None:
    error = refused(tools=TOOLS, tool_choice=choice)
    assert (error.param, error.code) == ("tool_choice", "unsupported_parameter")
    assert body_of(tools=TOOLS, tool_choice="auto")["tools"]
    assert "tools" not in body_of(tools=TOOLS, tool_choice="none")
