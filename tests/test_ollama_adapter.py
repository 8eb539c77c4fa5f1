"""The Ollama adapter: the /api/chat body it builds, and every shape of answer it parses."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest

from proxy.chat import ChatChunk, decode_chat_request
from proxy.errors import (
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.providers.base import ListedModel
from proxy.providers.ollama import MAX_LINE_BYTES, OllamaAdapter

ADAPTER = OllamaAdapter("ollama", None)
HI = [{"role": "user", "content": "hi"}]
CALL_ID = re.compile(r"^call_[A-Za-z0-9_-]{24}$")


def body_of(adapter: OllamaAdapter = ADAPTER, model: str = "llama3.2", **fields: Any) -> Any:
    """The JSON body the adapter sends for a client request made of ``fields``."""
    raw = json.dumps({"model": "ollama/x", "messages": HI, **fields}).encode()
    call = adapter.chat_call(decode_chat_request(raw), model)
    assert call.method == "POST"
    assert call.path == "/api/chat"
    return json.loads(call.body or b"")


def rejected(**fields: Any) -> InvalidRequest:
    """The InvalidRequest raised for a client request made of ``fields``."""
    with pytest.raises(InvalidRequest) as caught:
        body_of(**fields)
    return caught.value


# -- request ------------------------------------------------------------------------------------


def test_minimal_body_always_says_whether_to_stream() -> None:
    assert body_of() == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
    }
    assert body_of(stream=True)["stream"] is True


def test_headers_and_optional_bearer_key() -> None:
    chat = decode_chat_request(json.dumps({"model": "m", "messages": HI}).encode())
    assert ADAPTER.credential_headers() == {}
    keyed = OllamaAdapter("ollama", "sk-proxy-key")
    # The key travels in the backend's credential headers, added only for its bound origin.
    assert "authorization" not in keyed.chat_call(chat, "m").headers
    assert keyed.credential_headers() == {"authorization": "Bearer sk-proxy-key"}
    streamed = decode_chat_request(
        json.dumps({"model": "m", "messages": HI, "stream": True}).encode()
    )
    assert keyed.chat_call(streamed, "m").headers["accept"] == "application/x-ndjson"


def test_needs_inline_images() -> None:
    assert OllamaAdapter.needs_inline_images is True


def test_roles_developer_becomes_system_and_parts_are_joined() -> None:
    messages = [
        {"role": "developer", "content": "Be terse."},
        {"role": "system", "content": [{"type": "text", "text": "Really."}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {"role": "assistant", "content": "sure", "reasoning_content": "they want brevity"},
    ]
    assert body_of(messages=messages)["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "system", "content": "Really."},
        {"role": "user", "content": "one\ntwo"},
        {"role": "assistant", "content": "sure", "thinking": "they want brevity"},
    ]


def test_images_are_raw_base64() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "data:image/svg+xml,%3Csvg%2F%3E"}},
            ],
        }
    ]
    (message,) = body_of(messages=messages)["messages"]
    # "<svg/>" percent-encoded, re-encoded as base64.
    assert message == {
        "role": "user",
        "content": "What is this?",
        "images": ["iVBORw0KGgo=", "PHN2Zy8+"],
    }


def test_remote_image_url_reaching_the_adapter_is_rejected_naming_the_part() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ],
        }
    ]
    assert rejected(messages=messages).param == "messages[0].content[1].image_url"


def test_audio_parts_are_rejected() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    error = rejected(messages=[{"role": "user", "content": [audio]}])
    assert error.param == "messages[0].content[0]"
    assert "ollama" in error.message


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": True,
        },
    }
]
TOOL_TURNS = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {"id": "call_def", "type": "function", "function": {"name": "now", "arguments": ""}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_abc", "content": '{"temp_c":18}'},
    {"role": "tool", "tool_call_id": "call_def", "content": [{"type": "text", "text": "noon"}]},
    {"role": "tool", "tool_call_id": "call_unknown", "content": "?"},
]


def test_tools_and_a_tool_round_trip() -> None:
    body = body_of(messages=TOOL_TURNS, tools=TOOLS, tool_choice="auto")
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "now", "arguments": {}}},
            ],
        },
        {
            "role": "tool",
            "content": '{"temp_c":18}',
            "tool_name": "get_weather",
            "tool_call_id": "call_abc",
        },
        {"role": "tool", "content": "noon", "tool_name": "now", "tool_call_id": "call_def"},
        {"role": "tool", "content": "?", "tool_call_id": "call_unknown"},
    ]


def test_tool_choice_none_sends_no_tools_auto_sends_them() -> None:
    assert "tools" not in body_of(tools=TOOLS, tool_choice="none")
    body = body_of(tools=TOOLS, tool_choice="auto")
    assert len(body["tools"]) == 1
    assert "tool_choice" not in body
    # A forced call, which Ollama cannot make, is refused: tests/test_ollama_translation.py.


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_bad_tool_call_arguments_name_the_field(arguments: str) -> None:
    turns = [
        *HI,
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
            ],
        },
    ]
    assert rejected(messages=turns).param == "messages[1].tool_calls[0].function.arguments"


def test_options_mapping() -> None:
    body = body_of(
        max_tokens=100,
        stop="\n\n",
        temperature=0.2,
        top_p=0.9,
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        user="someone",
    )
    assert body["options"] == {
        "num_predict": 100,
        "stop": ["\n\n"],
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
    }
    assert set(body) == {"model", "messages", "stream", "options"}


def test_max_completion_tokens_wins_and_stop_lists_stay_lists() -> None:
    options = body_of(max_tokens=100, max_completion_tokens=7, stop=["a", "b"])["options"]
    assert options == {"num_predict": 7, "stop": ["a", "b"]}


def test_ollama_options_and_keep_alive_pass_through_under_openai_fields() -> None:
    body = body_of(options={"num_ctx": 8192, "temperature": 1.0}, temperature=0.3, keep_alive="5m")
    assert body["options"] == {"num_ctx": 8192, "temperature": 0.3}
    assert body["keep_alive"] == "5m"
    assert rejected(options=[1]).param == "options"
    assert rejected(keep_alive=[1]).param == "keep_alive"


def test_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert body_of(response_format={"type": "json_object"})["format"] == "json"
    spec = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    assert body_of(response_format=spec)["format"] == schema
    assert "format" not in body_of(response_format={"type": "text"})
    no_schema = {"type": "json_schema", "json_schema": {"name": "x"}}
    assert rejected(response_format=no_schema).param == "response_format.json_schema.schema"
    assert rejected(response_format={"type": "yaml"}).param == "response_format.type"


@pytest.mark.parametrize(
    ("effort", "think"),
    [("none", False), ("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high")],
)
def test_reasoning_effort_becomes_think(effort: str, think: bool | str) -> None:
    assert body_of(reasoning_effort=effort)["think"] == think


def test_unknown_reasoning_effort_and_n_are_rejected() -> None:
    assert rejected(reasoning_effort="extreme").param == "reasoning_effort"
    error = rejected(n=2)
    assert error.param == "n"
    assert "ollama" in error.message
    assert "'n' greater than 1 is not supported" in error.message
    assert "options" not in body_of(n=1)


# -- non-streaming response ---------------------------------------------------------------------


def final(**fields: Any) -> dict[str, Any]:
    """A final (done) line or non-streaming answer."""
    return {
        "model": "llama3.2",
        "created_at": "2025-07-07T20:22:19.19Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": "stop",
        "total_duration": 182242375,
        "load_duration": 41295167,
        "prompt_eval_count": 169,
        "prompt_eval_duration": 24573166,
        "eval_count": 15,
        "eval_duration": 115959084,
        **fields,
    }


def parse(**fields: Any) -> Any:
    return ADAPTER.parse_response(json.dumps(final(**fields)).encode(), "llama3.2")


def test_response_content_thinking_and_usage() -> None:
    message = {"role": "assistant", "content": "Paris.", "thinking": "Capital of France…"}
    response = parse(message=message)
    assert response.id.startswith("chatcmpl-")
    assert response.model == "llama3.2"
    assert response.created > 1_700_000_000
    (choice,) = response.choices
    assert choice.message.content == "Paris."
    assert choice.message.reasoning_content == "Capital of France…"
    assert choice.message.tool_calls is msgspec.UNSET  # left out of the JSON
    assert choice.finish_reason == "stop"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (169, 15)
    assert response.usage.total_tokens == 184


def test_response_tool_calls_get_ids_and_json_string_arguments() -> None:
    calls = [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}},
        {"function": {"index": 1, "name": "now", "arguments": {}}},
    ]
    response = parse(message={"role": "assistant", "content": "", "tool_calls": calls})
    (choice,) = response.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    first, second = choice.message.tool_calls or []
    assert CALL_ID.match(first.id)
    assert first.id != second.id
    assert first.type == "function"
    assert (first.function.name, first.function.arguments) == ("get_weather", '{"city":"Paris"}')
    assert second.function.arguments == "{}"


@pytest.mark.parametrize(
    ("done_reason", "finish"),
    [("stop", "stop"), ("length", "length"), ("load", "stop"), ("unload", "stop"), ("", "stop")],
)
def test_done_reason_mapping(done_reason: str, finish: str) -> None:
    assert parse(done_reason=done_reason).choices[0].finish_reason == finish


def test_length_stays_length_even_with_tool_calls() -> None:
    calls = [{"function": {"name": "f", "arguments": {}}}]
    message = {"role": "assistant", "content": "", "tool_calls": calls}
    assert parse(done_reason="length", message=message).choices[0].finish_reason == "length"


def test_missing_counts_are_zero() -> None:
    line = final()
    del line["prompt_eval_count"], line["prompt_eval_duration"]
    usage = ADAPTER.parse_response(json.dumps(line).encode(), "llama3.2").usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (0, 15, 15)


@pytest.mark.parametrize(
    "body", [b"<html>", b'{"model": 5}', b"[]", b'{"model": "m", "done": true}']
)
def test_garbage_response_is_upstream_error(body: bytes) -> None:
    with pytest.raises(UpstreamError):
        ADAPTER.parse_response(body, "llama3.2")


def test_error_object_with_status_200_is_upstream_error() -> None:
    with pytest.raises(UpstreamError) as caught:
        ADAPTER.parse_response(b'{"error":"model runner crashed"}', "llama3.2")
    assert "model runner crashed" in caught.value.message


# -- streaming ----------------------------------------------------------------------------------


def line(**fields: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "created_at": "2025-07-07T20:22:19.18Z", "done": False, **fields}


def ndjson(*objects: Any) -> bytes:
    return b"".join(
        (o if isinstance(o, bytes) else json.dumps(o).encode()) + b"\n" for o in objects
    )


STREAM = ndjson(
    line(message={"role": "assistant", "content": "", "thinking": "Hmm"}),
    line(message={"role": "assistant", "content": "The"}),
    b"",
    line(message={"role": "assistant", "content": " sky é"}),
    line(
        message={
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"index": 0, "name": "look", "arguments": {"at": "sky"}}},
                {"function": {"index": 1, "name": "now", "arguments": {}}},
            ],
        }
    ),
    line(
        message={
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"index": 0, "name": "log", "arguments": {"n": 1}}}],
        }
    ),
    final(prompt_eval_count=12),
)


def run_stream(raw: bytes, size: int) -> list[ChatChunk]:
    parser = ADAPTER.chunk_parser("llama3.2")
    chunks: list[ChatChunk] = []
    for start in range(0, len(raw), size):
        chunks.extend(parser.feed(raw[start : start + size]))
    chunks.extend(parser.finish())
    return chunks


def test_stream_at_every_split_size() -> None:
    expected = [chunk_summary(c) for c in run_stream(STREAM, len(STREAM))]
    for size in range(1, 64):
        assert [chunk_summary(c) for c in run_stream(STREAM, size)] == expected


def chunk_summary(chunk: ChatChunk) -> Any:
    """A chunk without its random ids."""
    data = msgspec.to_builtins(chunk)
    data.pop("id")
    data.pop("created")
    for choice in data["choices"]:
        for call in choice["delta"].get("tool_calls", []):
            call.pop("id")
    return data


def test_stream_chunks_in_openai_shape() -> None:
    chunks = run_stream(STREAM, 5)
    assert len({(c.id, c.created, c.model) for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].model == "llama3.2"
    first = chunks[0].choices[0].delta
    assert (first.role, first.content) == ("assistant", "")
    deltas = [c.choices[0].delta for c in chunks[1:-2]]
    assert [d.reasoning_content for d in deltas if d.reasoning_content] == ["Hmm"]
    assert "".join(d.content or "" for d in deltas) == "The sky é"
    calls = [call for d in deltas for call in d.tool_calls or ()]
    assert [c.index for c in calls] == [0, 1, 2]
    assert len({c.id for c in calls}) == 3
    assert all(c.id and CALL_ID.match(c.id) and c.type == "function" for c in calls)
    assert [(c.function.name, c.function.arguments) for c in calls if c.function] == [
        ("look", '{"at":"sky"}'),
        ("now", "{}"),
        ("log", '{"n":1}'),
    ]
    finish, usage = chunks[-2:]
    assert finish.choices[0].finish_reason == "tool_calls"
    assert finish.choices[0].delta.content is None
    assert usage.choices == []
    assert usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (12, 15)


def test_stream_text_only_finishes_stop_with_usage_even_without_prompt_count() -> None:
    done = final(done_reason="length")
    del done["prompt_eval_count"]
    chunks = run_stream(ndjson(line(message={"role": "assistant", "content": "a"}), done), 3)
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 0
    assert chunks[-1].usage.total_tokens == 15


def test_stream_final_line_without_newline_and_crlf() -> None:
    raw = json.dumps(line(message={"role": "assistant", "content": "a"})).encode() + b"\r\n"
    raw += json.dumps(final()).encode()
    chunks = run_stream(raw, 7)
    assert [c.choices[0].delta.content for c in chunks if c.choices] == ["", "a", None]


def test_mid_stream_error_line() -> None:
    parser = ADAPTER.chunk_parser("llama3.2")
    first = parser.feed(ndjson(line(message={"role": "assistant", "content": "a"})))
    assert len(first) == 2
    with pytest.raises(UpstreamError) as caught:
        parser.feed(ndjson({"error": "an error was encountered while running the model"}))
    assert "an error was encountered" in caught.value.message
    assert caught.value.status == 502


def test_chunks_read_with_an_error_line_come_first() -> None:
    parser = ADAPTER.chunk_parser("llama3.2")
    chunks = parser.feed(
        ndjson(
            line(message={"role": "assistant", "content": "a"}),
            {"error": "an error was encountered while running the model"},
            line(message={"role": "assistant", "content": "late"}),
        )
    )
    assert [c.choices[0].delta.content for c in chunks] == ["", "a"]
    with pytest.raises(UpstreamError) as caught:
        parser.finish()
    assert "an error was encountered" in caught.value.message


def test_last_line_before_a_cut_comes_first() -> None:
    parser = ADAPTER.chunk_parser("llama3.2")
    raw = json.dumps(line(message={"role": "assistant", "content": "a"})).encode()
    assert parser.feed(raw) == []  # no newline yet
    assert [c.choices[0].delta.content for c in parser.finish()] == ["", "a"]
    with pytest.raises(UpstreamError) as caught:
        parser.finish()
    assert caught.value.code == "upstream_stream_cut"


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_cut_stream(size: int) -> None:
    raw = ndjson(line(message={"role": "assistant", "content": "a"}))
    with pytest.raises(UpstreamError) as caught:
        run_stream(raw, size)
    assert caught.value.code == "upstream_stream_cut"
    with pytest.raises(UpstreamError) as empty:
        ADAPTER.chunk_parser("llama3.2").finish()
    assert empty.value.code == "upstream_stream_cut"


@pytest.mark.parametrize("garbage", [b"<html>oops</html>\n", b'{"done": "yes"}\n'])
def test_garbage_lines_are_upstream_errors(garbage: bytes) -> None:
    with pytest.raises(UpstreamError):
        ADAPTER.chunk_parser("llama3.2").feed(garbage)


def test_overlong_line_is_refused() -> None:
    parser = ADAPTER.chunk_parser("llama3.2")
    piece = b"x" * (1024 * 1024)
    for _ in range(MAX_LINE_BYTES // len(piece)):
        assert parser.feed(piece) == []
    with pytest.raises(UpstreamError) as caught:
        parser.feed(b"x")
    assert "over" in caught.value.message
    with pytest.raises(UpstreamError):
        ADAPTER.chunk_parser("llama3.2").feed(b" " * (MAX_LINE_BYTES + 1) + b"\n")


def test_lines_after_done_are_ignored() -> None:
    raw = ndjson(final(), line(message={"role": "assistant", "content": "late"}))
    assert all(c.choices == [] or c.choices[0].delta.content != "late" for c in run_stream(raw, 9))


# -- errors and models --------------------------------------------------------------------------


def err(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def test_unknown_model_is_model_not_found_with_ollamas_message() -> None:
    mapped = ADAPTER.map_error(404, {}, err('model "nope" not found, try pulling it first'))
    assert isinstance(mapped, ModelNotFound)
    assert mapped.code == "model_not_found"
    assert 'model "nope" not found, try pulling it first' in mapped.message


@pytest.mark.parametrize(
    ("status", "kind", "gateway_status"),
    [
        (400, InvalidRequest, 400),
        (429, RateLimited, 429),
        (500, UpstreamError, 502),
        (502, UpstreamError, 502),
        (503, UpstreamUnavailable, 503),
        (504, UpstreamTimeout, 504),
    ],
)
def test_error_statuses(status: int, kind: type[Exception], gateway_status: int) -> None:
    mapped = ADAPTER.map_error(status, {"retry-after": "2"}, err("it broke"))
    assert isinstance(mapped, kind)
    assert mapped.status == gateway_status
    assert "it broke" in mapped.message


def test_429_keeps_retry_after_and_401_is_the_gateways_problem() -> None:
    assert ADAPTER.map_error(429, {"retry-after": "2"}, err("slow")).headers == {"retry-after": "2"}
    mapped = ADAPTER.map_error(401, {}, err("unauthorized"))
    assert (mapped.status, mapped.code) == (502, "upstream_auth_failed")


def test_non_json_error_bodies() -> None:
    assert "Bad Gateway" in ADAPTER.map_error(502, {}, b"<h1>Bad Gateway</h1>").message
    assert "HTTP 500" in ADAPTER.map_error(500, {}, b"").message
    # A plain-text 404 is Ollama's router: a wrong base_url, not an unknown model.
    wrong_path = ADAPTER.map_error(404, {}, b"404 page not found")
    assert wrong_path.status == 502
    assert "/v1" in wrong_path.message


def test_tags_parsing() -> None:
    tags = {
        "models": [
            {
                "name": "llama3.2:latest",
                "model": "llama3.2:latest",
                "modified_at": "2025-07-01T09:14:05.123456789+02:00",
                "size": 2019393189,
                "digest": "a80c4f17acd5",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "llama",
                    "families": ["llama"],
                    "parameter_size": "3.2B",
                    "quantization_level": "Q4_K_M",
                },
            },
            {"name": "qwen3:8b", "model": "qwen3:8b"},
            {"name": "phi4:latest", "modified_at": "not a time"},
            {"name": "gemma3:1b", "modified_at": "2025-01-02T03:04:05Z"},
        ]
    }
    assert ADAPTER.parse_models(json.dumps(tags).encode()) == [
        ListedModel("llama3.2:latest", 1751354045),  # modified_at, offset and nanoseconds
        ListedModel("qwen3:8b"),
        ListedModel("phi4:latest"),
        ListedModel("gemma3:1b", 1735787045),
    ]
    assert ADAPTER.parse_models(b'{"models": []}') == []
    assert ADAPTER.parse_models(b'{"models": null}') == []
    call = ADAPTER.models_call()
    assert (call.method, call.path) == ("GET", "/api/tags")
    for garbage in (b"{}", b"<html>", b'{"models": [{"size": 1}]}'):
        with pytest.raises(UpstreamError):
            ADAPTER.parse_models(garbage)
    assert ADAPTER.fallback_models == ()
