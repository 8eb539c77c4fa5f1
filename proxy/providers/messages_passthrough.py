"""Anthropic's Messages API passed through to an upstream that serves it (Anthropic).

The client's body goes to ``/v1/messages`` with only the model renamed, and with the client's own
``anthropic-version`` and ``anthropic-beta`` headers and ``?beta=true`` (Claude Code's features
hang on them). The answer — the whole message, or each SSE event with its name — comes back as the
upstream's own bytes; the gateway reads beside them, through small structs that skip everything
else, what it logs and charges: usage (a whole message's, or a stream's ``message_start`` and its
cumulative ``message_delta``), the text of text deltas (for stored bodies), and how it ended.
``cache_control``, server tools, citations and fields nobody here has heard of pass untouched.

A stream's own end is ``message_stop``, or an ``error`` event, which reaches the client as the
upstream's event and then ends the call as an error for the log and the breaker. A stream that
stops without either is cut.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from proxy.chat import Usage
from proxy.errors import GatewayError, UpstreamError, UpstreamUnavailable
from proxy.messages import MessagesRequest
from proxy.providers.anthropic_response import UsageTotals, WireUsage
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

__all__ = ["MessagesEventParser", "MessagesPassthrough", "messages_usage"]

_encode = msgspec.json.Encoder().encode

#: Events after which the upstream sends nothing more for this message.
TERMINAL_EVENTS = frozenset({"message_stop", "error"})


class _MessageFacts(Struct):
    """What the gateway reads from a message object; the rest is skipped."""

    usage: WireUsage | None = None


class _ErrorFacts(Struct):
    type: Any = None
    message: Any = None


class _DeltaFacts(Struct):
    type: Any = None
    text: Any = None


class _EventFacts(Struct):
    """What the gateway reads from one streamed event; the rest is skipped."""

    type: str
    message: _MessageFacts | None = None  # message_start
    usage: WireUsage | None = None  # message_delta
    delta: _DeltaFacts | None = None  # content_block_delta
    error: _ErrorFacts | None = None  # error


_decode_message = msgspec.json.Decoder(_MessageFacts).decode
_decode_event = msgspec.json.Decoder(_EventFacts).decode


def messages_usage(usage: WireUsage) -> Usage:
    """A whole message's usage in the gateway's terms (the log's and the pricer's): the prompt
    is every input token, cache reads and writes included."""
    totals = UsageTotals()
    totals.update(usage)
    return totals.usage()


class MessagesPassthrough(Passthrough[MessagesRequest]):
    """The Messages protocol, passed through to one provider."""

    def __init__(self, provider: str, *, api_version: str) -> None:
        self._provider = provider
        self._api_version = api_version

    def call(self, request: MessagesRequest, upstream_model: str) -> UpstreamCall:
        """The client's body with our model name, and the client's protocol headers."""
        body: dict[str, Any] = dict(request.raw)
        body["model"] = upstream_model
        sent = request.headers
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if request.stream else "application/json",
            # Every call needs one: the provider's own when the client named none.
            "anthropic-version": sent.version or self._api_version,
        }
        if sent.beta:
            headers["anthropic-beta"] = sent.beta
        path = "/v1/messages?beta=true" if sent.beta_query else "/v1/messages"
        return UpstreamCall("POST", path, headers, _encode(body))

    def count_tokens_call(self, request: MessagesRequest, upstream_model: str) -> UpstreamCall:
        """``POST /v1/messages/count_tokens`` for the same body (its own field set is the
        client's to get right: the upstream names what it refuses)."""
        call = self.call(request, upstream_model)
        path = call.path.replace("/v1/messages", "/v1/messages/count_tokens", 1)
        headers = {**call.headers, "accept": "application/json"}
        return UpstreamCall("POST", path, headers, call.body)

    def answer(self, body: bytes) -> PassedAnswer:
        """A message as the upstream sent it, with the usage read from it."""
        facts = decode_as(_decode_message, self._provider, "message", body)
        return PassedAnswer(body, messages_usage(facts.usage) if facts.usage is not None else None)

    def event_parser(self, request: MessagesRequest) -> ChunkParser[PassedEvent]:
        """A parser of one SSE stream of Messages events."""
        return MessagesEventParser(self._provider)


class MessagesEventParser(NamedEventParser):
    """Each SSE event of a Messages stream becomes a passed event: its name and data as they
    came, with the usage so far and the text read beside them."""

    def __init__(self, provider: str) -> None:
        super().__init__(provider)
        self._usage = UsageTotals()

    def _item(self, name: str, payload: bytes) -> PassedEvent:
        try:
            facts = _decode_event(payload)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise malformed(self._provider, "stream event", exc) from None
        kind = facts.type
        usage: Usage | None = None
        text: str | None = None
        if kind == "content_block_delta":
            delta = facts.delta
            if delta is not None and delta.type == "text_delta" and isinstance(delta.text, str):
                text = delta.text
        elif kind == "message_start" and facts.message is not None and facts.message.usage:
            self._usage.update(facts.message.usage)
            usage = self._usage.usage()
        elif kind == "message_delta" and facts.usage is not None:
            self._usage.update(facts.usage)
            usage = self._usage.usage()
        if kind not in TERMINAL_EVENTS:
            return PassedEvent(payload, usage, text, event=name)
        self._ended = True
        if kind == "error":
            # The client gets the upstream's own event first; the error then ends the call.
            self.failure = _failure(self._provider, facts)
        return PassedEvent(payload, None, None, event=name, terminal=True)


def _failure(provider: str, facts: _EventFacts) -> GatewayError:
    """The error an ``error`` event reports; an overload is the upstream's, as a 529 is."""
    error = facts.error
    kind = error.type if error else None
    message = error.message if error else None
    if kind == "overloaded_error":
        return UpstreamUnavailable(
            f"Upstream {provider} is overloaded: {message or 'no reason given'}",
            code="upstream_overloaded",
        )
    return UpstreamError(
        f"Upstream {provider} failed the message: {message or 'no reason given'}",
        code=str(kind) if kind is not None else "upstream_failed",
    )
