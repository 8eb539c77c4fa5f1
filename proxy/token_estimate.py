"""How many tokens to reserve for a call when it is admitted, before anyone has counted them.

The reservation is the prompt's estimate plus the most the call may answer. Both only need to be
cheap and deterministic: the call is settled against its real usage when it ends, so an estimate
too high is given back and one too low is charged then.

- Prompt: a quarter of the request body's length in bytes (about four characters a token, with
  JSON's punctuation, tool schemas and all counted as text), except that inline data (data URLs of
  images, audio, files) counts as a fixed number of tokens per part instead of its length.
- Answer: the client's bound when it sets one (chat: ``max_completion_tokens`` or else
  ``max_tokens``, times ``n`` choices; Responses: ``max_output_tokens``; Messages: its required
  ``max_tokens``); otherwise
  ``limits.default_reserved_completion_tokens``, cut down to what the client's budget holds beside
  the prompt, so that a client with a small budget is not refused for a guess of ours (the real
  usage is charged afterwards all the same).
"""

from __future__ import annotations

from typing import Any

from proxy.chat import ChatRequest, content_parts
from proxy.client_request import ClientRequest
from proxy.messages import MessagesRequest, content_blocks
from proxy.responses import ResponsesRequest, input_parts

__all__ = [
    "IMAGE_TOKENS",
    "LOW_DETAIL_IMAGE_TOKENS",
    "answer_tokens_asked",
    "estimate_prompt_tokens",
    "tokens_to_reserve",
]

# OpenAI's count for a 1024 x 1024 image at high detail (85 + 4 tiles x 170), and for low detail.
IMAGE_TOKENS = 765
LOW_DETAIL_IMAGE_TOKENS = 85


def estimate_prompt_tokens(request: ClientRequest, body_bytes: int) -> int:
    """The prompt's tokens, estimated from the body's length (see the module docstring)."""
    inline_bytes, part_tokens = _inline_parts(request)
    return -(-max(0, body_bytes - inline_bytes) // 4) + part_tokens


def tokens_to_reserve(
    request: ClientRequest, body_bytes: int, *, default_completion: int, tokens_per_minute: int
) -> int:
    """The tokens a call reserves from a tokens-per-minute budget of ``tokens_per_minute``."""
    prompt = estimate_prompt_tokens(request, body_bytes)
    asked = answer_tokens_asked(request)
    if asked is not None:
        return prompt + asked
    # Our guess, not the client's word: never so large that the call could not fit at all.
    return prompt + min(default_completion, max(0, tokens_per_minute - prompt))


def answer_tokens_asked(request: ClientRequest) -> int | None:
    """The most the call may answer, by the client's own bound (times ``n`` choices for chat);
    None when it sets none."""
    asked = request.max_answer_tokens
    if asked is None:
        return None
    return asked * (request.view.n or 1 if isinstance(request, ChatRequest) else 1)


def _inline_parts(request: ClientRequest) -> tuple[int, int]:
    """Bytes of the body taken by images, audio and files, and the tokens counted for them."""
    if isinstance(request, ResponsesRequest):
        return _responses_inline_parts(request)
    if isinstance(request, MessagesRequest):
        return _messages_inline_parts(request)
    if not isinstance(request, ChatRequest):
        return 0, 0
    inline_bytes = tokens = 0
    for _, _, part in content_parts(request.view):
        kind = part.get("type")
        if kind == "image_url":
            # The URL's length, whether inline data or an address: an image is its tokens.
            image = _object(part.get("image_url"))
            inline_bytes += _length(image.get("url"))
            low = image.get("detail") == "low"
            tokens += LOW_DETAIL_IMAGE_TOKENS if low else IMAGE_TOKENS
        elif kind == "input_audio":
            inline_bytes += _length(_object(part.get("input_audio")).get("data"))
            tokens += IMAGE_TOKENS
        elif kind == "file":
            data = _object(part.get("file")).get("file_data")
            if data is not None:
                inline_bytes += _length(data)
                tokens += IMAGE_TOKENS
    return inline_bytes, tokens


def _responses_inline_parts(request: ResponsesRequest) -> tuple[int, int]:
    """As :func:`_inline_parts`, for the Responses API's ``input_image`` and ``input_file``."""
    inline_bytes = tokens = 0
    for part in input_parts(request.view):
        kind = part.get("type")
        if kind == "input_image":
            inline_bytes += _length(part.get("image_url"))
            low = part.get("detail") == "low"
            tokens += LOW_DETAIL_IMAGE_TOKENS if low else IMAGE_TOKENS
        elif kind == "input_file" and part.get("file_data") is not None:
            inline_bytes += _length(part.get("file_data"))
            tokens += IMAGE_TOKENS
    return inline_bytes, tokens


def _messages_inline_parts(request: MessagesRequest) -> tuple[int, int]:
    """As :func:`_inline_parts`, for the Messages API's ``image`` and ``document`` blocks with
    base64 sources (a URL source is counted by its length, as text)."""
    inline_bytes = tokens = 0
    for block in content_blocks(request.view):
        if block.get("type") not in ("image", "document"):
            continue
        source = _object(block.get("source"))
        if source.get("type") == "base64":
            inline_bytes += _length(source.get("data"))
            tokens += IMAGE_TOKENS
    return inline_bytes, tokens


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _length(value: object) -> int:
    return len(value) if isinstance(value, str) else 0
