"""The fake OpenAI's Embeddings API: `POST /v1/embeddings`, validated and answered as OpenAI does.

:class:`FakeOpenAI` (``openai_upstream.py``) routes the path here after the key check and answers
the behaviour queued with ``fake.enqueue(...)`` (errors, stalls, garbage, as for chat). Vectors are
deterministic (:func:`embedding_of`), so a test can compute what the fake sends; every component
is a float32 value, so the float answer and the base64 one decode to the same Python floats.

Usage rule: a string costs its whitespace-separated words (at least 1: no non-empty input is
free), a token array costs its length; ``prompt_tokens == total_tokens`` is their sum.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .asgi_server import ResponseWriter
from .openai_wire import BAD_JSON_MESSAGE, ErrorReply, encode, json_headers, model_not_found
from .text import word_count
from .vectors import gaussians, normalised

__all__ = [
    "EMBEDDING_MODELS",
    "EMBEDDING_MODEL_LIST",
    "MAX_INPUTS",
    "MAX_REQUEST_TOKENS",
    "MAX_TOKENS_PER_INPUT",
    "NOT_A_CHAT_MODEL",
    "EmbeddingsCall",
    "answer_model",
    "embedding_of",
    "embeddings_body",
    "embeddings_call",
    "float32_base64",
    "send_embeddings",
    "tokens_of",
]

# Native dimensions of each embedding model the fake serves.
EMBEDDING_MODELS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
# (name, created) as GET /v1/models lists them.
EMBEDDING_MODEL_LIST: tuple[tuple[str, int], ...] = (
    ("text-embedding-3-small", 1705948997),
    ("text-embedding-3-large", 1705953180),
    ("text-embedding-ada-002", 1671217299),
)
_SHORTENABLE = frozenset({"text-embedding-3-small", "text-embedding-3-large"})
# OpenAI answers ada-002 calls with this model name in the body (not the one asked for).
_ANSWER_MODEL = {"text-embedding-ada-002": "text-embedding-ada-002-v2"}
MAX_INPUTS = 2048
MAX_TOKENS_PER_INPUT = 8192
MAX_REQUEST_TOKENS = 300_000
NOT_A_CHAT_MODEL = ErrorReply(
    404,
    message=(
        "This is not a chat model and thus not supported in the v1/chat/completions endpoint. "
        "Did you mean to use v1/completions?"
    ),
    type="invalid_request_error",
    param="model",
)
_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
_INVALID_INPUT_MESSAGE = (
    "'$.input' is invalid. Please check the API reference: "
    "https://platform.openai.com/docs/api-reference."
)

Item = str | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class EmbeddingsCall:
    """One validated embeddings request."""

    model: str
    items: tuple[Item, ...]
    dimensions: int
    base64: bool
    started_at: float


def embedding_of(
    item: str | Sequence[int], model: str, dimensions: int | None = None
) -> list[float]:
    """The fake's embedding of one input: a unit vector seeded by the model and the text (or token
    ids), float32-rounded; with `dimensions`, the native vector truncated and re-normalised, as
    OpenAI shortens text-embedding-3 vectors."""
    native = EMBEDDING_MODELS[model]
    text = item if isinstance(item, str) else "tokens:" + ",".join(map(str, item))
    return normalised(gaussians(model + "\x00" + text, native)[: dimensions or native])


def tokens_of(item: str | Sequence[int]) -> int:
    """The fake's token count of one input (the module's usage rule)."""
    return max(1, word_count(item)) if isinstance(item, str) else len(item)


def float32_base64(vector: Sequence[float]) -> str:
    """A vector as OpenAI's base64 encoding sends it: little-endian float32 bytes, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def answer_model(model: str) -> str:
    """The `model` OpenAI names in the answer body for a call to `model`."""
    return _ANSWER_MODEL.get(model, model)


