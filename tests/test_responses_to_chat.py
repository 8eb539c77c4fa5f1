"""A Responses request as a chat body (responses-api.md §8): every field translated exactly or
refused with a 400 naming it, tuning dropped, and the body taken by the chat path as it is."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.chat import ChatResponse, Choice, ResponseMessage, ResponseToolCall, decode_chat_request
from proxy.chat_form import FunctionCall
from proxy.errors import InvalidRequest
from proxy.providers.base import WireAdapter
from proxy.providers.gemini import GeminiAdapter
from proxy.providers.ollama import OllamaAdapter
from proxy.responses_from_chat import response_object
from proxy.responses_to_chat import DROPPED_FIELDS, TRANSLATED_FIELDS, chat_body, input_items

MODEL = "gemini-2.5-flash"


def translate(*, history: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    body = {"model": MODEL, "input": "hi", **fields}
    chat = chat_body(body, history or [])
    # The chat path takes the body as a client's, down to the strict form translators read.
    decode_chat_request(json.dumps(chat).encode()).form()
    return chat


def refused(*, history: list[dict[str, Any]] | None = None, **fields: Any) -> InvalidRequest:
    body = {"model": MODEL, "input": "hi", **fields}
    with pytest.raises(InvalidRequest) as caught:
        chat_body(body, history or [])
    assert caught.value.status == 400
    return caught.value


def user(text: str) -> dict[str, Any]:
    """A user message in chat's form."""
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def said(text: str) -> dict[str, Any]:
    """A user message item in the Responses form."""
    return {"role": "user", "content": [{"type": "input_text", "text": text}]}


# -- input ---------------------------------------------------------------------------------------


def test_a_string_input_is_one_user_message_and_instructions_come_first() -> None:
    chat = translate(instructions="Be brief.", input="Hello")
    assert chat == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
        ],
    }


def test_input_items_are_stored_in_the_item_form() -> None:
    assert input_items({"input": "Hello"}) == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]}
    ]
    sent = [{"role": "user", "content": "hi"}, {"type": "function_call_output", "call_id": "c"}]
    items = input_items({"input": sent})
    assert items[0] == {"type": "message", "role": "user", "content": "hi"}
    assert items[1] is sent[1]
    assert "type" not in sent[0]  # the client's dict is not changed
    assert input_items({}) == []
    assert input_items({"input": [{"id": "msg_1"}]}) == [{"type": "item_reference", "id": "msg_1"}]


@pytest.mark.parametrize(
    ("value", "param"),
    [
        (5, "input"),
        ({"role": "user"}, "input"),
        (["hi"], "input[0]"),
        ([{"content": "hi"}], "input[0].type"),
        ([{"type": 3}], "input[0].type"),
    ],
)
def test_an_input_of_the_wrong_shape_is_a_400_naming_it(value: object, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        input_items({"input": value})
    assert caught.value.param == param
    assert refused(input=value).param == param


def test_messages_of_every_role_keep_it_with_their_parts() -> None:
    chat = translate(
        input=[
            {"role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
            {"type": "message", "role": "system", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                    {
                        "type": "input_file",
                        "file_data": "data:application/pdf;base64,JV",
                        "filename": "a.pdf",
                    },
                    {"type": "input_file", "file_id": "file-1"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "phase": "final_answer",
                "content": [
                    {"type": "output_text", "text": "Hel", "annotations": []},
                    {"type": "output_text", "text": "lo"},
                ],
            },
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        ]
    )
    assert chat["messages"] == [
        {"role": "developer", "content": [{"type": "text", "text": "rules"}]},
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                },
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,JV", "filename": "a.pdf"},
                },
                {"type": "file", "file": {"file_id": "file-1"}},
            ],
        },
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
    ]


