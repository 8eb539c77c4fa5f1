"""A 400 from the chat path names the field of the Responses request the client sent, never the
chat field the translation made of it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.chat import decode_chat_request
from proxy.errors import InvalidRequest
from proxy.providers.base import WireAdapter
from proxy.providers.gemini import GeminiAdapter
from proxy.providers.ollama import OllamaAdapter
from proxy.responses_to_chat import translate_request

GEMINI = GeminiAdapter("gemini", "key")
OLLAMA = OllamaAdapter("ollama", None)
IMAGE = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
CALL = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}


def refusal(adapter: WireAdapter, **fields: Any) -> tuple[InvalidRequest, InvalidRequest]:
    """The chat path's 400 for a translated body, and the same renamed for the client."""
    chat, params = translate_request({"model": "m", "instructions": "Be brief.", **fields}, [])
    with pytest.raises(InvalidRequest) as caught:
        adapter.chat_call(decode_chat_request(json.dumps(chat).encode()), "m")
    return caught.value, params.renamed(caught.value)


@pytest.mark.parametrize(
    ("adapter", "fields", "chat_param", "param"),
    [
        (
            GEMINI,
            {
                "input": [
                    {"role": "user", "content": "go"},
                    CALL,
                    {
                        "type": "function_call_output",
                        "call_id": "call_1",
                        "output": [{"type": "input_text", "text": "x"}, IMAGE],
                    },
                ]
            },
            "messages[3].content[1]",
            "input[2].output[1]",
        ),
        (
            OLLAMA,
            {
                "input": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "read"},
                            {
                                "type": "input_file",
                                "file_data": "data:application/pdf;base64,JVBERi0=",
                                "filename": "a.pdf",
                            },
                        ],
                    }
                ]
            },
            "messages[1].content[1]",
            "input[0].content[1]",
        ),
        (
            OLLAMA,
            {"input": [{"role": "user", "content": "go"}, {**CALL, "arguments": "not json"}]},
            "messages[2].tool_calls[0].function.arguments",
            "input[1].arguments",
        ),
        (
            GEMINI,
            {"input": "x", "tools": [{"type": "function", "name": "f", "parameters": [1]}]},
            "tools[0].function.parameters",
            "tools[0].parameters",
        ),
        (
            GEMINI,
            {"input": "x", "reasoning": {"effort": "extreme"}},
            "reasoning_effort",
            "reasoning.effort",
        ),
        (GEMINI, {"input": "x", "temperature": "hot"}, "temperature", "temperature"),
    ],
)
def test_a_chat_path_refusal_is_renamed_to_the_field_sent(
    adapter: WireAdapter, fields: dict[str, Any], chat_param: str, param: str
) -> None:
    raw, renamed = refusal(adapter, **fields)
    assert raw.param == chat_param
    assert renamed.param == param
    assert renamed.status == 400
    assert renamed.code == raw.code
    if chat_param in raw.message:
        assert param in renamed.message
        assert chat_param == param or chat_param not in renamed.message


@pytest.mark.parametrize(
    ("chat_param", "param"),
    [
        ("messages", "input"),
        ("messages[0]", "instructions"),
        ("messages[0].content", "instructions"),
        ("messages[1]", "previous_response_id"),
        ("messages[2].role", "input[0].role"),
        ("messages[2].content", "input[0].content"),
        ("messages[2].content[0].text", "input[0].content"),  # joined assistant text
        ("messages[2].tool_calls[1].id", "input[2].call_id"),
        ("messages[2].tool_calls[0].function", "input[1]"),
        ("messages[2].tool_calls[5]", "input[0]"),
        ("messages[3].tool_call_id", "input[3].call_id"),
        ("messages[3].content", "input[3].output"),
        ("messages[9]", "input"),
        ("max_completion_tokens", "max_output_tokens"),
        ("response_format.json_schema.schema", "text.format.schema"),
        ("response_format", "text.format"),
        ("tool_choice.function.name", "tool_choice.name"),
        ("tool_choice.allowed_tools.tools[0].function.name", "tool_choice.tools[0].name"),
        ("tool_choice.allowed_tools.mode", "tool_choice.mode"),
        ("logprobs", "include"),
        ("stream_options", "stream"),
        ("top_p", "top_p"),
        (None, None),
    ],
)
def test_every_renamed_chat_field_maps_back(chat_param: str | None, param: str | None) -> None:
    history = [{"type": "message", "role": "user", "content": "earlier"}]
    body = {
        "model": "m",
        "instructions": "x",
        "input": [
            {
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "a"},
                    {"type": "output_text", "text": "b"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "done"},
        ],
    }
    _, params = translate_request(body, history)
    assert params.rename(chat_param) == param


def test_an_error_of_another_kind_is_left_as_it_is() -> None:
    _, params = translate_request({"model": "m", "input": "x"}, [])
    error = InvalidRequest("fine as it is", param="temperature")
    assert params.renamed(error) is error
