"""OpenAI chat completions passed through to an upstream that speaks them (OpenAI, DeepSeek, xAI).

The request goes up as the client sent it, with only what the gateway must change: the model name,
``stream_options.include_usage`` forced on for streams (the gateway logs usage), and, where the
provider asks for it, OpenAI's ``max_tokens`` under its current name.

The answer comes back as the upstream's bytes — the whole body, or each SSE event's data — read
only for what the gateway needs (usage, finish reasons, the answer's text, an error) through
structs that skip everything else. The only edits, each made on that event alone:

- the usage-only chunk is withheld from a client that did not ask for usage, and the
  ``"usage":null`` the upstream then adds to every other chunk is taken off;
- a provider's usage quirk is normalised (:class:`UsageFix`), so every client reads OpenAI's
  meaning.

Nothing else is decoded into our types, so fields, tool types and content parts the gateway has
never heard of pass both ways untouched.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from proxy.chat import ChatRequest, Usage
from proxy.errors import GatewayError, UpstreamError, UpstreamUnavailable
from proxy.providers.base import (
    UNREADABLE,
    ChunkParser,
    ItemT,
    PassedAnswer,
    PassedEvent,
    Passthrough,
    UpstreamCall,
    decode_as,
    decode_json,
    malformed,
)
from proxy.sse import SSEDecoder, SSEError

#: A provider's usage quirk: given the usage an answer reports, the fields to set in its JSON
#: to give it OpenAI's meaning (a nested object is merged), or None when it already has it.
UsageFix = Callable[[Usage], Mapping[str, Any] | None]

_encode = msgspec.json.Encoder().encode
_decode_any = msgspec.json.Decoder().decode
_USAGE_NULL = b'"usage":null'


class _DeltaFacts(msgspec.Struct):
    content: Any = None


class _ChoiceFacts(msgspec.Struct):
    delta: _DeltaFacts | None = None
    finish_reason: Any = None


class _EventFacts(msgspec.Struct):
    """What the gateway reads from one ``chat.completion.chunk``; the rest is skipped."""

    choices: list[_ChoiceFacts]
    usage: Usage | UnsetType | None = UNSET  # None: "usage":null; UNSET: no usage member


class _AnswerChoice(msgspec.Struct):
    finish_reason: Any = None


class _AnswerFacts(msgspec.Struct):
    """What the gateway reads from a ``chat.completion``; the rest is skipped."""

    choices: list[_AnswerChoice]
    usage: Usage | None = None


_decode_event = msgspec.json.Decoder(_EventFacts).decode
_decode_answer = msgspec.json.Decoder(_AnswerFacts).decode


class ChatPassthrough(Passthrough[ChatRequest]):
    """The OpenAI chat protocol, passed through to one provider."""

    def __init__(
        self,
        provider: str,
        *,
        rename_max_tokens: bool = False,
        fix_usage: UsageFix | None = None,
    ) -> None:
        self._provider = provider
        self._rename_max_tokens = rename_max_tokens
        self._fix_usage = fix_usage
        headers = {"content-type": "application/json", "accept": "application/json"}
        self._headers = headers
        self._stream_headers = {**headers, "accept": "text/event-stream"}

    def call(self, request: ChatRequest, upstream_model: str) -> UpstreamCall:
        """The client's body with our model name, usage always requested on streams."""
        body: dict[str, Any] = dict(request.raw)
        body["model"] = upstream_model
        if self._rename_max_tokens and "max_tokens" in body:
            # OpenAI deprecated max_tokens and reasoning models reject it; the new name means
            # the same bound (including reasoning), so renaming loses nothing.
            max_tokens = body.pop("max_tokens")
            body.setdefault("max_completion_tokens", max_tokens)
        if request.stream:
            options = body.get("stream_options")
            body["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
            return UpstreamCall("POST", "/chat/completions", self._stream_headers, _encode(body))
        return UpstreamCall("POST", "/chat/completions", self._headers, _encode(body))

    def answer(self, body: bytes) -> PassedAnswer:
        """A ``chat.completion`` as the upstream sent it, its usage normalised if it must be."""
        facts = decode_as(_decode_answer, self._provider, "response", body)
        for choice in facts.choices:
            check_finish(self._provider, choice.finish_reason)
        usage = facts.usage
        if usage is not None and self._fix_usage is not None:
            patch = self._fix_usage(usage)
            if patch:
                body, usage = _patched(body, patch)
        return PassedAnswer(body, usage)

    def event_parser(self, request: ChatRequest) -> ChunkParser[PassedEvent]:
        """A parser of one SSE stream of chunks, for a client that asked for usage or not."""
        return ChatEventParser(self._provider, request.include_usage, self._fix_usage)


def check_finish(provider: str, finish_reason: object) -> None:
    """DeepSeek ends an answer it could not complete with its own reason: that is an outage."""
    if finish_reason == "insufficient_system_resource":
        raise UpstreamUnavailable(
            f"Upstream {provider} ran out of capacity and cut the answer short "
            "(insufficient_system_resource).",
            code="insufficient_system_resource",
        )


def _patched(payload: bytes, patch: Mapping[str, Any]) -> tuple[bytes, Usage]:
    """``payload`` with ``patch`` applied to its usage object, and the usage it now says."""
    document = _decode_any(payload)
    usage: dict[str, Any] = document["usage"]
    for key, value in patch.items():
        current = usage.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            current.update(value)
        else:
            usage[key] = dict(value) if isinstance(value, Mapping) else value
    return _encode(document), msgspec.convert(usage, Usage)


def without_usage_null(payload: bytes) -> bytes:
    """A chunk whose top-level ``"usage"`` is null, without that member, the rest byte for byte.

    The member is found as bytes: ``"usage":null`` right after ``{`` or ``,`` is a member named
    usage (inside a string every quote is escaped), and when it occurs once it is the top-level
    one the caller saw. Any other spelling (spaces, a nested member of the same name) is rare
    enough to take the slow way: decode, drop the member, encode.
    """
    at = payload.find(_USAGE_NULL)
    end = at + len(_USAGE_NULL)
    if at < 1 or payload.find(_USAGE_NULL, end) != -1 or payload[at - 1] not in b",{":
        document = _decode_any(payload)
        document.pop("usage", None)
        return _encode(document)
    if payload[at - 1] == 0x2C:  # ",": the member and the comma before it
        return payload[: at - 1] + payload[end:]
    if payload[end : end + 1] == b",":  # the first member: it and the comma after it
        return payload[:at] + payload[end + 1 :]
    return payload[:at] + payload[end:]


def error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """``(message, code, param)`` of an error body: OpenAI's shape, xAI's string, or text."""
    try:
        parsed = msgspec.json.decode(body)
    except UNREADABLE:
        text = body[:500].decode(errors="replace").strip()
        return (text or None), None, None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            code = error.get("code")
            param = error.get("param")
            return (
                str(message) if message is not None else None,
                str(code) if code is not None else None,
                str(param) if param is not None else None,
            )
        if isinstance(error, str):
            return error, None, None
    return body[:500].decode(errors="replace"), None, None


class OpenAIEventParser(ChunkParser[ItemT]):
    """OpenAI's stream: SSE ``data:`` events of chunks, an optional in-stream error event, and
    ``[DONE]``; each chunk's bytes become an item (:meth:`_item`)."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._sse = SSEDecoder()
        self._done = False

    @abc.abstractmethod
    def _item(self, payload: bytes) -> ItemT:
        """The item of one chunk event's data; a GatewayError for an error event or garbage."""

    def feed(self, data: bytes) -> list[ItemT]:
        # A read of one chunk event, as nearly every one is: its bytes as they came, without the
        # general path's line splitting, text round trip and frames.
        if self.failure is None and not self._done:
            single = self._sse.single_data_event(data)
            if single is not None and single != b"[DONE]":
                try:
                    return [self._item(single)]
                except GatewayError as exc:
                    before: list[ItemT] = []
                    self._hold(exc, before)
                    return before
        return super().feed(data)

    def _feed(self, data: bytes, items: list[ItemT]) -> None:
        # The general path: a one-chunk read took feed()'s shortcut already.
        try:
            events = self._sse.feed(data)
        except SSEError as exc:
            raise malformed(self._provider, "stream", exc) from None
        # Complete events before a bad line of this read are read first (the base class
        # delivers them, then the error).
        for event in events:
            if self._done:
                continue
            if event.data == "[DONE]":
                self._done = True
                continue
            items.append(self._item(event.data.encode()))
        if self._sse.failure is not None:
            raise malformed(self._provider, "stream", self._sse.failure)

    def _finish(self, items: list[ItemT]) -> None:
        # The stream ended: fine only after [DONE].
        self._sse.close()
        if not self._done:
            raise UpstreamError(
                f"Upstream {self._provider} ended the stream before it was complete.",
                code="upstream_stream_cut",
            )


class ChatEventParser(OpenAIEventParser[PassedEvent]):
    """The chunks passed through as the upstream's bytes, read for usage and text."""

    def __init__(self, provider: str, include_usage: bool, fix_usage: UsageFix | None) -> None:
        super().__init__(provider)
        self._include_usage = include_usage
        self._fix_usage = fix_usage

    def _item(self, payload: bytes) -> PassedEvent:
        try:
            facts = _decode_event(payload)
        except msgspec.ValidationError as exc:
            # An error event has no chunk fields; only then is it worth a second parse.
            raise stream_error(self._provider, payload, exc) from None
        except UNREADABLE as exc:
            raise malformed(self._provider, "stream event", exc) from None
        text: str | None = None
        for choice in facts.choices:
            check_finish(self._provider, choice.finish_reason)
            delta = choice.delta
            if delta is not None and isinstance(delta.content, str):
                text = delta.content if text is None else text + delta.content
        usage = facts.usage
        if usage is None:
            if not self._include_usage:
                # With usage asked for, the upstream adds "usage":null to every chunk; a client
                # that did not ask gets the chunk as it would have been.
                payload = without_usage_null(payload)
            return PassedEvent(payload, None, text)
        if usage is not UNSET:
            if self._fix_usage is not None:
                patch = self._fix_usage(usage)
                if patch:
                    payload, usage = _patched(payload, patch)
            if not facts.choices and not self._include_usage:
                # The usage chunk exists because we asked for it, not the client.
                return PassedEvent(None, usage, text)
            return PassedEvent(payload, usage, text)
        return PassedEvent(payload, None, text)


def stream_error(provider: str, payload: bytes, exc: Exception) -> GatewayError:
    """The error for a stream event that is no chunk: the upstream's error event, or garbage."""
    parsed = decode_json(provider, "stream event", payload)
    if isinstance(parsed, dict) and "error" in parsed:
        message, code, _ = error_fields(payload)
        return UpstreamError(
            f"Upstream {provider} failed mid-stream: {message or 'unknown error'}", code=code
        )
    return malformed(provider, "stream event", exc)
