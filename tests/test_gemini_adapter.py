"""The Gemini adapter: the request body it builds, and every shape of answer it parses."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from proxy.chat import ChatChunk, decode_chat_request
from proxy.errors import (
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.providers.base import ListedModel
from proxy.providers.gemini import (
    GEMINI_MODELS,
    SKIP_SIGNATURE,
    CallMemory,
    GeminiAdapter,
)

KEY = "gemini-secret-key-0000"
MODEL = "gemini-2.5-flash"
HI = [{"role": "user", "content": "hi"}]


def adapter() -> GeminiAdapter:
    return GeminiAdapter("gemini", KEY)


def chat(messages: list[dict[str, Any]] | None = None, **fields: object) -> Any:
    raw = {"model": "gemini-x", "messages": messages or HI, **fields}
    return decode_chat_request(json.dumps(raw).encode())


def body_of(
    messages: list[dict[str, Any]] | None = None,
    *,
    model: str = MODEL,
    gemini: GeminiAdapter | None = None,
    **fields: object,
) -> dict[str, Any]:
    call = (gemini or adapter()).chat_call(chat(messages, **fields), model)
    result: dict[str, Any] = json.loads(call.body or b"")
    return result


def invalid(
    messages: list[dict[str, Any]] | None = None, *, model: str = MODEL, **fields: object
) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        adapter().chat_call(chat(messages, **fields), model)
    return caught.value


def tool_call(
    call_id: str = "call_1", name: str = "get_weather", arguments: str = '{"city":"Paris"}'
) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_turns(*calls: dict[str, Any], content: str = '{"temp_c": 18}') -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": list(calls)},
        *({"role": "tool", "tool_call_id": call["id"], "content": content} for call in calls),
    ]


# -- the upstream call -------------------------------------------------------------------------


def test_generate_call_path_and_key_header() -> None:
    call = adapter().chat_call(chat(), MODEL)
    assert (call.method, call.path) == ("POST", "/models/gemini-2.5-flash:generateContent")
    # The key travels in the backend's credential headers, added only for its bound origin.
    assert "x-goog-api-key" not in call.headers
    assert adapter().credential_headers() == {"x-goog-api-key": KEY}
    assert call.headers["content-type"] == "application/json"
    assert KEY not in call.path
    assert KEY.encode() not in (call.body or b"")


def test_stream_call_asks_for_sse() -> None:
    call = adapter().chat_call(chat(stream=True), "models/gemini-3-flash-preview")
    assert call.path == "/models/gemini-3-flash-preview:streamGenerateContent?alt=sse"
    assert call.headers["accept"] == "text/event-stream"
    assert "stream" not in json.loads(call.body or b"")


def test_no_key_means_no_key_header() -> None:
    assert GeminiAdapter("gemini", None).credential_headers() == {}


def test_adapter_wants_inline_images_and_lists_fallback_models() -> None:
    assert GeminiAdapter.needs_inline_images is True
    assert "gemini-2.5-flash" in adapter().fallback_models
    assert adapter().fallback_models == GEMINI_MODELS


# -- messages ----------------------------------------------------------------------------------


def test_system_and_developer_become_system_instruction_and_roles_map() -> None:
    body = body_of(
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "one"},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "three"},
        ]
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Use metric."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "one"}]},
        {"role": "model", "parts": [{"text": "two"}]},
        {"role": "user", "parts": [{"text": "three"}]},
    ]


def test_consecutive_same_role_turns_merge() -> None:
    body = body_of(
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": "d"},
            {"role": "user", "content": "e"},
        ]
    )
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
        {"role": "model", "parts": [{"text": "c"}, {"text": "d"}]},
        {"role": "user", "parts": [{"text": "e"}]},
    ]
    assert "systemInstruction" not in body
    assert "generationConfig" not in body
    assert "tools" not in body


def test_image_data_url_becomes_inline_data() -> None:
    body = body_of(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "image_url", "image_url": {"url": "data:image/svg+xml,%3Csvg%3E"}},
                ],
            }
        ]
    )
    assert body["contents"][0]["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
        {"inlineData": {"mimeType": "image/svg+xml", "data": "PHN2Zz4="}},
    ]


def test_remote_image_url_is_refused_naming_the_part() -> None:
    error = invalid(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "x"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ]
    )
    assert error.param == "messages[0].content[1].image_url"


def test_audio_and_file_parts_become_inline_data() -> None:
    body = body_of(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a"},
                    },
                ],
            }
        ]
    )
    assert body["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "audio/mpeg", "data": "SUQz"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}},
    ]
    audio = {"type": "input_audio", "input_audio": {"data": "x", "format": "opus"}}
    error = invalid([{"role": "user", "content": [audio]}])
    assert error.param == "messages[0].content[0].input_audio.format"
    file_id = {"type": "file", "file": {"file_id": "file-1"}}
    assert invalid([{"role": "user", "content": [file_id]}]).param == "messages[0].content[0].file"


def test_system_message_with_an_image_is_refused() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
    error = invalid([{"role": "system", "content": [image]}, *HI])
    assert error.param == "messages[0].content[0]"


# -- tools -------------------------------------------------------------------------------------

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": WEATHER_SCHEMA,
            "strict": True,
        },
    },
    {"type": "function", "function": {"name": "now"}},
]


def test_tool_definitions_keep_json_schema_as_is() -> None:
    body = body_of(tools=TOOLS)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather",
                    "parametersJsonSchema": WEATHER_SCHEMA,
                },
                {"name": "now"},
            ]
        }
    ]
    assert "toolConfig" not in body


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice(choice: object, config: dict[str, Any]) -> None:
    body = body_of(tools=TOOLS, tool_choice=choice)
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_bad_tool_choice_is_refused() -> None:
    assert invalid(tool_choice={"type": "function"}).param == "tool_choice"


def test_assistant_tool_calls_become_function_calls_with_object_args() -> None:
    body = body_of(
        tool_turns(tool_call("call_a"), tool_call("call_b", "now", "")),
        tools=TOOLS,
    )
    assert body["contents"][1] == {
        "role": "model",
        "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "now", "args": {}}},
        ],
    }


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", '"Paris"'])
def test_bad_tool_call_arguments_name_the_field(arguments: str) -> None:
    error = invalid(tool_turns(tool_call("call_a", arguments=arguments)))
    assert error.param == "messages[1].tool_calls[0].function.arguments"


def test_tool_results_become_one_user_turn_with_looked_up_names() -> None:
    turns = [
        {"role": "user", "content": "weather and time?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [tool_call("call_a"), tool_call("call_b", "now", "{}")],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp_c": 18}'},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "noon"}]},
    ]
    body = body_of(turns)
    assert body["contents"][1]["parts"][0] == {"text": "Let me check."}
    assert body["contents"][2] == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
            {"functionResponse": {"name": "now", "response": {"result": "noon"}}},
        ],
    }


@pytest.mark.parametrize(
    ("content", "response"),
    [
        ('{"temp_c": 18}', {"temp_c": 18}),
        ("42", {"result": 42}),
        ("[1, 2]", {"result": [1, 2]}),
        ("null", {"result": None}),
        ("sunny, 18 C", {"result": "sunny, 18 C"}),
        ("", {"result": ""}),
    ],
)
def test_tool_result_scalars_are_wrapped(content: str, response: dict[str, Any]) -> None:
    body = body_of(tool_turns(tool_call(), content=content))
    assert body["contents"][2]["parts"][0]["functionResponse"]["response"] == response


def test_tool_result_for_an_unknown_call_is_refused() -> None:
    turns = [*HI, {"role": "tool", "tool_call_id": "call_nowhere", "content": "x"}]
    error = invalid(turns)
    assert error.param == "messages[1].tool_call_id"
    assert "call_nowhere" in error.message


def test_legacy_function_message_uses_its_name() -> None:
    turns = [*HI, {"role": "function", "name": "now", "content": "noon"}]
    part = body_of(turns)["contents"][0]["parts"][1]
    assert part == {"functionResponse": {"name": "now", "response": {"result": "noon"}}}


# -- thought signatures ------------------------------------------------------------------------

SIGNED_ANSWER = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "sig-remembered",
                    }
                ],
            },
            "finishReason": "STOP",
        }
    ],
    "modelVersion": MODEL,
    "responseId": "resp1",
}


def first_part(body: dict[str, Any]) -> dict[str, Any]:
    part: dict[str, Any] = body["contents"][1]["parts"][0]
    return part


def test_signature_from_extra_content_is_sent_back() -> None:
    call = {**tool_call(), "extra_content": {"google": {"thought_signature": "sig-from-client"}}}
    part = first_part(body_of(tool_turns(call)))
    assert part["thoughtSignature"] == "sig-from-client"
    assert "id" not in part["functionCall"]


def test_signature_remembered_for_clients_that_drop_extra_content() -> None:
    gemini = adapter()
    answer = gemini.parse_response(json.dumps(SIGNED_ANSWER).encode(), MODEL)
    (returned,) = answer.choices[0].message.tool_calls or []
    assert returned.extra_content == {"google": {"thought_signature": "sig-remembered"}}
    stripped = tool_call(returned.id, returned.function.name, returned.function.arguments)
    part = first_part(body_of(tool_turns(stripped), gemini=gemini))
    assert part["thoughtSignature"] == "sig-remembered"
    # What the client sends wins over what was remembered.
    sent = {**stripped, "extra_content": {"google": {"thought_signature": "sig-newer"}}}
    assert first_part(body_of(tool_turns(sent), gemini=gemini))["thoughtSignature"] == "sig-newer"


def test_gemini_issued_call_ids_go_back_on_call_and_response() -> None:
    gemini = adapter()
    answer = json.loads(json.dumps(SIGNED_ANSWER))
    answer["candidates"][0]["content"]["parts"][0]["functionCall"]["id"] = "gem-id-7"
    returned = gemini.parse_response(json.dumps(answer).encode(), MODEL)
    (call,) = returned.choices[0].message.tool_calls or []
    assert call.id == "gem-id-7"
    body = body_of(tool_turns(tool_call("gem-id-7")), gemini=gemini)
    assert first_part(body)["functionCall"]["id"] == "gem-id-7"
    assert body["contents"][2]["parts"][0]["functionResponse"]["id"] == "gem-id-7"


def test_gemini_3_gets_the_documented_placeholder_when_no_signature_is_known() -> None:
    turns = tool_turns(tool_call("call_a"), tool_call("call_b", "now", "{}"))
    parts = body_of(turns, model="gemini-3-flash-preview")["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == SKIP_SIGNATURE
    assert "thoughtSignature" not in parts[1]  # only a turn's first call is validated
    assert "thoughtSignature" not in first_part(body_of(turns, model=MODEL))


def test_call_memory_is_bounded_and_least_recent_goes_first() -> None:
    memory = CallMemory(capacity=3)
    for i in range(3):
        memory.remember(f"c{i}", f"s{i}", native_id=False)
    assert memory.recall("c0") == ("s0", False)  # c0 is now the most recent
    memory.remember("c3", "s3", native_id=True)
    assert len(memory) == 3
    assert memory.recall("c1") == (None, False)
    assert memory.recall("c0") == ("s0", False)
    assert memory.recall("c3") == ("s3", True)
    memory.remember("plain", None, native_id=False)  # nothing to remember
    assert memory.recall("plain") == (None, False)


# -- generation config ---------------------------------------------------------------------


def test_generation_config_mapping() -> None:
    body = body_of(
        temperature=0.2,
        top_p=0.9,
        max_tokens=100,
        max_completion_tokens=512,
        stop="\n\n",
        n=2,
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logprobs=True,
        top_logprobs=3,
        user="someone",
        parallel_tool_calls=False,
    )
    assert body["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 512,
        "stopSequences": ["\n\n"],
        "candidateCount": 2,
        "seed": 42,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "responseLogprobs": True,
        "logprobs": 3,
    }


def test_generation_config_smaller_cases() -> None:
    config = body_of(max_tokens=64, stop=["a", "b"], temperature=0)["generationConfig"]
    assert config == {"temperature": 0, "maxOutputTokens": 64, "stopSequences": ["a", "b"]}
    assert "generationConfig" not in body_of(logprobs=False, stop=[])


@pytest.mark.parametrize(
    ("response_format", "config"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"responseMimeType": "application/json"}),
        (
            {"type": "json_schema", "json_schema": {"name": "a", "schema": WEATHER_SCHEMA}},
            {"responseMimeType": "application/json", "responseJsonSchema": WEATHER_SCHEMA},
        ),
    ],
)
def test_response_format(response_format: dict[str, Any], config: dict[str, Any] | None) -> None:
    assert body_of(response_format=response_format).get("generationConfig") == config


def test_bad_response_format_is_refused() -> None:
    assert invalid(response_format={"type": "yaml"}).param == "response_format.type"
    error = invalid(response_format={"type": "json_schema", "json_schema": "x"})
    assert error.param == "response_format.json_schema"


@pytest.mark.parametrize(
    ("model", "effort", "thinking"),
    [
        ("gemini-2.5-flash", "low", {"thinkingBudget": 1024, "includeThoughts": True}),
        ("gemini-2.5-flash", "medium", {"thinkingBudget": 8192, "includeThoughts": True}),
        ("gemini-2.5-flash", "high", {"thinkingBudget": 24576, "includeThoughts": True}),
        ("gemini-2.5-flash-lite", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-pro", "none", {"thinkingBudget": 128, "includeThoughts": True}),
        (
            "gemini-3-flash-preview",
            "minimal",
            {"thinkingLevel": "MINIMAL", "includeThoughts": True},
        ),
        ("gemini-3-flash-preview", "medium", {"thinkingLevel": "MEDIUM", "includeThoughts": True}),
        ("gemini-3.1-pro-preview", "minimal", {"thinkingLevel": "LOW", "includeThoughts": True}),
        ("gemini-3.1-pro-preview", "high", {"thinkingLevel": "HIGH", "includeThoughts": True}),
    ],
)
def test_reasoning_effort(model: str, effort: str, thinking: dict[str, Any]) -> None:
    config = body_of(model=model, reasoning_effort=effort)["generationConfig"]
    assert config == {"thinkingConfig": thinking}


def test_unknown_reasoning_effort_is_refused() -> None:
    assert invalid(reasoning_effort="extreme").param == "reasoning_effort"


# -- non-streaming answers ---------------------------------------------------------------------


def parse(answer: dict[str, Any], gemini: GeminiAdapter | None = None) -> Any:
    return (gemini or adapter()).parse_response(json.dumps(answer).encode(), MODEL)


def test_text_and_thoughts_are_kept_apart() -> None:
    response = parse(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "**Thinking** about it", "thought": True},
                            {"text": "The answer ", "thoughtSignature": "CiQB"},
                            {"text": "is 42."},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 271,
                "candidatesTokenCount": 8,
                "thoughtsTokenCount": 120,
                "totalTokenCount": 399,
                "cachedContentTokenCount": 200,
            },
            "modelVersion": "gemini-2.5-flash-001",
            "responseId": "mJ8ZaL7x",
        }
    )
    assert response.id == "chatcmpl-mJ8ZaL7x"
    assert response.model == "gemini-2.5-flash-001"
    assert response.created > 0
    (choice,) = response.choices
    assert choice.message.content == "The answer is 42."
    assert choice.message.reasoning_content == "**Thinking** about it"
    assert choice.message.tool_calls is msgspec.UNSET  # left out of the JSON
    assert choice.finish_reason == "stop"
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (271, 128, 399)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (200, 120)


def test_function_call_becomes_tool_call_with_finish_tool_calls() -> None:
    response = parse(SIGNED_ANSWER)
    (choice,) = response.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert len(call.id) == len("call_") + 24
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"Paris"}'
    assert call.extra_content == {"google": {"thought_signature": "sig-remembered"}}


def test_usage_mapping_counts_tool_prompt_and_missing_fields_are_zero() -> None:
    response = parse(
        {
            "candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}],
            "usageMetadata": {
                "promptTokenCount": 10,
                "toolUsePromptTokenCount": 5,
                "candidatesTokenCount": 3,
                "totalTokenCount": 18,
            },
        }
    )
    usage = response.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (15, 3, 18)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (0, 0)
    assert response.id.startswith("chatcmpl-")
    assert response.model == MODEL
    assert parse({"candidates": [{"finishReason": "STOP"}]}).usage is None


def test_blocked_prompt_is_an_empty_filtered_answer() -> None:
    response = parse(
        {
            "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
            "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
        }
    )
    (choice,) = response.choices
    assert choice.finish_reason == "content_filter"
    assert choice.message.content == ""
    assert response.usage.prompt_tokens == 8


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("MAX_TOKENS", "length"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
    ],
)
def test_finish_reasons(reason: str, finish: str) -> None:
    # A candidate stopped for safety may have no content at all.
    response = parse({"candidates": [{"finishReason": reason, "index": 0}]})
    (choice,) = response.choices
    assert choice.finish_reason == finish
    assert choice.message.content == ""


def test_several_candidates_become_several_choices() -> None:
    response = parse(
        {
            "candidates": [
                {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},
                {"content": {"parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS", "index": 1},
            ]
        }
    )
    assert [(c.index, c.message.content, c.finish_reason) for c in response.choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[1, 2]", b"{}", b'{"candidates": 5}'])
def test_garbage_answers_are_upstream_errors(body: bytes) -> None:
    with pytest.raises(UpstreamError) as caught:
        adapter().parse_response(body, MODEL)
    assert caught.value.status == 502


# -- streams -----------------------------------------------------------------------------------


def sse(*events: object) -> bytes:
    """Google's framing: CRLF line ends, events separated by a blank CRLF line."""
    return b"".join(
        b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\r\n\r\n"
        for e in events
    )


