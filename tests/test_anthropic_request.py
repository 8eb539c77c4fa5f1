"""The Anthropic adapter's request: an OpenAI chat body as a ``/v1/messages`` body (ref. §8)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from proxy.chat import decode_chat_request
from proxy.errors import InvalidRequest
from proxy.providers.anthropic import ANTHROPIC_MODELS, AnthropicAdapter
from proxy.providers.anthropic_request import THINKING_BUDGETS, default_max_tokens
from proxy.providers.anthropic_thinking import ThinkingMemory

KEY = "sk-ant-secret-0000"
MODEL = "claude-sonnet-4-5"
HI = [{"role": "user", "content": "hi"}]
PNG = "iVBORw0KGgo="
THINKING = {"type": "thinking", "thinking": "Let me see…", "signature": "EqQBCkYI"}
REDACTED = {"type": "redacted_thinking", "data": "EmwKAhgB"}


def adapter() -> AnthropicAdapter:
    return AnthropicAdapter("anthropic", KEY)


def chat(messages: list[dict[str, Any]] | None = None, **fields: object) -> Any:
    raw = {"model": "claude-x", "messages": messages or HI, **fields}
    return decode_chat_request(json.dumps(raw).encode())


def body_of(
    messages: list[dict[str, Any]] | None = None,
    *,
    model: str = MODEL,
    claude: AnthropicAdapter | None = None,
    **fields: object,
) -> dict[str, Any]:
    call = (claude or adapter()).chat_call(chat(messages, **fields), model)
    result: dict[str, Any] = json.loads(call.body or b"")
    return result


def invalid(messages: list[dict[str, Any]] | None = None, **fields: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        adapter().chat_call(chat(messages, **fields), MODEL)
    return caught.value


def tool_call(
    call_id: str = "toolu_01A", name: str = "get_weather", arguments: str = '{"city":"Paris"}'
) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# -- the upstream call -------------------------------------------------------------------------


def test_call_path_headers_and_key_header() -> None:
    claude = adapter()
    call = claude.chat_call(chat(), MODEL)
    assert (call.method, call.path) == ("POST", "/v1/messages")
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert call.headers["content-type"] == "application/json"
    assert KEY not in call.path
    assert KEY not in json.dumps(dict(call.headers))
    assert claude.credential_headers() == {"x-api-key": KEY}
    assert AnthropicAdapter("anthropic", None).credential_headers() == {}
    stream = claude.chat_call(chat(stream=True), MODEL)
    assert stream.headers["accept"] == "text/event-stream"
    assert json.loads(stream.body or b"")["stream"] is True
    pinned = AnthropicAdapter("anthropic", KEY, api_version="2026-10-21")
    assert pinned.chat_call(chat(), MODEL).headers["anthropic-version"] == "2026-10-21"


def test_adapter_flags_and_fallback_models() -> None:
    claude = adapter()
    assert claude.needs_inline_images is False
    assert claude.honours_parallel_tool_calls is True
    assert claude.fallback_models == ANTHROPIC_MODELS
    assert all(m.startswith("claude-") for m in ANTHROPIC_MODELS)


def test_plain_body_has_only_messages_fields() -> None:
    assert body_of() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 64_000,
    }


# -- messages ----------------------------------------------------------------------------------


def test_system_and_developer_messages_become_system_blocks_in_order() -> None:
    body = body_of(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": "again"},
        ]
    )
    assert body["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use French."},
    ]
    # The two user turns around the developer message are now neighbours: merged.
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}],
        }
    ]


def test_consecutive_same_role_turns_merge_and_empty_text_is_left_out() -> None:
    body = body_of(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
            {"role": "user", "content": "d"},
        ]
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "no"}],
        },
        {"role": "user", "content": [{"type": "text", "text": "d"}]},
    ]


def test_images_inline_as_base64_and_addresses_as_url_sources() -> None:
    body = body_of(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                    },
                ],
            }
        ]
    )
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_image_of_an_unreadable_type_is_refused_naming_the_part() -> None:
    error = invalid(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}
                ],
            }
        ]
    )
    assert error.param == "messages[0].content[0].image_url.url"
    assert "image/tiff" in error.message


def test_pdf_and_text_files_become_documents() -> None:
    text = base64.b64encode("ünïcode notes".encode()).decode()
    body = body_of(
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "file",
                        "file": {
                            "file_data": "data:application/pdf;base64,JVBERi0=",
                            "filename": "a.pdf",
                        },
                    },
                    {"type": "file", "file": {"file_data": f"data:text/plain;base64,{text}"}},
                ],
            }
        ]
    )
    assert body["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "a.pdf",
        },
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "ünïcode notes"},
        },
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "file", "file": {"file_id": "file-123"}}, "messages[0].content[0].file"),
        (
            {"type": "file", "file": {"file_data": "data:application/zip;base64,UEs="}},
            "messages[0].content[0].file.file_data",
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}},
            "messages[0].content[0].input_audio",
        ),
    ],
)
def test_parts_claude_cannot_read_are_refused_by_name(part: dict[str, Any], param: str) -> None:
    assert invalid([{"role": "user", "content": [part]}]).param == param


def test_system_message_with_an_image_is_refused() -> None:
    error = invalid(
        [
            {
                "role": "system",
                "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
            },
            {"role": "user", "content": "hi"},
        ]
    )
    assert error.param == "messages[0].content[0]"


# -- tools -------------------------------------------------------------------------------------

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_tools_become_input_schemas() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    body = body_of(tools=[TOOL, bare])
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather of a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("fields", "choice"),
    [
        ({"tool_choice": "auto"}, {"type": "auto"}),
        ({"tool_choice": "required"}, {"type": "any"}),
        ({"tool_choice": "none"}, {"type": "none"}),
        (
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
            {"type": "tool", "name": "get_weather"},
        ),
        (
            {"tool_choice": "required", "parallel_tool_calls": False},
            {"type": "any", "disable_parallel_tool_use": True},
        ),
        ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
    ],
)
def test_tool_choice(fields: dict[str, Any], choice: dict[str, Any]) -> None:
    assert body_of(tools=[TOOL], **fields)["tool_choice"] == choice


def test_parallel_tool_calls_true_says_nothing() -> None:
    assert "tool_choice" not in body_of(tools=[TOOL], parallel_tool_calls=True)


def test_bad_tool_choice_is_refused() -> None:
    assert invalid(tools=[TOOL], tool_choice={"type": "function"}).param == "tool_choice"


def test_tool_turns_become_tool_use_and_merged_tool_results_first() -> None:
    body = body_of(
        [
            {"role": "user", "content": "weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    tool_call("toolu_1"),
                    tool_call("toolu_2", arguments='{"city":"Rome"}'),
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": '{"temp_c": 18}'},
            {
                "role": "tool",
                "tool_call_id": "toolu_2",
                "content": [{"type": "text", "text": "21"}, {"type": "text", "text": "°C"}],
            },
            {"role": "user", "content": "thanks"},
        ]
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp_c": 18}'},
            {
                "type": "tool_result",
                "tool_use_id": "toolu_2",
                "content": [{"type": "text", "text": "21"}, {"type": "text", "text": "°C"}],
            },
            {"type": "text", "text": "thanks"},
        ],
    }
    assert len(body["messages"]) == 3


def test_tool_result_after_user_text_still_comes_first() -> None:
    body = body_of(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [tool_call("toolu_1")]},
            {"role": "user", "content": "(note)"},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "ok"},
        ]
    )
    assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize("arguments", ["[1, 2]", "not json", '"text"'])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    error = invalid(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [tool_call(arguments=arguments)]},
        ]
    )
    assert error.param == "messages[1].tool_calls[0].function.arguments"


def test_empty_arguments_are_an_empty_input() -> None:
    body = body_of(
        [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [tool_call(arguments="")]},
        ]
    )
    assert body["messages"][1]["content"][0]["input"] == {}


def test_tool_message_without_id_and_legacy_function_role_are_refused() -> None:
    assert invalid([{"role": "tool", "content": "x"}]).param == "messages[0].tool_call_id"
    assert invalid([{"role": "function", "name": "f", "content": "x"}]).param == "messages[0].role"


# -- thinking carried across tool turns --------------------------------------------------------


def thinking_turns(extra_content: dict[str, Any] | None) -> list[dict[str, Any]]:
    call = tool_call("toolu_1")
    if extra_content is not None:
        call["extra_content"] = extra_content
    return [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "I'll check.",
            "reasoning_content": "Let me see…",
            "tool_calls": [call],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18"},
    ]


def test_thinking_blocks_sent_back_on_the_tool_call_go_first_byte_identical() -> None:
    extra = {"anthropic": {"thinking_blocks": [THINKING, REDACTED]}}
    body = body_of(thinking_turns(extra), reasoning_effort="low")
    assert body["messages"][1]["content"] == [
        THINKING,
        REDACTED,
        {"type": "text", "text": "I'll check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]


def test_thinking_blocks_remembered_for_clients_that_drop_extra_content() -> None:
    claude = adapter()
    claude.thinking.remember("toolu_1", [THINKING])
    body = body_of(thinking_turns(None), claude=claude)
    assert body["messages"][1]["content"][0] == THINKING
    # What the client sent wins over memory.
    sent = {"anthropic": {"thinking_blocks": [REDACTED]}}
    assert body_of(thinking_turns(sent), claude=claude)["messages"][1]["content"][0] == REDACTED


def test_reasoning_content_alone_is_not_made_into_a_thinking_block() -> None:
    body = body_of(thinking_turns(None))
    assert [b["type"] for b in body["messages"][1]["content"]] == ["text", "tool_use"]


def test_foreign_or_malformed_carried_blocks_are_not_sent() -> None:
    extra = {"anthropic": {"thinking_blocks": [{"type": "text", "text": "x"}, "junk", THINKING]}}
    body = body_of(thinking_turns(extra))
    assert body["messages"][1]["content"][0] == THINKING
    assert body["messages"][1]["content"][1]["type"] == "text"


def test_thinking_memory_is_bounded_and_least_recent_goes_first() -> None:
    memory = ThinkingMemory(capacity=2)
    memory.remember("a", [THINKING])
    memory.remember("b", [THINKING])
    assert memory.recall("a") == [THINKING]  # "a" is now the most recent
    memory.remember("c", [THINKING])
    assert memory.recall("b") is None
    assert memory.recall("a") == [THINKING]
    memory.remember("d", [])  # nothing to keep
    assert len(memory) == 2


# -- generation fields -------------------------------------------------------------------------


def test_generation_fields() -> None:
    body = body_of(
        max_completion_tokens=300,
        max_tokens=99,
        stop="END",
        temperature=0.5,
        top_p=0.9,
        user="user-42",
        n=1,
        logprobs=False,
        stream_options={"include_usage": True},
        service_tier="auto",
        store=False,
        metadata={"k": "v"},
        modalities=["text"],
    )
    assert body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 300,
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "metadata": {"user_id": "user-42"},
    }
    assert body_of(stop=["a", "b"], max_tokens=7)["stop_sequences"] == ["a", "b"]
    assert body_of(max_tokens=7)["max_tokens"] == 7


@pytest.mark.parametrize(
    ("model", "tokens"),
    [
        ("claude-3-haiku-20240307", 4096),
        ("claude-3-5-haiku-latest", 8192),
        ("claude-3-7-sonnet-20250219", 64_000),
        ("claude-opus-4-1-20250805", 32_000),
        ("claude-opus-4-0", 32_000),
        ("claude-sonnet-4-5-20250929", 64_000),
        ("claude-haiku-4-5", 64_000),
        ("claude-opus-5-5", 64_000),
    ],
)
def test_default_max_tokens_per_family(model: str, tokens: int) -> None:
    assert default_max_tokens(model) == tokens
    assert body_of(model=model)["max_tokens"] == tokens


def test_temperature_above_one_is_refused_by_name() -> None:
    error = invalid(temperature=1.5)
    assert error.param == "temperature"
    assert "between 0 and 1" in error.message
    assert body_of(temperature=1)["temperature"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", 1),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.5),
        ("logit_bias", {"1": 2}),
        ("top_logprobs", 2),
        ("prediction", {"type": "content", "content": "x"}),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("web_search_options", {}),
        ("verbosity", "low"),
    ],
)
def test_untranslated_fields_are_refused_by_name(field: str, value: object) -> None:
    error = invalid(**{field: value})
    assert error.param == field
    assert error.code == "unsupported_parameter"


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", 2), ("logprobs", True), ("modalities", ["text", "audio"])],
)
def test_fields_carried_only_in_their_default_values(field: str, value: object) -> None:
    assert invalid(**{field: value}).param == field


# -- reasoning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("effort", sorted(THINKING_BUDGETS))
def test_reasoning_effort_turns_thinking_on_with_its_budget(effort: str) -> None:
    body = body_of(reasoning_effort=effort, temperature=0.2, top_p=0.5)
    budget = THINKING_BUDGETS[effort]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert 1024 <= budget < body["max_tokens"]
    # Thinking takes only the default sampling: the client's is dropped.
    assert "temperature" not in body
    assert "top_p" not in body


def test_reasoning_effort_raises_a_smaller_max_tokens_by_the_budget() -> None:
    body = body_of(reasoning_effort="low", max_tokens=500)
    assert body["max_tokens"] == THINKING_BUDGETS["low"] + 500
    assert body_of(reasoning_effort="low", max_tokens=20_000)["max_tokens"] == 20_000


def test_reasoning_effort_none_leaves_thinking_off_and_unknown_is_refused() -> None:
    assert "thinking" not in body_of(reasoning_effort="none")
    assert invalid(reasoning_effort="extreme").param == "reasoning_effort"


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_forcing_a_tool_while_thinking_is_refused_by_name(choice: object) -> None:
    error = invalid(tools=[TOOL], tool_choice=choice, reasoning_effort="low")
    assert error.param == "tool_choice"
    assert body_of(tools=[TOOL], tool_choice="auto", reasoning_effort="low")["tool_choice"] == {
        "type": "auto"
    }


# -- response_format ---------------------------------------------------------------------------


def test_json_schema_becomes_output_config_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body = body_of(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    )
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in body_of(response_format={"type": "text"})


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_object"}, "response_format.type"),
        (
            {"type": "json_schema", "json_schema": {"name": "x"}},
            "response_format.json_schema.schema",
        ),
        ({"type": "yaml"}, "response_format.type"),
    ],
)
def test_response_formats_claude_cannot_keep_are_refused(
    response_format: dict[str, Any], param: str
) -> None:
    assert invalid(response_format=response_format).param == param


@pytest.mark.parametrize("effort", ["high", "xhigh", "max"])
def test_thinking_fits_within_the_models_largest_answer(effort: str) -> None:
    for max_tokens in (None, 500, 31_000):
        fields: dict[str, Any] = {"reasoning_effort": effort}
        if max_tokens is not None:
            fields["max_tokens"] = max_tokens
        body = body_of(model="claude-opus-4-1", **fields)
        budget = body["thinking"]["budget_tokens"]
        assert 1024 <= budget < body["max_tokens"] <= 32_000, (max_tokens, body)