def test_function_calls_in_a_row_are_one_assistant_turn_answered_by_tool_messages() -> None:
    chat = translate(
        input=[
            said("weather in Paris and Rome?"),
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_a",
                "name": "w",
                "arguments": '{"c":"Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "call_b",
                "name": "w",
                "arguments": '{"c":"Rome"}',
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "call_b",
                "output": [
                    {"type": "input_text", "text": "rain"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
        ]
    )
    assert chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"c":"Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"c":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {
            "role": "tool",
            "tool_call_id": "call_b",
            "content": [
                {"type": "text", "text": "rain"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]


def test_calls_join_the_assistant_message_of_their_turn() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    chat = translate(input=[said("go"), {"role": "assistant", "content": "On it."}, call])
    assert chat["messages"][1] == {
        "role": "assistant",
        "content": "On it.",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }


def reasoning(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": text}],
        **extra,
    }


def test_reasoning_from_a_translated_provider_rides_on_the_next_assistant_message() -> None:
    history = [
        {"type": "message", **said("2+2?")},
        reasoning("Add them."),
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]},
    ]
    chat = translate(history=history, input="and 3+3?")
    assert chat["messages"] == [
        user("2+2?"),
        {"role": "assistant", "content": "4", "reasoning_content": "Add them."},
        user("and 3+3?"),
    ]
    # Before a function call too, which then opens the assistant turn.
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    chat = translate(input=[said("go"), reasoning("Call f."), call])
    assert chat["messages"][1]["reasoning_content"] == "Call f."
    assert chat["messages"][1]["tool_calls"][0]["id"] == "c1"


def test_encrypted_reasoning_and_reasoning_without_an_answer_are_dropped() -> None:
    chat = translate(
        input=[
            said("one"),
            reasoning("OpenAI's digest", encrypted_content="gAAAA-opaque"),
            {"role": "assistant", "content": "1"},
            reasoning("orphan"),
            said("two"),
        ]
    )
    assert chat["messages"] == [user("one"), {"role": "assistant", "content": "1"}, user("two")]
    assert "gAAAA" not in json.dumps(chat)


def test_history_comes_before_the_input_and_its_instructions_are_not_inherited() -> None:
    history = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first"}]},
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "ok", "annotations": [], "logprobs": []}],
        },
    ]
    chat = translate(history=history, instructions="New rules.", input="second")
    assert chat["messages"] == [
        {"role": "system", "content": "New rules."},
        user("first"),
        {"role": "assistant", "content": "ok"},
        user("second"),
    ]
    # A continuation may add no input at all.
    assert chat_body({"model": MODEL}, history)["messages"][-1]["content"] == "ok"


def test_a_request_with_no_input_and_no_history_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat_body({"model": MODEL, "instructions": "x"}, [])
    assert caught.value.param == "input"


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "item_reference", "id": "msg_1"}, "input[0]"),
        ({"id": "msg_1"}, "input[0]"),
        ({"type": "custom_tool_call", "call_id": "c", "name": "x", "input": ""}, "input[0].type"),
        ({"type": "web_search_call", "id": "ws_1", "status": "completed"}, "input[0].type"),
        ({"type": "computer_call", "id": "cu_1"}, "input[0].type"),
        ({"type": "local_shell_call", "id": "ls_1"}, "input[0].type"),
        ({"role": "user", "content": [{"type": "input_audio"}]}, "input[0].content[0].type"),
        (
            {"role": "user", "content": [{"type": "input_image", "file_id": "f"}]},
            "input[0].content[0].file_id",
        ),
        (
            {
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": "https://x", "detail": "original"}
                ],
            },
            "input[0].content[0].detail",
        ),
        (
            {"role": "user", "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}]},
            "input[0].content[0].file_url",
        ),
        (
            {
                "type": "function_call",
                "call_id": "c",
                "name": "f",
                "arguments": "{}",
                "namespace": "ns",
            },
            "input[0].namespace",
        ),
    ],
)
def test_items_with_no_chat_equivalent_are_refused_by_name(
    item: dict[str, Any], param: str
) -> None:
    error = refused(input=[item])
    assert error.param == param
    assert error.code == "unsupported_parameter"


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"role": "user"}, "input[0].content"),
        ({"role": "user", "content": None}, "input[0].content"),
        ({"role": "tool", "content": "x"}, "input[0].role"),
        ({"role": "user", "content": 5}, "input[0].content"),
        ({"role": "user", "content": [{"type": "input_text"}]}, "input[0].content[0].text"),
        ({"role": "user", "content": ["x"]}, "input[0].content[0]"),
        (
            {"role": "user", "content": [{"type": "refusal", "refusal": "no"}]},
            "input[0].content[0].type",
        ),
        (
            {"role": "system", "content": [{"type": "input_image", "image_url": "https://x"}]},
            "input[0].content[0].type",
        ),
        (
            {"role": "user", "content": [{"type": "input_file", "filename": "a"}]},
            "input[0].content[0]",
        ),
        ({"type": "function_call", "name": "f", "arguments": "{}"}, "input[0].call_id"),
        (
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": {}},
            "input[0].arguments",
        ),
        ({"type": "function_call_output", "call_id": "c", "output": 3}, "input[0].output"),
        ({"type": "reasoning", "summary": "x"}, "input[0].summary"),
    ],
)
def test_items_of_the_wrong_shape_are_a_400_naming_the_field(
    item: dict[str, Any], param: str
) -> None:
    assert refused(input=[item]).param == param


