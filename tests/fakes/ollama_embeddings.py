"""The fake Ollama's embeddings: `POST /api/embed` (and the legacy `POST /api/embeddings`).

:class:`FakeOllama` (``ollama_upstream.py``) routes both paths here after its key check; queued
behaviours (``ErrorReply``, ``Garbage``, ``Stall``, ``CutStream``) apply as for chat. As Ollama
does (server/routes.go, EmbedHandler):

- ``input`` is a string or a list of strings; an empty string or list loads the model and
  answers 200 with ``"embeddings": []``; any other type is a 400 ``invalid input type``;
- every vector is L2-normalised; ``dimensions`` below the model's length cuts the vector and
  normalises it again, a larger one (or 0) is ignored;
- an input longer than the model's context (whitespace words here) is cut to it unless
  ``truncate`` is false, which makes it a 400;
- the answer is ``{"model", "embeddings", "total_duration", "load_duration",
  "prompt_eval_count"}``, the count being every input's tokens (words) after truncation.

The legacy ``/api/embeddings`` takes one ``prompt`` and answers ``{"embedding": [...]}``, not
normalised (as Ollama's old endpoint). Generative models embed too (Ollama pools their states).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .vectors import float32, gaussians, normalised

__all__ = [
    "CONTEXT_LENGTHS",
    "EMBEDDING_LENGTHS",
    "EmbedCall",
    "embed_answer",
    "embed_call",
    "legacy_answer",
    "not_found_message",
    "ollama_embedding_of",
]

# Embedding length and context window of each pulled model, by its full name.
EMBEDDING_LENGTHS: dict[str, int] = {
    "nomic-embed-text:latest": 768,
    "mxbai-embed-large:latest": 1024,
    "llama3.2:latest": 3072,
    "qwen3:8b": 4096,
}
CONTEXT_LENGTHS: dict[str, int] = {
    "nomic-embed-text:latest": 2048,
    "mxbai-embed-large:latest": 512,
    "llama3.2:latest": 4096,
    "qwen3:8b": 4096,
}


@dataclass(frozen=True, slots=True)
class EmbedCall:
    """One validated `/api/embed` request; `name` is the pulled model it resolved to."""

    model: str
    name: str
    texts: tuple[str, ...]
    dimensions: int
    started_ns: int = field(default_factory=time.perf_counter_ns)


def not_found_message(model: str) -> str:
    """Ollama's 404 message for a model that has not been pulled."""
    return f'model "{model}" not found, try pulling it first'


def embed_answer(
    path: str, raw: bytes, body: Any, resolve: Callable[[str], str | None]
) -> dict[str, Any] | tuple[int, str]:
    """Ollama's answer to `/api/embed` or the legacy `/api/embeddings`: the body, or the status
    and message of its error; `resolve` gives a pulled model's full name (None if not pulled)."""
    if not raw:
        return 400, "missing request body"
    if not isinstance(body, dict):
        return 400, "invalid character looking for beginning of value"
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return 400, "model is required"
    name = resolve(model)
    if name is None:
        return 404, not_found_message(model)
    if path != "/api/embed":
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            return 400, "json: cannot unmarshal into Go struct field of type string"
        return legacy_answer(prompt, name)
    call = embed_call(body, name)
    return (400, call) if isinstance(call, str) else _answer(call)


def ollama_embedding_of(text: str, name: str, dimensions: int = 0) -> list[float]:
    """The fake's `/api/embed` vector for one text of a pulled model (its full name, e.g.
    "nomic-embed-text:latest"): normalised, and with `dimensions` below the model's length cut to
    them and normalised again. Texts past the context are embedded as cut (see `embed_call`)."""
    raw = gaussians(f"ollama\x00{name}\x00{_kept(text, name)}", EMBEDDING_LENGTHS[name])
    vector = normalised(raw)
    if 0 < dimensions < len(vector):
        vector = normalised(vector[:dimensions])
    return vector


def embed_call(body: dict[str, Any], name: str) -> EmbedCall | str:
    """Validate an `/api/embed` body for the pulled model `name`: the call, or the 400 message."""
    value = body.get("input")
    if isinstance(value, str):
        texts: tuple[str, ...] = (value,) if value else ()
    elif isinstance(value, list) and all(isinstance(x, str) for x in value):
        texts = tuple(value)
    elif value is None:
        texts = ()
    else:
        return "invalid input type"
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        return "json: cannot unmarshal into Go struct field EmbedRequest.truncate of type bool"
    dimensions = body.get("dimensions", 0)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int):
        return "json: cannot unmarshal into Go struct field EmbedRequest.dimensions of type int"
    if not truncate and any(_count(t) > CONTEXT_LENGTHS[name] for t in texts):
        return "input exceeds maximum context length"
    return EmbedCall(str(body["model"]), name, texts, dimensions)


def _answer(call: EmbedCall) -> dict[str, Any]:
    """Ollama's `/api/embed` answer; durations in nanoseconds."""
    total = max(time.perf_counter_ns() - call.started_ns, 1_000)
    return {
        "model": call.model,
        "embeddings": [ollama_embedding_of(t, call.name, call.dimensions) for t in call.texts],
        "total_duration": total,
        "load_duration": total // 10,
        "prompt_eval_count": sum(_count(_kept(t, call.name)) for t in call.texts),
    }


def legacy_answer(prompt: str, name: str) -> dict[str, Any]:
    """The legacy answer: one vector, not normalised; an empty prompt gives an empty one."""
    if not prompt:
        return {"embedding": []}
    return {
        "embedding": float32(
            gaussians(f"ollama\x00{name}\x00{_kept(prompt, name)}", EMBEDDING_LENGTHS[name])
        )
    }


def _kept(text: str, name: str) -> str:
    """The part of a text the model sees: its first context-length words if it is longer."""
    words = text.split()
    limit = CONTEXT_LENGTHS[name]
    return " ".join(words[:limit]) if len(words) > limit else text


def _count(text: str) -> int:
    """Tokens of a text as the fakes count them: whitespace-separated words."""
    return len(text.split())
