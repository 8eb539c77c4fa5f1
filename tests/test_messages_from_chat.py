"""A chat answer as an Anthropic Messages response (anthropic-messages.md §3, §8), parsed by the
official SDK as ``messages.create()`` returns it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from anthropic.types import Message

from proxy.chat import (
    ChatResponse,
    Choice,
    CompletionTokensDetails,
    PromptTokensDetails,
    ResponseMessage,
    ResponseToolCall,
    Usage,
)
from proxy.chat_form import FunctionCall
from proxy.errors import UpstreamError
from proxy.messages_from_chat import (
    message_object,
    message_usage,
    new_message_id,
    new_tool_use_id,
)
from tests.messages_sdk import created

MODEL = "claude-sonnet-4-5"
USAGE = Usage(
    prompt_tokens=120,
    completion_tokens=80,
    total_tokens=200,
    prompt_tokens_details=PromptTokensDetails(cached_tokens=64),
    completion_tokens_details=CompletionTokensDetails(reasoning_tokens=50),
)


def answer(
    content: str | None = None,
    *,
    reasoning: str | None = None,
    refusal: str | None = None,
    calls: list[tuple[str, str, str]] | None = None,
    finish: str | None = "stop",
    usage: Usage | None = USAGE,
) -> ChatResponse:
    fields: dict[str, Any] = {"content": content, "refusal": refusal}
    if reasoning is not None:
        fields["reasoning_content"] = reasoning
    if calls is not None:
        fields["tool_calls"] = [ResponseToolCall(i, FunctionCall(n, a)) for i, n, a in calls]
    choice = Choice(message=ResponseMessage(**fields), finish_reason=finish)
    return ChatResponse(id="c1", created=1, model="gpt", choices=[choice], usage=usage)


def build(response: ChatResponse, raw: dict[str, Any] | None = None) -> dict[str, Any]:
    message = message_object(response, raw or {}, "msg_01abc", MODEL)
    # The SDK reads it as it reads Claude's, whole and through messages.create().
    Message.model_validate(message)
    assert created(message).model_dump() == Message.model_validate(message).model_dump()
    return message


def test_a_text_answer_is_one_text_block_ending_the_turn() -> None:
    assert build(answer("Hello!")) == {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "stop_details": None,
        "usage": {
            "input_tokens": 56,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 64,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 80,
            "output_tokens_details": {"thinking_tokens": 50},
        },
    }


def test_usage_input_excludes_the_cached_part_and_totals_add_up() -> None:
    usage = message_usage(USAGE)
    total = (
        usage["input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["cache_creation_input_tokens"]
    )
    assert total == USAGE.prompt_tokens
    assert usage["output_tokens"] == USAGE.completion_tokens


def test_no_usage_from_the_provider_is_zeros_not_a_crash() -> None:
    message = build(answer("x", usage=None))
    assert message["usage"]["input_tokens"] == 0
    assert message["usage"]["output_tokens"] == 0


def test_reasoning_comes_first_as_a_thinking_block_with_the_gateways_empty_signature() -> None:
    message = build(answer("42.", reasoning="Six times seven."))
    assert message["content"] == [
        {"type": "thinking", "thinking": "Six times seven.", "signature": ""},
        {"type": "text", "text": "42."},
    ]


def test_thinking_display_omitted_keeps_the_block_but_not_its_text() -> None:
    raw = {"thinking": {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}}
    message = build(answer("42.", reasoning="Six times seven."), raw)
    assert message["content"][0] == {"type": "thinking", "thinking": "", "signature": ""}


def test_tool_calls_are_tool_use_blocks_with_the_providers_ids() -> None:
    response = answer(
        "Checking.",
        calls=[("call_abc", "get_weather", '{"city": "Paris"}'), ("call_def", "now", "")],
        finish="tool_calls",
    )
    message = build(response)
    assert message["content"][1:] == [
        {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_def", "name": "now", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"


def test_a_missing_or_repeated_call_id_gets_a_fresh_toolu_id() -> None:
    response = answer(calls=[("", "a", "{}"), ("call_1", "b", "{}"), ("call_1", "c", "{}")])
    ids = [block["id"] for block in build(response)["content"]]
    assert ids[1] == "call_1"
    assert len(set(ids)) == 3
    assert all(re.fullmatch(r"toolu_01[A-Za-z0-9]{22}", ids[i]) for i in (0, 2))


def test_tool_calls_under_a_stop_finish_still_end_in_tool_use() -> None:
    # Gemini says "stop" when it calls tools; Claude always says tool_use.
    assert build(answer(calls=[("c", "f", "{}")], finish="stop"))["stop_reason"] == "tool_use"


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]", '"text"', "null"])
def test_arguments_that_are_no_json_object_are_a_502_naming_the_tool(arguments: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        message_object(answer(calls=[("c", "get_weather", arguments)]), {}, "msg_1", MODEL)
    assert "'get_weather'" in caught.value.message
    assert caught.value.status == 502
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        (None, "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
    ],
)
def test_finish_reasons_are_stop_reasons(finish: str | None, reason: str) -> None:
    message = build(answer("x", finish=finish))
    assert message["stop_reason"] == reason
    assert message["stop_sequence"] is None


def test_a_refusal_is_text_ending_in_a_refusal() -> None:
    message = build(answer(refusal="I can't help with that."))
    assert message["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert message["stop_reason"] == "refusal"
    assert message["stop_details"] == {"type": "refusal", "category": None, "explanation": None}


def test_an_empty_answer_is_an_empty_content_list() -> None:
    assert build(answer(None))["content"] == []
    no_choice = ChatResponse(id="c", created=1, model="gpt", choices=[], usage=None)
    assert build(no_choice)["stop_reason"] == "end_turn"


def test_ids_have_anthropics_form() -> None:
    assert re.fullmatch(r"msg_01[A-Za-z0-9]{22}", new_message_id())
    assert re.fullmatch(r"toolu_01[A-Za-z0-9]{22}", new_tool_use_id())
    assert new_message_id() != new_message_id()