def embeddings_call(
    body: Any, started_at: float, chat_models: Sequence[str]
) -> EmbeddingsCall | ErrorReply:
    """Validate a `POST /v1/embeddings` body as OpenAI does: the call, or the error it answers."""
    if not isinstance(body, dict):
        return ErrorReply(400, BAD_JSON_MESSAGE, "invalid_request_error")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        message = f"Unrecognized request argument supplied: {', '.join(unknown)}"
        return ErrorReply(400, message, "invalid_request_error")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return ErrorReply(400, "you must provide a model parameter", "invalid_request_error")
    if "input" not in body or body["input"] is None:
        return _invalid(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    items = _items(body["input"])
    if items is None:
        return ErrorReply(400, _INVALID_INPUT_MESSAGE, "invalid_request_error")
    if len(items) > MAX_INPUTS:
        return _invalid(
            f"Invalid 'input': array too long. Expected an array with maximum length {MAX_INPUTS}, "
            f"but got an array with length {len(items)} instead.",
            "input",
            "array_above_max_length",
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64", None):
        return _invalid(
            f"Invalid value: {_quoted(encoding)}. Supported values are: 'float' and 'base64'.",
            "encoding_format",
            "invalid_value",
        )
    if model not in EMBEDDING_MODELS:
        if model in chat_models:
            message = "You are not allowed to generate embeddings from this model"
            return ErrorReply(400, message, "invalid_request_error")
        return model_not_found(model)
    dimensions = _dimensions(body.get("dimensions"), model)
    if isinstance(dimensions, ErrorReply):
        return dimensions
    tokens = [tokens_of(item) for item in items]
    if max(tokens) > MAX_TOKENS_PER_INPUT:
        over = max(tokens)
        return ErrorReply(
            400,
            f"This model's maximum context length is {MAX_TOKENS_PER_INPUT} tokens, however you "
            f"requested {over} tokens ({over} in your prompt; 0 for the completion). Please "
            "reduce your prompt; or completion length.",
            "invalid_request_error",
        )
    if sum(tokens) > MAX_REQUEST_TOKENS:
        return _invalid(
            f"Requested {sum(tokens)} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
            "input",
            "max_tokens_per_request",
        )
    return EmbeddingsCall(model, items, dimensions, encoding == "base64", started_at)


def embeddings_body(call: EmbeddingsCall) -> dict[str, Any]:
    """The answer OpenAI sends for a valid call: a list of embeddings, model and usage."""
    data = []
    for index, item in enumerate(call.items):
        vector = embedding_of(item, call.model, call.dimensions)
        embedding: list[float] | str = float32_base64(vector) if call.base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(tokens_of(item) for item in call.items)
    return {
        "object": "list",
        "data": data,
        "model": answer_model(call.model),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


async def send_embeddings(
    reply: ResponseWriter, call: EmbeddingsCall, *, cut: bool = False
) -> None:
    """Send the answer; with `cut`, promise the whole body by content-length but send half (the
    caller then drops the connection)."""
    body = encode(embeddings_body(call))
    headers = {**json_headers(call.started_at), "openai-model": answer_model(call.model)}
    if not cut:
        await reply.full(200, headers, body)
        return
    reply.finished = True  # the server, not the client, ends this one
    await reply.start(200, {**headers, "content-length": str(len(body))})
    await reply.write(body[: len(body) // 2])


def _items(value: Any) -> tuple[Item, ...] | None:
    """The inputs of `input` (a string, strings, a token array, token arrays), or None if it is
    not one of those or holds an empty one."""
    if isinstance(value, str):
        return (value,) if value else None
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(x, str) and x for x in value):
        return tuple(value)
    if all(_is_token(x) for x in value):
        return (tuple(value),)
    if all(isinstance(x, list) and x and all(_is_token(t) for t in x) for x in value):
        return tuple(tuple(x) for x in value)
    return None


def _is_token(value: Any) -> bool:
    """Whether a JSON value is a token id (a non-negative integer, not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _dimensions(value: Any, model: str) -> int | ErrorReply:
    """The dimensions to answer with: the model's own, or a valid `dimensions`."""
    native = EMBEDDING_MODELS[model]
    if value is None:
        return native
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "a string" if isinstance(value, str) else "a value"
        return _invalid(
            f"Invalid type for 'dimensions': expected an integer, but got {kind} instead.",
            "dimensions",
            "invalid_type",
        )
    if model not in _SHORTENABLE:
        return ErrorReply(
            400, "This model does not support specifying dimensions.", "invalid_request_error"
        )
    if value < 1:
        return _invalid(
            f"Invalid 'dimensions': integer below minimum value. Expected a value >= 1, but got "
            f"{value} instead.",
            "dimensions",
            "integer_below_min_value",
        )
    if value > native:
        return _invalid(
            f"Invalid 'dimensions': integer above maximum value. Expected a value <= {native}, "
            f"but got {value} instead.",
            "dimensions",
            "integer_above_max_value",
        )
    return value


def _invalid(message: str, param: str, code: str) -> ErrorReply:
    """A 400 invalid_request_error naming the parameter."""
    return ErrorReply(400, message=message, type="invalid_request_error", code=code, param=param)


def _quoted(value: Any) -> str:
    """A value quoted the way OpenAI's messages quote it ('x' for strings)."""
    return f"'{value}'" if isinstance(value, str) else str(value)
