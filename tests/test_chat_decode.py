"""Request decoding: the gateway's view, raw pass-through, the internal form for translators,
and errors that name the field."""

from __future__ import annotations

import json

import pytest

from proxy.chat import decode_chat_request
from proxy.chat_form import ImagePart
from proxy.errors import InvalidRequest


def body(**fields: object) -> bytes:
    return json.dumps(
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **fields}
    ).encode()


def test_unknown_fields_are_kept_for_pass_through() -> None:
    request = decode_chat_request(body(logit_bias={"50256": -100}, service_tier="flex"))
    assert request.raw["logit_bias"] == {"50256": -100}
    assert request.raw["service_tier"] == "flex"
    assert not request.stream


def test_images_are_noticed() -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    request = decode_chat_request(body(messages=[{"role": "user", "content": content}]))
    assert request.has_images
    parts = request.form().messages[0].content
    assert isinstance(parts, list)
    assert isinstance(parts[1], ImagePart)


def test_tool_round_trip_messages_decode() -> None:
    messages = [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    request = decode_chat_request(body(messages=messages))
    assert request.form().messages[2].tool_calls is not None


def test_stream_options_and_usage_flag() -> None:
    request = decode_chat_request(body(stream=True, stream_options={"include_usage": True}))
    assert request.stream
    assert request.include_usage


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (body(messages=[]), "messages"),
        (body(messages=["hi"]), "messages[0]"),
        (body(max_tokens=0), "max_tokens"),
        (body(max_completion_tokens="many"), "max_completion_tokens"),
        (body(stream="yes"), "stream"),
        (body(n=0), "n"),
        (body(model=""), "model"),
    ],
)
def test_errors_name_the_field(raw: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_chat_request(raw)
    assert caught.value.param is not None
    assert caught.value.param.startswith(param)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "raw",
    [
        body(stream_options={"include_usage": True}),  # without stream: OpenAI's to refuse
        body(messages=[{"role": "user", "content": [{"type": "video"}]}]),
        body(messages=[{"role": "robot", "content": "beep"}]),
        body(top_p=2, temperature="hot"),
        body(stop=["a", "b", "c", "d", "e"]),
        body(tools=[{"type": "custom", "custom": {"name": "grep"}}]),
        body(stream=None),
    ],
)
def test_what_the_gateway_does_not_act_on_is_the_upstreams_to_judge(raw: bytes) -> None:
    request = decode_chat_request(raw)
    assert request.raw == json.loads(raw)
    assert not request.stream


@pytest.mark.parametrize(
    ("raw", "param", "fragment"),
    [
        (
            body(messages=[{"role": "user", "content": [{"type": "video"}]}]),
            "messages[0].content[0].type",
            "video",
        ),
        (body(messages=[{"role": "robot", "content": "beep"}]), "messages[0].role", "robot"),
        (body(temperature="hot"), "temperature", "float"),
        (body(tools=[{"type": "custom", "custom": {"name": "grep"}}]), "tools[0].type", "custom"),
    ],
)
def test_the_internal_form_refuses_what_it_cannot_represent(
    raw: bytes, param: str, fragment: str
) -> None:
    request = decode_chat_request(raw)
    with pytest.raises(InvalidRequest) as caught:
        request.form()
    assert caught.value.param == param
    assert fragment in caught.value.message