def event(parts: list[dict[str, Any]] | None, finish: str | None = None, **usage: int) -> Any:
    candidate: dict[str, Any] = {}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate]}
    if usage:
        out["usageMetadata"] = usage
    return out | {"modelVersion": "gemini-2.5-flash", "responseId": "abc"}


STREAM = sse(
    event([{"text": "Pondering…", "thought": True}], promptTokenCount=8, totalTokenCount=8),
    event([{"text": "Hel"}], promptTokenCount=8, totalTokenCount=8),
    event([{"text": "lo, ünïcode!"}]),
    event(
        [
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "sig-1",
            },
            {"functionCall": {"name": "now", "args": {}}},
        ],
        "STOP",
        promptTokenCount=8,
        candidatesTokenCount=5,
        thoughtsTokenCount=30,
        totalTokenCount=43,
    ),
)


def feed_all(raw: bytes, size: int, gemini: GeminiAdapter | None = None) -> list[ChatChunk]:
    parser = (gemini or adapter()).chunk_parser(MODEL)
    chunks: list[ChatChunk] = []
    for start in range(0, len(raw), size):
        chunks.extend(parser.feed(raw[start : start + size]))
    chunks.extend(parser.finish())
    return chunks


def normalized(chunks: list[ChatChunk]) -> list[Any]:
    """The chunks as wire JSON, without the generated parts (ids of calls Gemini did not name)."""
    out = []
    for chunk in chunks:
        wire = json.loads(msgspec.json.encode(chunk))
        for choice in wire["choices"]:
            for call in choice["delta"].get("tool_calls", []):
                call["id"] = "call_*" if call["id"].startswith("call_") else call["id"]
        out.append(wire)
    return out


