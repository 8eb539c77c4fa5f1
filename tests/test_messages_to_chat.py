"""An Anthropic Messages request as a chat body (anthropic-messages.md §8 read right to left):
every field translated, dropped (and listed) or refused by name, and Claude Code's request
shapes (§9) taken cleanly by the chat path."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from proxy.chat import chat_request_of
from proxy.errors import InvalidRequest
from proxy.messages_to_chat import (
    COUNT_TOKENS_FIELDS,
    DROPPED_FIELDS,
    count_tokens_body,
    translate_request,
)
from proxy.providers.base import WireAdapter
from proxy.providers.gemini import GeminiAdapter
from proxy.providers.ollama import OllamaAdapter
from proxy.providers.openai_compat import OpenAICompatAdapter

BASE: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Hello"}],
}


def body(**fields: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), **fields}


def chat(**fields: Any) -> dict[str, Any]:
    raw, _ = translate_request(body(**fields))
    chat_request_of(raw)  # the chat path takes it as it takes a client's own
    return raw


def refused(**fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        translate_request(body(**fields))
    assert caught.value.status == 400
    assert caught.value.param is not None
    assert caught.value.message.startswith(caught.value.param + ": ")
    return caught.value


def test_a_plain_request_is_a_chat_body() -> None:
    assert chat() == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 1024,
    }


def test_sampling_and_stop_sequences_carry_over() -> None:
    raw = chat(temperature=0.2, top_p=0.9, stop_sequences=["END", "\n\nHuman:"])
    assert raw["temperature"] == 0.2
    assert raw["top_p"] == 0.9
    assert raw["stop"] == ["END", "\n\nHuman:"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"temperature": True}, "temperature"),
        ({"stop_sequences": ["ok", "  "]}, "stop_sequences.1"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"metadata": {"user_id": 7}}, "metadata.user_id"),
        ({"metadata": {"user_id": "u", "org": "x"}}, "metadata.org"),
    ],
)
def test_values_of_the_wrong_shape_are_refused_by_name(fields: dict[str, Any], param: str) -> None:
    assert refused(**fields).param == param


def test_max_tokens_is_required_and_zero_is_refused() -> None:
    raw = body()
    del raw["max_tokens"]
    with pytest.raises(InvalidRequest) as caught:
        translate_request(raw)
    assert caught.value.message == "max_tokens: Field required"
    error = refused(max_tokens=0)
    assert error.param == "max_tokens"
    assert "pre-warm" in error.message


def test_an_unknown_top_level_field_is_refused_as_anthropic_refuses_it() -> None:
    for field in ("user", "n", "reasoning_effort", "stream_options", "max_completion_tokens"):
        error = refused(**{field: 1})
        assert error.message == f"{field}: Extra inputs are not permitted"


def test_fields_that_only_tune_are_dropped_and_listed() -> None:
    assert {
        "top_k",
        "service_tier",
        "cache_control",
        "context_management",
        "inference_geo",
        "speed",
        "diagnostics",
    } == DROPPED_FIELDS
    raw = chat(
        top_k=40,
        service_tier="auto",
        cache_control={"type": "ephemeral"},
        context_management={"edits": [{"type": "clear_tool_uses_20250919"}]},
        inference_geo="us",
        speed="fast",
        diagnostics={"cache_divergence": True},
    )
    assert set(raw) == {"model", "messages", "max_tokens"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}]},
            "mcp_servers",
        ),
        ({"container": "container_1"}, "container"),
    ],
)
def test_features_run_at_anthropic_are_refused(fields: dict[str, Any], param: str) -> None:
    error = refused(**fields)
    assert error.param == param
    assert error.code == "unsupported_parameter"


def test_metadata_user_id_is_the_chat_user() -> None:
    user_id = "user_abc_account_1f2e_session_9a8b"
    assert chat(metadata={"user_id": user_id})["user"] == user_id
    assert "user" not in chat(metadata={"user_id": None})


def test_a_stream_asks_for_usage_on_the_last_chunk() -> None:
    raw = chat(stream=True)
    assert raw["stream"] is True
    assert raw["stream_options"] == {"include_usage": True}
    assert "stream" not in chat(stream=False)


# -- system -------------------------------------------------------------------------------------


def test_a_system_string_is_a_system_message() -> None:
    assert chat(system="Be brief.")["messages"][0] == {"role": "system", "content": "Be brief."}


def test_system_blocks_keep_their_text_and_lose_cache_control_and_the_billing_header() -> None:
    raw = chat(
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.3; cch=1f;"},
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Be careful.", "cache_control": {"type": "ephemeral"}},
        ]
    )
    assert raw["messages"][0] == {
        "role": "system",
        "content": [
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Be careful."},
        ],
    }


def test_a_system_block_of_another_type_is_refused() -> None:
    error = refused(system=[{"type": "image", "source": {}}])
    assert error.param == "system.0.type"


def test_a_system_turn_is_a_system_message_where_it_stands() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "system", "content": "Now in French."},
        {"role": "user", "content": "b"},
    ]
    assert [m["role"] for m in chat(messages=messages)["messages"]] == ["user", "system", "user"]


def test_a_turn_of_an_unknown_role_is_refused() -> None:
    assert refused(messages=[{"role": "tool", "content": "x"}]).param == "messages.0.role"


# -- content blocks --------------------------------------------------------------------------


def user(*blocks: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


def test_text_and_images_are_chat_parts() -> None:
    raw = chat(
        messages=user(
            {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
            },
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        )
    )
    assert raw["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    ]


def test_documents_are_files_or_text() -> None:
    raw = chat(
        messages=user(
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                "title": "report.pdf",
                "context": "Quarterly report",
            },
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "Plain words."},
                "title": "Notes",
            },
        )
    )
    assert raw["messages"][0]["content"] == [
        {"type": "text", "text": "Quarterly report"},
        {
            "type": "file",
            "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "report.pdf"},
        },
        {"type": "text", "text": "Notes\n\nPlain words."},
    ]


@pytest.mark.parametrize(
    ("block", "param"),
    [
        (
            {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}},
            "messages.0.content.0.source.media_type",
        ),
        (
            {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
            "messages.0.content.0.source.type",
        ),
        (
            {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}},
            "messages.0.content.0.source.type",
        ),
        (
            {"type": "document", "source": {"type": "file", "file_id": "file_1"}},
            "messages.0.content.0.source.type",
        ),
        (
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                "citations": {"enabled": True},
            },
            "messages.0.content.0.citations",
        ),
        (
            {"type": "search_result", "source": "x", "title": "t", "content": []},
            "messages.0.content.0.type",
        ),
        ({"type": "container_upload", "file_id": "f"}, "messages.0.content.0.type"),
        ({"type": "tool_use", "id": "t", "name": "f", "input": {}}, "messages.0.content.0.type"),
        ({"type": "thinking", "thinking": "x", "signature": "s"}, "messages.0.content.0.type"),
        ({"text": "no type"}, "messages.0.content.0.type"),
        ({"type": "text"}, "messages.0.content.0.text"),
    ],
)
def test_blocks_chat_cannot_carry_are_refused_by_path(block: dict[str, Any], param: str) -> None:
    assert refused(messages=user(block)).param == param


def test_server_tool_blocks_in_an_assistant_turn_are_refused() -> None:
    messages = [
        {"role": "user", "content": "search"},
        {
            "role": "assistant",
            "content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
            ],
        },
    ]
    assert refused(messages=messages).param == "messages.1.content.0.type"


# -- tools over turns -------------------------------------------------------------------------

TURNS: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Claude's own.", "signature": "EqQBCkYI"},
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
            {"type": "text", "text": "I'll check."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}},
        ],
    },
    {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18°C"},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_02",
                "content": [{"type": "text", "text": "12:00"}, {"type": "text", "text": "CET"}],
            },
            {"type": "text", "text": "And tomorrow?"},
        ],
    },
]


def test_tool_use_and_tool_results_are_tool_calls_and_tool_messages() -> None:
    messages = chat(messages=TURNS)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "I'll check.",
        "tool_calls": [
            {
                "id": "toolu_01",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "toolu_02",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    }
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "toolu_01", "content": "18°C"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "12:00\nCET"},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]


def test_an_assistant_turn_of_tool_calls_only_has_no_content() -> None:
    turns = copy.deepcopy(TURNS)
    turns[1]["content"] = turns[1]["content"][3:]
    assert chat(messages=turns)["messages"][1]["content"] is None


def test_claudes_thinking_is_dropped_and_the_gateways_own_goes_back_as_reasoning() -> None:
    turns = copy.deepcopy(TURNS)
    turns[1]["content"].insert(0, {"type": "thinking", "thinking": "Mine.", "signature": ""})
    assistant = chat(messages=turns)["messages"][1]
    assert assistant["reasoning_content"] == "Mine."
    assert "reasoning_content" not in chat(messages=TURNS)["messages"][1]


def test_a_tool_error_keeps_its_mark() -> None:
    turns = copy.deepcopy(TURNS)
    turns[2]["content"][0]["is_error"] = True
    turns[2]["content"][1]["is_error"] = True
    turns[2]["content"][1]["content"] = []
    messages = chat(messages=turns)["messages"]
    assert messages[2]["content"] == "Error: 18°C"
    assert messages[3]["content"] == "Error"


def test_images_a_tool_returned_move_to_the_user_message_after_the_tool_messages() -> None:
    turns = copy.deepcopy(TURNS)
    turns[2]["content"][1]["content"].append(
        {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}}
    )
    raw, params = translate_request(body(messages=turns))
    messages = raw["messages"]
    assert messages[3] == {"role": "tool", "tool_call_id": "toolu_02", "content": "12:00\nCET"}
    assert messages[4]["content"] == [
        {"type": "text", "text": "(The result of tool call toolu_02 included the following.)"},
        {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lG"}},
        {"type": "text", "text": "And tomorrow?"},
    ]
    # A 400 about the moved image names the block the client sent.
    assert (
        params.rename("messages[4].content[1].image_url")
        == "messages.2.content.1.content.2.image_url"
    )
    assert params.rename("messages[4].content[2]") == "messages.2.content.2"


def test_a_tool_use_input_must_be_an_object() -> None:
    turns = copy.deepcopy(TURNS)
    turns[1]["content"][3]["input"] = "city=Paris"
    assert refused(messages=turns).param == "messages.1.content.3.input"


def test_tools_and_their_schemas_are_function_tools() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
        "additionalProperties": False,
    }
    raw = chat(
        tools=[
            {
                "name": "Bash",
                "description": "Run a command.",
                "input_schema": schema,
                "cache_control": {"type": "ephemeral"},
                "strict": True,
                "eager_input_streaming": True,
            },
            {
                "type": "custom",
                "name": "lookup",
                "input_schema": {"type": "object"},
                "input_examples": [{"q": "x"}],
            },
        ]
    )
    assert raw["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Bash",
                "parameters": schema,
                "description": "Run a command.",
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object"},
                "description": 'Examples of input:\n{"q": "x"}',
            },
        },
    ]


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"type": "bash_20250124", "name": "bash"},
        {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
        {"type": "computer_20250124", "name": "computer", "display_width_px": 1024},
        {"type": "code_execution_20250825", "name": "code_execution"},
    ],
)
def test_anthropic_defined_and_server_tools_are_refused_by_type(tool: dict[str, Any]) -> None:
    error = refused(tools=[{"name": "ok", "input_schema": {"type": "object"}}, tool])
    assert error.param == "tools.1.type"
    assert tool["type"] in error.message


@pytest.mark.parametrize(
    ("tool", "param"),
    [
        ({"name": "f"}, "tools.0.input_schema"),
        ({"input_schema": {"type": "object"}}, "tools.0.name"),
        ({"name": "f", "input_schema": {}, "defer_loading": True}, "tools.0.defer_loading"),
        (
            {"name": "f", "input_schema": {}, "allowed_callers": ["code_execution_20250825"]},
            "tools.0.allowed_callers",
        ),
        ({"name": "f", "input_schema": {}, "parameters": {}}, "tools.0.parameters"),
    ],
)
def test_tools_of_the_wrong_shape_are_refused_by_path(tool: dict[str, Any], param: str) -> None:
    assert refused(tools=[tool]).param == param


TOOL = [{"name": "get_weather", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
        ({"type": "any", "disable_parallel_tool_use": False}, {"tool_choice": "required"}),
    ],
)
def test_tool_choice_is_chats(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    raw = chat(tools=TOOL, tool_choice=choice)
    assert {
        key: raw[key] for key in ("tool_choice", "parallel_tool_calls") if key in raw
    } == expected


def test_a_tool_choice_of_an_unknown_type_is_refused() -> None:
    assert refused(tools=TOOL, tool_choice={"type": "required"}).param == "tool_choice.type"
    assert refused(tools=TOOL, tool_choice="auto").param == "tool_choice"


# -- thinking and output_config ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "effort"),
    [
        (1024, "low"),
        (4000, "low"),
        (4096, "medium"),
        (10000, "medium"),
        (16384, "high"),
        (31999, "high"),
    ],
)
def test_a_thinking_budget_is_an_effort(budget: int, effort: str) -> None:
    raw = chat(max_tokens=32000, thinking={"type": "enabled", "budget_tokens": budget})
    assert raw["reasoning_effort"] == effort


def test_adaptive_and_disabled_thinking_leave_the_providers_default() -> None:
    for kind in ("adaptive", "disabled", "between_tools"):
        assert "reasoning_effort" not in chat(thinking={"type": kind, "display": "summarized"})


def test_output_config_effort_is_the_effort_and_wins_over_a_budget() -> None:
    raw = chat(
        thinking={"type": "enabled", "budget_tokens": 2000}, output_config={"effort": "high"}
    )
    assert raw["reasoning_effort"] == "high"
    assert (
        chat(thinking={"type": "adaptive"}, output_config={"effort": "max"})["reasoning_effort"]
        == "max"
    )


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "on"}}, "thinking.type"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"output_config": {"task_budget": 5}}, "output_config.task_budget"),
        ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format.type"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema"),
    ],
)
def test_thinking_and_output_config_of_the_wrong_shape_are_refused(
    fields: dict[str, Any], param: str
) -> None:
    assert refused(**fields).param == param


def test_an_output_format_is_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    raw = chat(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert raw["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


# -- renaming the chat path's 400s ------------------------------------------------------------


def test_the_chat_paths_field_names_are_renamed_to_the_clients() -> None:
    _, params = translate_request(
        body(
            system="s",
            messages=TURNS,
            tools=TOOL,
            thinking={"type": "enabled", "budget_tokens": 2048},
            stop_sequences=["x"],
        )
    )
    expected = {
        "messages[0].content": "system",
        "messages[1].content": "messages.0.content",
        "messages[2].tool_calls[1].function.arguments": "messages.1.content.4.input",
        "messages[2].tool_calls[0].function.name": "messages.1.content.3.name",
        "messages[2].content": "messages.1.content",
        "messages[3].tool_call_id": "messages.2.content.0.tool_use_id",
        "messages[4].content": "messages.2.content.1.content",
        "messages[5].content[0].text": "messages.2.content.2.text",
        "messages[5].role": "messages.2.role",
        "messages[9]": "messages",
        "tools[0].function.parameters.properties": "tools.0.input_schema.properties",
        "tools[0].function.name": "tools.0.name",
        "tool_choice.function.name": "tool_choice.name",
        "parallel_tool_calls": "tool_choice.disable_parallel_tool_use",
        "stop[0]": "stop_sequences.0",
        "stop": "stop_sequences",
        "reasoning_effort": "thinking.budget_tokens",
        "response_format.json_schema.schema": "output_config.format.schema",
        "user": "metadata.user_id",
        "max_tokens": "max_tokens",
        "temperature": "temperature",
    }
    assert {chat: params.rename(chat) for chat in expected} == expected
    assert params.rename(None) is None


def test_a_renamed_error_names_the_clients_field_in_its_message_too() -> None:
    _, params = translate_request(body(messages=TURNS))
    error = InvalidRequest(
        "Bad value at 'messages[2].tool_call_id'.", param="messages[2].tool_call_id"
    )
    renamed = params.renamed(error)
    assert renamed.param == "messages.2.content.0.tool_use_id"
    assert renamed.message == "Bad value at 'messages.2.content.0.tool_use_id'."


# -- Claude Code's request (§9) ---------------------------------------------------------------


def claude_code_request() -> dict[str, Any]:
    """A request shaped as Claude Code 2.1 sends it (from published captures)."""
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"path": {"type": "string", "description": "Absolute path"}},
        "required": ["path"],
        "additionalProperties": False,
    }
    names = ["Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit", "MultiEdit"]
    names += ["Write", "NotebookEdit", "WebFetch", "TodoWrite", "WebSearch", "BashOutput"]
    names += ["KillShell", "SlashCommand", "Skill", "AskUserQuestion", "mcp__ide__getDiagnostics"]
    tools: list[dict[str, Any]] = [
        {"name": name, "description": f"The {name} tool.", "input_schema": schema} for name in names
    ]
    tools[-1]["cache_control"] = {"type": "ephemeral"}
    return {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {
                "type": "text",
                "text": "x-anthropic-billing-header: cc_version=2.1.3; cc_entrypoint=cli; cch=0;",
            },
            {
                "type": "text",
                "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "text", "text": "Long instructions…", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>Context.</system-reminder>"},
                    {
                        "type": "text",
                        "text": "Read setup.py",
                        "cache_control": {"type": "ephemeral"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use Read.", "signature": "ErUBCkYIBRgCIkD"},
                    {"type": "text", "text": "Reading it."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01A",
                        "name": "Read",
                        "input": {"path": "/x/setup.py"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01A",
                        "content": [
                            {"type": "text", "text": "     1\tfrom setuptools import setup"}
                        ],
                    },
                    {"type": "text", "text": "<system-reminder>Todo list empty.</system-reminder>"},
                ],
            },
        ],
        "tools": tools,
        "metadata": {"user_id": "user_5f3a_account_0c1d-e2f3_session_4a5b-6c7d"},
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
    }


def test_claude_codes_request_translates_cleanly() -> None:
    raw, _ = translate_request(claude_code_request())
    request = chat_request_of(raw)
    form = request.form()  # the strict internal form every translating adapter builds from
    assert request.stream
    assert request.include_usage
    assert [m.role for m in form.messages] == ["system", "user", "assistant", "tool", "user"]
    system = raw["messages"][0]["content"]
    assert [part["text"][:11] for part in system] == ["You are Cla", "Long instru"]
    assert len(raw["tools"]) == 20
    assert raw["tools"][0]["function"]["parameters"]["additionalProperties"] is False
    assert raw["reasoning_effort"] == "medium"
    assert raw["user"].startswith("user_5f3a")
    assert "cache_control" not in json.dumps(raw)
    assert raw["messages"][3] == {
        "role": "tool",
        "tool_call_id": "toolu_01A",
        "content": "     1\tfrom setuptools import setup",
    }


# -- count_tokens ----------------------------------------------------------------------------


def test_count_tokens_takes_its_own_fields_only() -> None:
    assert {"max_tokens", "stream", "metadata", "stop_sequences"}.isdisjoint(COUNT_TOKENS_FIELDS)
    raw = count_tokens_body(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "system": "s",
            "tools": TOOL,
            "tool_choice": {"type": "auto"},
            "thinking": {"type": "enabled", "budget_tokens": 2048},
        }
    )
    assert "max_tokens" not in raw
    assert raw["tools"]
    assert raw["reasoning_effort"] == "low"
    for field in ("max_tokens", "stream", "metadata", "stop_sequences"):
        with pytest.raises(InvalidRequest) as caught:
            count_tokens_body({"model": "m", "messages": [], field: 1})
        assert caught.value.message == f"{field}: Extra inputs are not permitted"


@pytest.mark.parametrize(
    ("adapter", "model"),
    [
        (GeminiAdapter("gemini", "key"), "gemini-2.5-pro"),
        (OllamaAdapter("ollama", None), "qwen3"),
        (OpenAICompatAdapter("deepseek", "key", flavor="deepseek"), "deepseek-reasoner"),
        (OpenAICompatAdapter("openai", "key"), "gpt-5"),
    ],
    ids=["gemini", "ollama", "deepseek", "openai"],
)
def test_claude_codes_request_is_taken_by_every_translating_adapter(
    adapter: WireAdapter, model: str
) -> None:
    raw, _ = translate_request(claude_code_request())
    call = adapter.chat_call(chat_request_of(raw), model)
    assert b"Read setup.py" in call.body
    assert b"x-anthropic-billing-header" not in call.body
