"""The official ``anthropic`` SDK as the judge of Messages objects and event streams: each
event's framing and shape, the SDK's own accumulation of them (``accumulate_event``, what
``messages.stream()`` does), and a client reading bytes as if from a server."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2
import pydantic
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)


def decoded(events: list[bytes]) -> list[dict[str, Any]]:
    """Each event's JSON, after checking its framing (named, one data line) and, but for an
    ``error`` event, its shape against the SDK's union."""
    found = []
    for event in events:
        assert event.endswith(b"\n\n")
        name_line, data_line = event[:-2].split(b"\n")
        data = json.loads(data_line.removeprefix(b"data: "))
        assert name_line == b"event: " + data["type"].encode()
        if data["type"] not in ("error", "ping"):
            EVENTS.validate_python(data)
        found.append(data)
    return found


def accumulate(data: list[dict[str, Any]]) -> Message:
    """The message the SDK's own accumulator builds from the events (errors excluded)."""
    snapshot: Any = None
    json_bufs: dict[int, bytes] = {}
    for event in data:
        if event["type"] in ("error", "ping"):
            continue
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=json_bufs)  # type: ignore[arg-type]
    return Message.model_validate(snapshot.model_dump())


def client(
    answer: bytes, content_type: str, status: int = 200, headers: dict[str, str] | None = None
) -> anthropic.Anthropic:
    """An SDK client whose every call is answered with ``answer``."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            status, headers={"content-type": content_type, **(headers or {})}, content=answer
        )

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return anthropic.Anthropic(
        api_key="sk-test", base_url="http://gateway.test", http_client=http, max_retries=0
    )


def streamed(events: list[bytes]) -> Message:
    """The final message ``messages.stream()`` gives for the event bytes."""
    sdk = client(b"".join(events), "text/event-stream")
    with sdk.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        for _ in stream:
            pass
        return stream.get_final_message()


def created(message: dict[str, Any]) -> Message:
    """What ``messages.create()`` gives for the message object."""
    sdk = client(json.dumps(message).encode(), "application/json")
    return sdk.messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    )
