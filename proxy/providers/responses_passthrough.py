"""The Responses API passed through to an upstream that serves it (OpenAI, xAI).

The client's body goes to ``/responses`` as sent, with only the model renamed. The answer — the
whole response object, or each SSE event — comes back as the upstream's own bytes; the gateway
reads beside them, through small structs that skip everything else, what it logs and charges:
usage (from the response object, or the terminal event of a stream), the text of output deltas
(for stored bodies), and how the answer ended. Built-in tool calls, reasoning with
``encrypted_content``, annotations and fields nobody here has heard of pass untouched.

A stream's own end is a terminal event (``response.completed``, ``response.incomplete``,
``response.failed``) or an ``error`` event; it has no ``[DONE]``. A failure the upstream reported
that way reaches the client as the upstream's event (:attr:`PassedEvent.terminal`), and then ends
the call as an error for the log and the breaker; a stream that stops without one is cut.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
from msgspec import Struct

from proxy.chat import CompletionTokensDetails, PromptTokensDetails, TokenCount, Usage
from proxy.errors import GatewayError, UpstreamError
from proxy.providers.base import (
    ChunkParser,
    PassedAnswer,
    PassedEvent,
    Passthrough,
    UpstreamCall,
    decode_as,
    malformed,
)
from proxy.providers.named_events import NamedEventParser
from proxy.responses import ResponsesRequest

_encode = msgspec.json.Encoder().encode

#: Events after which the upstream sends nothing more for this response.
TERMINAL_EVENTS = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "error"}
)


class _InputDetails(Struct):
    cached_tokens: TokenCount = 0


class _OutputDetails(Struct):
    reasoning_tokens: TokenCount = 0


class _UsageFacts(Struct):
    input_tokens: TokenCount
    output_tokens: TokenCount
    total_tokens: TokenCount | None = None
    input_tokens_details: _InputDetails | None = None
    output_tokens_details: _OutputDetails | None = None


class _ErrorFacts(Struct):
    code: Any = None
    message: Any = None


class _ResponseFacts(Struct):
    """What the gateway reads from a response object; the rest is skipped."""

    status: Any = None
    usage: _UsageFacts | None = None
    error: _ErrorFacts | None = None


class _EventFacts(Struct):
    """What the gateway reads from one streamed event; the rest is skipped."""

    type: str
    response: _ResponseFacts | None = None
    delta: Any = None
    code: Any = None  # of an ``error`` event
    message: Any = None


_decode_response = msgspec.json.Decoder(_ResponseFacts).decode
_decode_event = msgspec.json.Decoder(_EventFacts).decode


def chat_usage(usage: _UsageFacts) -> Usage:
    """Responses usage in the gateway's terms (the log's and the pricer's)."""
    cached = usage.input_tokens_details.cached_tokens if usage.input_tokens_details else 0
    reasoning = usage.output_tokens_details.reasoning_tokens if usage.output_tokens_details else 0
    total = usage.total_tokens
    return Usage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=total if total is not None else usage.input_tokens + usage.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning),
    )


class ResponsesPassthrough(Passthrough[ResponsesRequest]):
    """The Responses protocol, passed through to one provider."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        headers = {"content-type": "application/json", "accept": "application/json"}
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}

    def call(self, request: ResponsesRequest, upstream_model: str) -> UpstreamCall:
        """The client's body with our model name."""
        body: dict[str, Any] = dict(request.raw)
        body["model"] = upstream_model
        headers = self._stream_headers if request.stream else self._headers
        return UpstreamCall("POST", "/responses", headers, _encode(body))

    def delete_call(self, response_id: str) -> UpstreamCall:
        """``DELETE /responses/{id}``: the upstream forgets a response it stores."""
        return UpstreamCall("DELETE", f"/responses/{quote(response_id, safe='')}", self._headers)

    def answer(self, body: bytes) -> PassedAnswer:
        """A response object as the upstream sent it, with the usage read from it."""
        facts = decode_as(_decode_response, self._provider, "response", body)
        return PassedAnswer(body, chat_usage(facts.usage) if facts.usage is not None else None)

    def event_parser(self, request: ResponsesRequest) -> ChunkParser[PassedEvent]:
        """A parser of one SSE stream of Responses events."""
        return ResponsesEventParser(self._provider)


class ResponsesEventParser(NamedEventParser):
    """Each SSE event of a Responses stream becomes a passed event: its name and data as they
    came, with its usage and text read beside them."""

    def _item(self, name: str, payload: bytes) -> PassedEvent:
        try:
            facts = _decode_event(payload)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise malformed(self._provider, "stream event", exc) from None
        kind = facts.type
        text = facts.delta if kind == "response.output_text.delta" else None
        if kind not in TERMINAL_EVENTS:
            return PassedEvent(payload, None, text if isinstance(text, str) else None, event=name)
        self._ended = True
        response = facts.response
        usage = chat_usage(response.usage) if response and response.usage else None
        event = PassedEvent(payload, usage, None, event=name, terminal=True)
        failure = _failure(self._provider, facts)
        if failure is not None:
            # The client gets the upstream's own event first; the error then ends the call.
            self.failure = failure
        return event


def _failure(provider: str, facts: _EventFacts) -> GatewayError | None:
    """The error a terminal event reports; None for a completed or incomplete answer."""
    if facts.type == "error":
        code, message = facts.code, facts.message
    elif facts.type == "response.failed":
        error = facts.response.error if facts.response else None
        code = error.code if error else None
        message = error.message if error else None
    else:
        return None
    return UpstreamError(
        f"Upstream {provider} failed the response: {message or 'no reason given'}",
        code=str(code) if code is not None else "upstream_failed",
    )