def test_stream_chunks_in_openai_shape() -> None:
    chunks = feed_all(STREAM, len(STREAM))
    deltas = [json.loads(msgspec.json.encode(c.choices[0].delta)) for c in chunks if c.choices]
    assert deltas[0] == {"role": "assistant", "content": "", "reasoning_content": "Pondering…"}
    assert deltas[1:3] == [{"content": "Hel"}, {"content": "lo, ünïcode!"}]
    calls = deltas[3]["tool_calls"]
    assert [c["index"] for c in calls] == [0, 1]
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert calls[0]["type"] == "function"
    assert calls[0]["id"].startswith("call_")
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "sig-1"}}
    assert "extra_content" not in calls[1]
    assert calls[1]["function"] == {"name": "now", "arguments": "{}"}
    assert deltas[4] == {}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-2])
    # The usage chunk comes last, with the last usageMetadata seen.
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == 8
    assert usage_chunk.usage.completion_tokens == 35
    assert usage_chunk.usage.reasoning_tokens == 30
    assert usage_chunk.usage.total_tokens == 43
    assert all(c.usage is None for c in chunks[:-1])
    assert {(c.id, c.created, c.model) for c in chunks} == {
        ("chatcmpl-abc", chunks[0].created, "gemini-2.5-flash")
    }