# -- tools ---------------------------------------------------------------------------------------


def test_flat_function_tools_become_nested_chat_tools() -> None:
    tool = {
        "type": "function",
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    }
    bare = {
        "type": "function",
        "name": "ping",
        "parameters": None,
        "strict": None,
        "defer_loading": False,
    }
    chat = translate(tools=[tool, bare])
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "ping"}},
    ]


@pytest.mark.parametrize(
    "kind",
    [
        "web_search",
        "web_search_2025_08_26",
        "web_search_preview",
        "file_search",
        "computer",
        "computer_use_preview",
        "code_interpreter",
        "image_generation",
        "mcp",
        "local_shell",
        "shell",
        "apply_patch",
        "tool_search",
        "namespace",
        "custom",
        "some_future_tool",
    ],
)
def test_built_in_and_custom_tools_are_refused_naming_the_tool(kind: str) -> None:
    function = {"type": "function", "name": "f"}
    error = refused(tools=[function, function, {"type": kind}])
    assert error.param == "tools[2].type"
    assert error.code == "unsupported_parameter"
    assert (kind in error.message) or kind == "custom"


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"type": "function", "name": "f", "defer_loading": True}, "tools[0].defer_loading"),
        ({"type": "function", "name": "f", "output_schema": {}}, "tools[0].output_schema"),
        ({"type": "function"}, "tools[0].name"),
        ("f", "tools[0]"),
    ],
)
def test_function_tools_the_chat_form_cannot_say_are_refused(tool: object, param: str) -> None:
    assert refused(tools=[tool]).param == param


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", "none"),
        ("auto", "auto"),
        ("required", "required"),
        ({"type": "function", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice_is_translated(choice: object, expected: object) -> None:
    assert (
        translate(tools=[{"type": "function", "name": "f"}], tool_choice=choice)["tool_choice"]
        == expected
    )


def test_allowed_tools_choice_is_nested_as_chat_nests_it() -> None:
    choice = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "f"}],
    }
    chat = chat_body({"model": MODEL, "input": "hi", "tool_choice": choice}, [])
    assert chat["tool_choice"] == {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "f"}}],
        },
    }


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ({"type": "web_search_preview"}, "tool_choice.type"),
        ({"type": "file_search"}, "tool_choice.type"),
        ({"type": "custom", "name": "x"}, "tool_choice.type"),
        ({"type": "mcp", "server_label": "s"}, "tool_choice.type"),
        (
            {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "file_search"}]},
            "tool_choice.tools[0].type",
        ),
        ("sometimes", "tool_choice"),
    ],
)
def test_a_tool_choice_of_a_hosted_tool_is_refused(choice: object, param: str) -> None:
    assert refused(tool_choice=choice).param == param


# -- settings ------------------------------------------------------------------------------------


def test_sampling_and_limits_are_carried_under_chat_names() -> None:
    chat = translate(
        max_output_tokens=300,
        temperature=0.2,
        top_p=0.9,
        parallel_tool_calls=False,
        user="u-1",
        metadata={"run": "7"},
        reasoning={"effort": "low", "summary": "auto"},
    )
    assert {key: value for key, value in chat.items() if key not in ("model", "messages")} == {
        "max_completion_tokens": 300,
        "temperature": 0.2,
        "top_p": 0.9,
        "parallel_tool_calls": False,
        "user": "u-1",
        "reasoning_effort": "low",
    }


