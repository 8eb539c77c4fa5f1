"""A chat answer as a Responses API response object, for providers that speak only chat.

Per responses-api.md §5 and §8: the request's settings echoed back; output items in the order
OpenAI gives them (a ``reasoning`` item carrying the provider's reasoning as a summary, a
``message`` item with an ``output_text`` or ``refusal`` part, one ``function_call`` item per tool
call); ``status`` ``completed``, or ``incomplete`` with the reason for a length or content-filter
stop. The item builders here are shared with the event stream (:mod:`proxy.responses_events`),
so a streamed answer ends in the same object as the same answer not streamed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from proxy.chat import ChatResponse, Usage

#: Finish reasons that stop an answer short, and the ``incomplete_details.reason`` of each.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_item_id(prefix: str) -> str:
    """A fresh item id: ``prefix`` (``msg``, ``rs``, ``fc``), ``_``, 48 hex digits (as OpenAI)."""
    return f"{prefix}_{secrets.token_hex(24)}"


def unique_call_id(call_id: str | None, taken: set[str]) -> str:
    """``call_id``, or a fresh ``call_…`` when the upstream gave none or repeated one in this
    answer: a client answers each call by its id, and the SDK refuses two items with one."""
    if not call_id or call_id in taken:
        call_id = new_item_id("call")
    taken.add(call_id)
    return call_id


def response_usage(usage: Usage | None) -> dict[str, Any] | None:
    """Chat usage as the Responses ``usage``: all five counts, the details objects always there.

    ``cache_write_tokens`` is 0: no translated provider reports writes to its cache (the field is
    required by the SDK's types).
    """
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def outcome(finish_reason: str | None) -> tuple[str, dict[str, Any] | None]:
    """The response's ``status`` and ``incomplete_details`` for a chat finish reason."""
    reason = INCOMPLETE_REASONS.get(finish_reason or "")
    if reason is None:
        return "completed", None
    return "incomplete", {"reason": reason}


def output_logprobs(logprobs: Any) -> list[dict[str, Any]]:
    """A chat choice's ``logprobs`` (its ``content`` tokens) as an output_text part's list.

    An entry an upstream garbled (no token, no number) is left out: logprobs are a diagnostic
    beside the answer, never a reason to lose it.
    """
    found = msgspec.to_builtins(logprobs) if logprobs is not None else None
    tokens = found.get("content") if isinstance(found, dict) else None
    if not isinstance(tokens, list):
        return []
    converted = []
    for token in tokens:
        entry = _token(token)
        if entry is not None:
            alternatives = token.get("top_logprobs")
            tops = [_token(top) for top in alternatives] if isinstance(alternatives, list) else []
            entry["top_logprobs"] = [top for top in tops if top is not None]
            converted.append(entry)
    return converted


def _token(token: Any) -> dict[str, Any] | None:
    """One token's ``token``, ``logprob`` and ``bytes`` (its UTF-8 when the upstream gave none)."""
    if not isinstance(token, dict):
        return None
    text, logprob = token.get("token"), token.get("logprob")
    if not isinstance(text, str) or not isinstance(logprob, int | float):
        return None
    found = token.get("bytes")
    if isinstance(found, list):
        return {"token": text, "logprob": logprob, "bytes": found}
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8", "surrogatepass"))}


def output_annotations(annotations: list[Any]) -> list[Any]:
    """A chat message's annotations in the Responses form: a url_citation flat, not nested."""
    converted = []
    for annotation in msgspec.to_builtins(annotations):
        if isinstance(annotation, dict) and isinstance(annotation.get("url_citation"), dict):
            annotation = {"type": "url_citation", **annotation["url_citation"]}
        converted.append(annotation)
    return converted


def output_text_part(
    text: str, annotations: list[Any] | None = None, logprobs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {
        "type": "output_text",
        "text": text,
        "annotations": annotations or [],
        "logprobs": logprobs or [],
    }


def refusal_part(refusal: str) -> dict[str, Any]:
    """A ``refusal`` content part."""
    return {"type": "refusal", "refusal": refusal}


def message_item(item_id: str, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """An assistant ``message`` output item."""
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def reasoning_item(item_id: str, summary: list[str], status: str | None = None) -> dict[str, Any]:
    """A ``reasoning`` output item carrying the provider's reasoning as summary text; a
    ``status`` only when cut short (OpenAI leaves it out of a finished one)."""
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": text} for text in summary],
    }
    if status is not None and status != "completed":
        item["status"] = status
    return item


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> dict[str, Any]:
    """A ``function_call`` output item: ``call_id`` is the model's id for the call."""
    return {
        "id": item_id,
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def build_response(
    body: Mapping[str, Any],
    *,
    response_id: str,
    created_at: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    incomplete_details: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A response object with the request's settings echoed back (§5)."""
    text = _object(body.get("text"))
    reasoning = _object(body.get("reasoning"))
    echoed_text: dict[str, Any] = {"format": text.get("format") or {"type": "text"}}
    if text.get("verbosity") is not None:
        echoed_text["verbosity"] = text["verbosity"]
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": body.get("store") is not False,
        "temperature": body.get("temperature"),
        "text": echoed_text,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
        "usage": usage,
        "completed_at": int(time.time()) if status == "completed" else None,
    }


def _object(value: object) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (what the client left out)."""
    return value if isinstance(value, dict) else {}


def response_object(
    answer: ChatResponse,
    body: Mapping[str, Any],
    *,
    response_id: str,
    created_at: int,
    model: str,
) -> dict[str, Any]:
    """The whole Responses response for a chat answer and the Responses body that asked for it."""
    output: list[dict[str, Any]] = []
    finish_reason = None
    if answer.choices:
        choice = answer.choices[0]
        finish_reason = choice.finish_reason
        message = choice.message
        if isinstance(message.reasoning_content, str) and message.reasoning_content:
            output.append(reasoning_item(new_item_id("rs"), [message.reasoning_content]))
        parts = []
        if message.content:
            parts.append(
                output_text_part(
                    message.content,
                    output_annotations(message.annotations),
                    output_logprobs(choice.logprobs),
                )
            )
        if message.refusal:
            parts.append(refusal_part(message.refusal))
        if parts:
            output.append(message_item(new_item_id("msg"), parts, "completed"))
        if isinstance(message.tool_calls, list):
            taken: set[str] = set()
            output.extend(
                function_call_item(
                    new_item_id("fc"),
                    unique_call_id(call.id, taken),
                    call.function.name,
                    call.function.arguments,
                    "completed",
                )
                for call in message.tool_calls
            )
    if not output:
        # An empty answer is still a message, with empty text (as OpenAI gives it).
        output.append(message_item(new_item_id("msg"), [output_text_part("")], "completed"))
    status, details = outcome(finish_reason)
    if status == "incomplete":
        mark_last_items_incomplete(output)
    return build_response(
        body,
        response_id=response_id,
        created_at=created_at,
        model=model,
        status=status,
        output=output,
        usage=response_usage(answer.usage),
        incomplete_details=details,
    )


def mark_last_items_incomplete(output: list[dict[str, Any]]) -> None:
    """Mark the items the answer was cut in (the last item, or the last run of function calls:
    a stream keeps calls open together) as incomplete, as OpenAI marks a message cut short."""
    last_kind = output[-1]["type"]
    for item in reversed(output):
        if item["type"] != last_kind:
            break
        item["status"] = "incomplete"
        if last_kind != "function_call":
            break