def test_stream_parses_the_same_at_every_split_size() -> None:
    expected = normalized(feed_all(STREAM, len(STREAM)))
    created = expected[0]["created"]
    for size in range(1, len(STREAM) + 1):
        got = normalized(feed_all(STREAM, size))
        for chunk in got:
            chunk["created"] = created  # a second may tick between parsers
        assert got == expected, size


def test_signature_seen_in_a_stream_is_remembered() -> None:
    gemini = adapter()
    chunks = feed_all(STREAM, 7, gemini)
    call_id = next(
        call.id
        for chunk in chunks
        for choice in chunk.choices
        for call in choice.delta.tool_calls or ()
        if call.function and call.function.name == "get_weather"
    )
    assert call_id is not None
    assert gemini.calls.recall(call_id) == ("sig-1", False)


def test_stream_text_only_finishes_with_stop() -> None:
    raw = sse(event([{"text": "Hi"}]), event([{"text": "!"}], "STOP", promptTokenCount=2))
    chunks = feed_all(raw, 5)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == "Hi"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None


def test_stream_without_usage_has_no_usage_chunk() -> None:
    chunks = feed_all(sse(event([{"text": "Hi"}], "STOP")), 3)
    assert all(c.choices for c in chunks)


def test_stream_blocked_prompt_and_safety_stop() -> None:
    blocked = {"promptFeedback": {"blockReason": "OTHER"}, "usageMetadata": {"promptTokenCount": 3}}
    chunks = feed_all(sse(blocked), 4)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[1].choices[0].finish_reason == "content_filter"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 3
    safety = feed_all(sse(event(None, "SAFETY")), 4)
    assert [c.choices[0].finish_reason for c in safety] == [None, "content_filter"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        sse(event([{"text": "Hel"}], promptTokenCount=8)),
        sse(event([{"text": "Hel"}])) + b'data: {"candidates": [{"finishRea',
    ],
)
def test_stream_that_ends_without_a_finish_reason_is_cut(raw: bytes) -> None:
    parser = adapter().chunk_parser(MODEL)
    parser.feed(raw)
    # The usage seen so far comes before the error, so the failed call is logged with it.
    before = parser.finish() if b"promptTokenCount" in raw else []
    assert [c.usage.prompt_tokens for c in before if c.usage] == ([8] if before else [])
    with pytest.raises(UpstreamError) as caught:
        parser.finish()
    assert caught.value.code == "upstream_stream_cut"