def test_text_formats_become_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {
        "type": "json_schema",
        "name": "thing",
        "schema": schema,
        "strict": True,
        "description": "A thing",
    }
    chat = translate(text={"format": fmt, "verbosity": "low"})
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "thing",
            "schema": schema,
            "strict": True,
            "description": "A thing",
        },
    }
    assert translate(text={"format": {"type": "json_object"}})["response_format"] == {
        "type": "json_object"
    }
    assert "response_format" not in translate(text={"format": {"type": "text"}})
    assert (
        refused(text={"format": {"type": "json_schema", "schema": schema}}).param
        == "text.format.name"
    )
    assert refused(text={"format": {"type": "yaml"}}).param == "text.format.type"


def test_logprobs_are_asked_for_with_the_include_value() -> None:
    chat = translate(
        include=["message.output_text.logprobs", "reasoning.encrypted_content"], top_logprobs=3
    )
    assert (chat["logprobs"], chat["top_logprobs"]) == (True, 3)
    assert "logprobs" not in translate(include=["reasoning.encrypted_content"])
    assert refused(top_logprobs=2).param == "top_logprobs"
    error = refused(include=["reasoning.encrypted_content", "file_search_call.results"])
    assert (error.param, error.code) == ("include[1]", "unsupported_parameter")


def test_a_stream_asks_for_usage_on_its_last_chunk() -> None:
    chat = translate(stream=True, stream_options={"include_obfuscation": False})
    assert (chat["stream"], chat["stream_options"]) == (True, {"include_usage": True})
    assert "stream" not in translate(stream=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("background", True),
        ("conversation", "conv_1"),
        ("prompt", {"id": "pmpt_1"}),
        ("context_management", [{"type": "compaction"}]),
        ("moderation", {"model": "omni"}),
        ("some_future_field", 1),
    ],
)
def test_a_field_that_may_change_the_answer_is_refused_by_name(field: str, value: Any) -> None:
    error = refused(**{field: value})
    assert (error.param, error.code) == (field, "unsupported_parameter")
    assert field in error.message


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("reasoning", {"effort": "low", "mode": "x"}, "reasoning.mode"),
        ("text", {"format": {"type": "text"}, "shape": "x"}, "text.shape"),
    ],
)
def test_an_unknown_subfield_is_refused_by_its_path(field: str, value: Any, param: str) -> None:
    assert refused(**{field: value}).param == param


def test_tuning_fields_are_dropped() -> None:
    values: dict[str, Any] = {
        "prompt_cache_key": "session-1",
        "prompt_cache_retention": "24h",
        "prompt_cache_options": {"mode": "implicit"},
        "safety_identifier": "user-hash",
        "service_tier": "flex",
        "truncation": "auto",
        "store": False,
        "previous_response_id": "resp_1",
        "stream_options": {"include_obfuscation": True},
        "client_metadata": {"x": "y"},
        "max_tool_calls": 3,
        "metadata": {"k": "v"},
        "background": False,
    }
    assert set(values) - {"background"} == DROPPED_FIELDS
    assert translate(**values) == translate()


def test_the_request_codex_cli_sends_translates_whole() -> None:
    body = {
        "model": MODEL,
        "instructions": "You are Codex.",
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "list files"}],
            },
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA-opaque"},
            {
                "type": "function_call",
                "name": "shell",
                "arguments": '{"cmd":["ls"]}',
                "call_id": "call_1",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "a.txt\nb.txt"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Two files."}],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "thanks"}],
            },
        ],
        "tools": [
            {
                "type": "function",
                "name": "shell",
                "description": "Run",
                "strict": False,
                "parameters": {"type": "object"},
            }
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "5f0c-session",
        "text": {"verbosity": "medium"},
        "client_metadata": {"originator": "codex_cli_rs"},
    }
    chat = chat_body(body, [])
    decode_chat_request(json.dumps(chat).encode()).form()
    assert chat == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are Codex."},
            user("list files"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "shell", "arguments": '{"cmd":["ls"]}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a.txt\nb.txt"},
            {"role": "assistant", "content": "Two files."},
            user("thanks"),
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "shell",
                    "description": "Run",
                    "parameters": {"type": "object"},
                    "strict": False,
                },
            }
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning_effort": "medium",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_output_tokens", 0),
        ("max_output_tokens", "many"),
        ("max_output_tokens", True),
        ("stream", "yes"),
        ("top_logprobs", True),
        ("top_logprobs", -1),
        ("instructions", ["be brief"]),
    ],
)
def test_a_renamed_or_acted_on_field_of_the_wrong_type_is_a_400_naming_it(
    field: str, value: Any
) -> None:
    # The chat path would name the chat field (max_completion_tokens), which the client never sent.
    include = ["message.output_text.logprobs"]
    assert refused(include=include, **{field: value}).param == field


