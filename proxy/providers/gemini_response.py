"""Gemini's answers (``GenerateContentResponse``) read into OpenAI's shape, whole or per event.

Thought parts become ``reasoning_content``, ``functionCall`` parts tool calls (their signatures
kept, see :mod:`proxy.providers.gemini_calls`), ``logprobsResult`` OpenAI's ``logprobs``, and
``usageMetadata`` the usage with every count, zeros included.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import msgspec
from msgspec import UNSET

from proxy.chat import (
    ChatResponse,
    Choice,
    CompletionTokensDetails,
    PromptTokensDetails,
    ResponseMessage,
    ResponseToolCall,
    Usage,
)
from proxy.chat_form import FunctionCall
from proxy.providers.base import decode_as, malformed
from proxy.providers.gemini_calls import CallMemory, new_call_id
from proxy.providers.gemini_errors import RpcStatus, rpc_error
from proxy.providers.logprobs import ChoiceLogprobs, TokenLogprob, TopLogprob, utf8_bytes

log = logging.getLogger("llm_proxy.gemini")

_encode = msgspec.json.Encoder().encode

# ---------------------------------------------------------------------------------------------
# Gemini's answers, as typed structs (unknown fields are ignored; absent ones are zero values,
# which Google leaves out of its proto3 JSON)


class WireFunctionCall(msgspec.Struct):
    """A ``functionCall`` part's call: ``args`` is an object."""

    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class WirePart(msgspec.Struct, rename="camel"):
    """One part of a candidate's content."""

    text: str | None = None
    thought: bool = False
    thought_signature: str | None = None
    function_call: WireFunctionCall | None = None


class _Content(msgspec.Struct):
    parts: list[WirePart] = []
    role: str | None = None


class _LogprobCandidate(msgspec.Struct, rename="camel"):
    token: str = ""
    log_probability: float = 0.0  # left out when 0: a certain token


class _TopCandidates(msgspec.Struct):
    candidates: list[_LogprobCandidate] = []


class _LogprobsResult(msgspec.Struct, rename="camel"):
    top_candidates: list[_TopCandidates] = []
    chosen_candidates: list[_LogprobCandidate] = []


class WireCandidate(msgspec.Struct, rename="camel"):
    """One candidate (an OpenAI choice)."""

    content: _Content | None = None
    finish_reason: str | None = None
    finish_message: str | None = None
    index: int = 0
    logprobs_result: _LogprobsResult | None = None


class _UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    tool_use_prompt_token_count: int = 0
    cached_content_token_count: int = 0
    total_token_count: int = 0


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class GenerateResponse(msgspec.Struct, rename="camel"):
    """One ``GenerateContentResponse`` (a whole answer or one stream event), or an error."""

    candidates: list[WireCandidate] = []
    prompt_feedback: _PromptFeedback | None = None
    usage_metadata: _UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    error: RpcStatus | None = None


_decode_reply = msgspec.json.Decoder(GenerateResponse).decode

_CONTENT_FILTER = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "LANGUAGE",
    }
)
_BAD_TOOL_CALL = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}
)