@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        ({"code": 500, "message": "Internal boom", "status": "INTERNAL"}, UpstreamError, 502),
        (
            {"code": 503, "message": "Overloaded boom", "status": "UNAVAILABLE"},
            UpstreamUnavailable,
            503,
        ),
        ({"message": "No code boom"}, UpstreamError, 502),
    ],
)
def test_error_event_mid_stream(
    error: dict[str, Any], kind: type[GatewayError], status: int
) -> None:
    parser = adapter().chunk_parser(MODEL)
    first = parser.feed(sse(event([{"text": "Hel"}])))
    assert first[0].choices[0].delta.content == "Hel"
    with pytest.raises(kind) as caught:
        parser.feed(sse({"error": error}))
    assert caught.value.status == status
    assert "boom" in caught.value.message


def test_chunks_read_with_an_error_event_come_first_with_the_usage_seen() -> None:
    parser = adapter().chunk_parser(MODEL)
    error = {"code": 503, "message": "Overloaded boom", "status": "UNAVAILABLE"}
    chunks = parser.feed(
        sse(event([{"text": "Hel"}], promptTokenCount=8), event([{"text": "lo"}]), {"error": error})
    )
    assert [c.choices[0].delta.content for c in chunks if c.choices] == ["Hel", "lo"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 8
    with pytest.raises(UpstreamUnavailable) as caught:
        parser.finish()
    assert "boom" in caught.value.message


def test_chunks_read_with_a_garbage_line_come_first() -> None:
    parser = adapter().chunk_parser(MODEL)
    chunks = parser.feed(sse(event([{"text": "Hel"}])) + b"data: \xff\xfe\r\n\r\n")
    assert [c.choices[0].delta.content for c in chunks if c.choices] == ["Hel"]
    with pytest.raises(UpstreamError):
        parser.finish()


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b'{"candidates": [{"index": "x"}]}'])
def test_malformed_events_are_upstream_errors(payload: bytes) -> None:
    with pytest.raises(UpstreamError):
        adapter().chunk_parser(MODEL).feed(sse(payload))