def test_a_stored_answer_replays_as_the_chat_turn_it_came_from() -> None:
    turn = ResponseMessage(
        content="Checking.",
        reasoning_content="Need the weather.",
        tool_calls=[ResponseToolCall("call_1", FunctionCall("w", '{"c":"Oslo"}'))],
    )
    answer = ChatResponse(
        id="c", created=1, model=MODEL, choices=[Choice(message=turn, finish_reason="tool_calls")]
    )
    first = {"model": MODEL, "input": "weather in Oslo?"}
    stored = response_object(answer, first, response_id="resp_1", created_at=1, model=MODEL)
    history = input_items(first) + stored["output"]
    output = {"type": "function_call_output", "call_id": "call_1", "output": "cold"}
    chat = translate(history=history, input=[output])
    assert chat["messages"] == [
        user("weather in Oslo?"),
        {
            "role": "assistant",
            "content": "Checking.",
            "reasoning_content": "Need the weather.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"c":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
    ]


@pytest.mark.parametrize(
    "metadata",
    ["run-1", {"run": 1}, {f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}],
)
def test_metadata_that_could_not_be_echoed_is_a_400(metadata: object) -> None:
    # Dropped on the way to chat, but echoed on the response and kept with it: OpenAI's limits.
    assert refused(metadata=metadata).param == "metadata"


@pytest.mark.parametrize("adapter", [GeminiAdapter("gemini", "key"), OllamaAdapter("ollama", None)])
def test_a_full_translated_body_is_taken_by_the_translating_adapters(adapter: WireAdapter) -> None:
    body = {
        "model": "m",
        "instructions": "Answer in JSON.",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is in the image?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                ],
            },
            reasoning("Look first."),
            {"type": "function_call", "call_id": "call_1", "name": "look", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
        ],
        "tools": [{"type": "function", "name": "look", "parameters": {"type": "object"}}],
        "tool_choice": "auto",
        "text": {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}}},
        "reasoning": {"effort": "low", "summary": "auto"},
        "max_output_tokens": 100,
        "temperature": 0.5,
        "stream": True,
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "metadata": {"run": "1"},
        "user": "u-1",
        "prompt_cache_key": "s-1",
    }
    request = decode_chat_request(json.dumps(chat_body(body, [])).encode())
    assert adapter.chat_call(request, "m").body


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(
    [
        "type",
        "role",
        "content",
        "text",
        "call_id",
        "name",
        "arguments",
        "output",
        "summary",
        "image_url",
        "file_data",
        "file_id",
        "detail",
        "encrypted_content",
        "id",
        "refusal",
    ]
)
_kinds = st.sampled_from(
    [
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "input_text",
        "output_text",
        "input_image",
        "input_file",
        "refusal",
        "summary_text",
        "user",
        "assistant",
        "system",
    ]
)
_shaped = st.recursive(
    _kinds | _json,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=12,
)
_fields = st.sampled_from(sorted(TRANSLATED_FIELDS | DROPPED_FIELDS | {"conversation", "x"}))


_items = st.lists(st.dictionaries(_keys, _shaped, max_size=5), max_size=3)


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(_fields, _shaped, max_size=5), input=_items, history=_items)
def test_any_body_is_translated_or_refused_by_name_never_a_crash(
    fields: dict[str, Any], input: list[dict[str, Any]], history: list[dict[str, Any]]
) -> None:
    body = {"model": MODEL, "input": input or "hi", **fields}
    items = history
    refusal: InvalidRequest | None = None
    try:
        json.dumps(chat_body(body, items))
    except InvalidRequest as exc:
        refusal = exc
    assert refusal is None or refusal.param