class AnswerReader:
    """Reads one provider's Gemini answers; tool calls it meets are remembered in ``calls``."""

    def __init__(self, provider: str, calls: CallMemory) -> None:
        self.provider = provider
        self.calls = calls

    def decode(self, body: bytes, what: str) -> GenerateResponse:
        """One ``GenerateContentResponse`` (or error payload); garbage is an UpstreamError."""
        reply = decode_as(_decode_reply, self.provider, what, body)
        if reply.error is not None:
            raise rpc_error(self.provider, reply.error.code, reply.error, {})
        return reply

    def response(self, body: bytes, upstream_model: str) -> ChatResponse:
        """A whole answer: one choice per candidate."""
        reply = self.decode(body, "response")
        if not reply.candidates and not block_reason(reply):
            raise malformed(self.provider, "response", "no candidates and no promptFeedback")
        choices = [self._choice(candidate) for candidate in reply.candidates]
        if not choices:
            # The prompt itself was blocked: an empty answer, filtered.
            message = ResponseMessage(content="")
            choices = [Choice(index=0, message=message, finish_reason="content_filter")]
        return ChatResponse(
            id=response_id(reply),
            created=int(time.time()),  # Google's answer carries no time: it was made just now
            model=reply.model_version or upstream_model,
            choices=choices,
            usage=usage_of(reply.usage_metadata),
        )

    def tool_call(self, part: WirePart, call: WireFunctionCall) -> ResponseToolCall:
        """Our tool call for a ``functionCall`` part, its signature remembered for the next turn."""
        call_id = call.id or new_call_id()
        signature = part.thought_signature
        self.calls.remember(call_id, signature, native_id=call.id is not None)
        extra = {"google": {"thought_signature": signature}} if signature else UNSET
        return ResponseToolCall(
            id=call_id,
            function=FunctionCall(call.name, _encode(call.args or {}).decode()),
            extra_content=extra,
        )

    def _choice(self, candidate: WireCandidate) -> Choice:
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[ResponseToolCall] = []
        for part in candidate.content.parts if candidate.content else ():
            if part.function_call is not None:
                calls.append(self.tool_call(part, part.function_call))
            elif part.text is not None:
                (thoughts if part.thought else texts).append(part.text)
        message = ResponseMessage(
            # An answer of only tool calls has no content (null), as OpenAI sends it.
            content="".join(texts) if texts or not calls else None,
            reasoning_content="".join(thoughts) if thoughts else UNSET,
            tool_calls=calls or UNSET,
        )
        return Choice(
            index=candidate.index,
            message=message,
            logprobs=logprobs_of(candidate),
            finish_reason=finish_reason(candidate, called=bool(calls)) or "stop",
        )


def response_id(reply: GenerateResponse) -> str:
    """OpenAI's ``id`` for an answer: Google's ``responseId`` when it sends one."""
    return "chatcmpl-" + (reply.response_id or secrets.token_hex(12))


def block_reason(reply: GenerateResponse) -> str | None:
    """Why the prompt was blocked (no candidates then), or None."""
    return reply.prompt_feedback.block_reason if reply.prompt_feedback else None


def finish_reason(candidate: WireCandidate, *, called: bool) -> str | None:
    """OpenAI's finish_reason for a candidate (None while it is still streaming)."""
    reason = candidate.finish_reason
    if reason is None:
        return None
    if reason == "STOP":
        return "tool_calls" if called else "stop"
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _CONTENT_FILTER:
        return "content_filter"
    if reason in _BAD_TOOL_CALL:
        # OpenAI has no word for it; the client sees a plain stop, the operator a log line.
        log.warning("gemini finished with %s: %s", reason, candidate.finish_message or "")
    return "stop"


def logprobs_of(candidate: WireCandidate) -> ChoiceLogprobs | None:
    """OpenAI's logprobs of the tokens in ``candidate`` (one event's own, when streaming); None
    when Gemini sent none (they were not asked for)."""
    result = candidate.logprobs_result
    if result is None:
        return None
    tops = result.top_candidates
    content = []
    for step, chosen in enumerate(result.chosen_candidates):
        alternatives = tops[step].candidates if step < len(tops) else []
        content.append(
            TokenLogprob(
                token=chosen.token,
                logprob=chosen.log_probability,
                bytes=utf8_bytes(chosen.token),
                top_logprobs=[
                    TopLogprob(top.token, top.log_probability, utf8_bytes(top.token))
                    for top in alternatives
                ],
            )
        )
    return ChoiceLogprobs(content=content)


def usage_of(meta: _UsageMetadata | None) -> Usage | None:
    """OpenAI usage: tool-use prompt counts as prompt, thoughts as completion (reference §2.7)."""
    if meta is None:
        return None
    prompt = meta.prompt_token_count + meta.tool_use_prompt_token_count
    completion = meta.candidates_token_count + meta.thoughts_token_count
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=meta.total_token_count or prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=meta.cached_content_token_count),
        completion_tokens_details=CompletionTokensDetails(
            reasoning_tokens=meta.thoughts_token_count
        ),
    )
