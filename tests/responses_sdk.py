"""The official SDK as the judge of a Responses event stream: each event's framing and shape,
and the SDK's own accumulation of them (what ``responses.stream()`` does)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pydantic
from openai._models import construct_type
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)


def decoded(events: list[bytes]) -> list[dict[str, Any]]:
    """Each event's JSON, after checking its framing and its shape against the SDK's union."""
    found = []
    for event in events:
        assert event.endswith(b"\n\n")
        name_line, data_line = event[:-2].split(b"\n")
        data = json.loads(data_line.removeprefix(b"data: "))
        assert name_line == b"event: " + data["type"].encode()
        assert b"\n" not in data_line
        EVENTS.validate_python(data)
        found.append(data)
    assert [data["sequence_number"] for data in found] == list(range(len(found)))
    return found


def accumulate(data: list[dict[str, Any]]) -> ResponseStreamState[Any]:
    """Feed events through the SDK's own stream state, as responses.stream() does."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=[], text_format=openai.omit)
    for event in data:
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=event))  # type: ignore[arg-type]
    return state
