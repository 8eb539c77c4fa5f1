"""The fake Gemini's embeddings: `models/{model}:embedContent` and `:batchEmbedContents` (v1beta).

:class:`FakeGemini` (``gemini_upstream.py``) routes both methods here after the key check; a
request it would refuse gets Google's 400 INVALID_ARGUMENT with the message :func:`embed_problem`
returns, an unknown model (or one that does not embed) a 404 NOT_FOUND. Queued behaviours
(``RpcError``, ``Garbage``, ``CutStream``) apply as for generate calls.

As the Gemini API does: the answer carries no token counts (``embedContent`` and
``batchEmbedContents`` return only ``values``); a text past the model's 2,048-token input is
truncated silently; a shortened gemini-embedding-001 vector (``outputDimensionality`` below 3,072)
is the native one cut short and *not* re-normalised (Google's docs tell callers to normalise it).
Vectors depend on the model, the text and the task type (:func:`gemini_embedding_of`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .vectors import gaussians, normalised

__all__ = [
    "EMBED_PATH",
    "GEMINI_EMBEDDING_MODELS",
    "MAX_BATCH_REQUESTS",
    "MAX_INPUT_TOKENS",
    "TASK_TYPES",
    "EmbedCall",
    "embed_answer",
    "embed_call",
    "gemini_embedding_of",
    "not_embeddable",
]

EMBED_PATH = re.compile(
    r"^/v1beta/models/(?P<model>[^/:]+):(?P<method>embedContent|batchEmbedContents)$"
)
# name: (native dimensions, smallest outputDimensionality)
GEMINI_EMBEDDING_MODELS: dict[str, tuple[int, int]] = {
    "gemini-embedding-001": (3072, 128),
    "text-embedding-004": (768, 1),
}
MAX_BATCH_REQUESTS = 100
MAX_INPUT_TOKENS = 2048
TASK_TYPES = frozenset(
    {
        "TASK_TYPE_UNSPECIFIED",
        "RETRIEVAL_QUERY",
        "RETRIEVAL_DOCUMENT",
        "SEMANTIC_SIMILARITY",
        "CLASSIFICATION",
        "CLUSTERING",
        "QUESTION_ANSWERING",
        "FACT_VERIFICATION",
        "CODE_RETRIEVAL_QUERY",
    }
)
_REQUEST_FIELDS = {
    "model",
    "content",
    "taskType",
    "task_type",
    "title",
    "outputDimensionality",
    "output_dimensionality",
}


@dataclass(frozen=True, slots=True)
class EmbedCall:
    """One validated embedContent or batchEmbedContents request."""

    model: str
    batch: bool
    texts: tuple[str, ...]
    task_types: tuple[str | None, ...]
    dimensions: tuple[int | None, ...]


def gemini_embedding_of(
    text: str, model: str, dimensions: int | None = None, task_type: str | None = None
) -> list[float]:
    """The fake's embedding of one text: a unit vector seeded by the model, the task type and the
    first 2,048 words; with `dimensions`, its first components (not re-normalised, as Gemini)."""
    native = GEMINI_EMBEDDING_MODELS[model][0]
    kept = " ".join(text.split()[:MAX_INPUT_TOKENS]) if _count(text) > MAX_INPUT_TOKENS else text
    task = task_type or "TASK_TYPE_UNSPECIFIED"
    vector = normalised(gaussians(f"{model}\x00{task}\x00{kept}", native))
    return vector[: dimensions or native]


def not_embeddable(model: str, method: str) -> str:
    """The message of Google's 404 for a model it does not know or that does not embed."""
    return (
        f"models/{model} is not found for API version v1beta, or is not supported for {method}. "
        "Call ListModels to see the list of available models and their supported methods."
    )


def embed_call(body: Any, model: str, method: str) -> EmbedCall | str:
    """Validate an embed request's body as Google does: the call, or the message of its 400."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received." if body is not None else "Request contains no body."
    if method == "embedContent":
        problem = _request_problem(body, model, "EmbedContentRequest", model_required=False)
        if problem is not None:
            return problem
        requests: list[Any] = [body]
    else:
        for name in body:
            if name != "requests":
                return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
        listed = body.get("requests")
        if not isinstance(listed, list) or not listed:
            return "* BatchEmbedContentsRequest.requests: requests is not specified"
        requests = listed
        if len(requests) > MAX_BATCH_REQUESTS:
            return (
                "* BatchEmbedContentsRequest.requests: at most "
                f"{MAX_BATCH_REQUESTS} requests can be in one batch"
            )
        for i, request in enumerate(requests):
            where = f"BatchEmbedContentsRequest.requests[{i}]"
            if not isinstance(request, dict):
                return f"Invalid JSON payload received. Expected an object at 'requests[{i}]'."
            problem = _request_problem(request, model, where, model_required=True)
            if problem is not None:
                return problem
    return EmbedCall(
        model=model,
        batch=method == "batchEmbedContents",
        texts=tuple(_text(r["content"]) for r in requests),
        task_types=tuple(r.get("taskType", r.get("task_type")) for r in requests),
        dimensions=tuple(
            r.get("outputDimensionality", r.get("output_dimensionality")) for r in requests
        ),
    )


def embed_answer(call: EmbedCall) -> dict[str, Any]:
    """The answer Google sends: ``{"embedding": {"values"}}`` or ``{"embeddings": [...]}``."""
    embeddings = [
        {"values": gemini_embedding_of(text, call.model, dimensions, task)}
        for text, task, dimensions in zip(call.texts, call.task_types, call.dimensions, strict=True)
    ]
    return {"embeddings": embeddings} if call.batch else {"embedding": embeddings[0]}


def _request_problem(
    request: dict[str, Any], model: str, where: str, *, model_required: bool
) -> str | None:
    """The message of Google's 400 for one embed request it would refuse, or None."""
    for name in request:
        if name not in _REQUEST_FIELDS:
            return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
    named = request.get("model")
    if named is None and model_required:
        return f"* {where}.model: model is not specified"
    if named is not None and named != f"models/{model}":
        return (
            f"* {where}.model: Model names must be identical in all requests of a batch: "
            f"{named!r} is not 'models/{model}'."
        )
    content = request.get("content")
    if not isinstance(content, dict):
        return f"* {where}.content: content is not specified"
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        return f"* {where}.content.parts: contents.parts must not be empty."
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            return f"* {where}.content.parts[{j}]: only text parts can be embedded"
    if not _text(content).strip():
        return "The text content is empty."
    task = request.get("taskType", request.get("task_type"))
    if task is not None and task not in TASK_TYPES:
        return (
            f"Invalid value at 'task_type' (type.googleapis.com/google.ai.generativelanguage."
            f'v1beta.TaskType), "{task}"'
        )
    if model not in GEMINI_EMBEDDING_MODELS:
        return None  # the caller answers 404 for the model; the body itself is sound
    dimensions = request.get("outputDimensionality", request.get("output_dimensionality"))
    native, smallest = GEMINI_EMBEDDING_MODELS[model]
    if dimensions is not None and (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not smallest <= dimensions <= native
    ):
        return (
            f"* {where}.output_dimensionality: must be an integer in the range "
            f"[{smallest}, {native}], got {dimensions!r}"
        )
    return None


def _text(content: dict[str, Any]) -> str:
    """The text of a content: its parts' texts joined by single spaces."""
    parts: Sequence[dict[str, Any]] = content["parts"]
    return " ".join(part["text"] for part in parts)


def _count(text: str) -> int:
    """Tokens of a text as the fakes count them: whitespace-separated words."""
    return len(text.split())