# -- errors ------------------------------------------------------------------------------------


def rpc(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    inner: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        inner["details"] = list(details)
    return json.dumps({"error": inner}).encode()


BAD_KEY = rpc(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    },
)


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


@pytest.mark.parametrize(
    ("status", "body", "kind", "gateway_status", "code"),
    [
        (400, rpc(400, "INVALID_ARGUMENT", "bad field"), InvalidRequest, 400, "invalid_argument"),
        (
            400,
            rpc(400, "FAILED_PRECONDITION", "bad region"),
            InvalidRequest,
            400,
            "failed_precondition",
        ),
        (400, BAD_KEY, UpstreamError, 502, "upstream_auth_failed"),
        (
            403,
            rpc(403, "PERMISSION_DENIED", "no access"),
            UpstreamError,
            502,
            "upstream_auth_failed",
        ),
        (
            404,
            rpc(404, "NOT_FOUND", "models/x is not found"),
            ModelNotFound,
            404,
            "model_not_found",
        ),
        (429, rpc(429, "RESOURCE_EXHAUSTED", "quota"), RateLimited, 429, "rate_limit_exceeded"),
        (500, rpc(500, "INTERNAL", "internal"), UpstreamError, 502, None),
        (503, rpc(503, "UNAVAILABLE", "overloaded"), UpstreamUnavailable, 503, None),
        (504, rpc(504, "DEADLINE_EXCEEDED", "deadline"), UpstreamTimeout, 504, None),
    ],
)
def test_error_mapping(
    status: int, body: bytes, kind: type[GatewayError], gateway_status: int, code: str | None
) -> None:
    mapped = adapter().map_error(status, {}, body)
    assert type(mapped) is kind or isinstance(mapped, kind)
    assert mapped.status == gateway_status
    assert mapped.code == code
    assert KEY not in mapped.message


def test_bad_gateway_key_is_not_the_clients_401() -> None:
    mapped = adapter().map_error(400, {}, BAD_KEY)
    assert mapped.status == 502
    assert "administrator" in mapped.message
    worded = rpc(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
    assert adapter().map_error(400, {}, worded).code == "upstream_auth_failed"


@pytest.mark.parametrize(("delay", "retry_after"), [("37s", "37"), ("1.5s", "2"), ("0s", "0")])
def test_retry_info_becomes_retry_after(delay: str, retry_after: str) -> None:
    body = rpc(
        429,
        "RESOURCE_EXHAUSTED",
        "quota",
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        retry_info(delay),
    )
    mapped = adapter().map_error(429, {"x-other": "1"}, body)
    assert isinstance(mapped, RateLimited)
    assert mapped.headers == {"retry-after": retry_after}


def test_429_without_retry_info_keeps_an_upstream_retry_after_header() -> None:
    body = rpc(429, "RESOURCE_EXHAUSTED", "quota")
    assert adapter().map_error(429, {"retry-after": "5"}, body).headers == {"retry-after": "5"}
    assert adapter().map_error(429, {}, body).headers == {}


def test_non_json_and_array_error_bodies() -> None:
    mapped = adapter().map_error(502, {}, b"<html>Bad Gateway</html>")
    assert isinstance(mapped, UpstreamError)
    assert "Bad Gateway" in mapped.message
    wrapped = b"[" + rpc(404, "NOT_FOUND", "models/x is not found") + b"]"
    assert isinstance(adapter().map_error(404, {}, wrapped), ModelNotFound)
    assert "HTTP 500" in adapter().map_error(500, {}, b"").message


# -- models ------------------------------------------------------------------------------------


def test_models_call_lists_one_big_page() -> None:
    call = adapter().models_call()
    assert (call.method, call.path) == ("GET", "/models?pageSize=1000")
    assert KEY not in call.path


def test_models_are_filtered_to_chat_and_embeddings_and_stripped() -> None:
    page = {
        "models": [
            {
                "name": "models/gemini-2.5-flash",
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            },
            {"name": "models/gemini-embedding-001", "supportedGenerationMethods": ["embedContent"]},
            {"name": "models/imagen-4.0-generate-001", "supportedGenerationMethods": ["predict"]},
            {"name": "models/aqa"},
            {"name": "models/gemma-3-27b-it", "supportedGenerationMethods": ["generateContent"]},
        ],
        "nextPageToken": "abc",
    }
    assert adapter().parse_models(json.dumps(page).encode()) == [
        ListedModel("gemini-2.5-flash"),  # Google gives no creation time
        ListedModel("gemini-embedding-001"),  # served by /v1/embeddings
        ListedModel("gemma-3-27b-it"),
    ]
    assert adapter().parse_models(b"{}") == []  # no models: Google omits the empty list
    with pytest.raises(UpstreamError):
        adapter().parse_models(b"<html>")
