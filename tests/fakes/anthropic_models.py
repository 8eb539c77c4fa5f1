"""The fake Anthropic's models: the catalogue it serves and the pages of GET /v1/models."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

__all__ = ["MODELS", "ModelInfo", "models_page"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model the fake serves (its alias is the id without the date suffix)."""

    id: str
    display_name: str
    created_at: str  # RFC 3339
    max_tokens: int = 64000
    max_input_tokens: int = 200000
    exclusive_sampling: bool = True  # Claude 4.5+: temperature and top_p not both

    @property
    def alias(self) -> str:
        """The undated alias, e.g. `claude-sonnet-4-5` for `claude-sonnet-4-5-20250929`."""
        return re.sub(r"-\d{8}$", "", self.id)

    def as_json(self) -> dict[str, Any]:
        """The model object of GET /v1/models."""
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at,
            "max_input_tokens": self.max_input_tokens,
            "max_tokens": self.max_tokens,
            "lifecycle": "active",
        }


MODELS: tuple[ModelInfo, ...] = (
    ModelInfo("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-24T00:00:00Z"),
    ModelInfo("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
    ModelInfo("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ModelInfo("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z", 32000),
    ModelInfo(
        "claude-sonnet-4-20250514",
        "Claude Sonnet 4",
        "2025-05-22T00:00:00Z",
        exclusive_sampling=False,
    ),
    ModelInfo(
        "claude-3-5-haiku-20241022",
        "Claude Haiku 3.5",
        "2024-10-22T00:00:00Z",
        8192,
        exclusive_sampling=False,
    ),
)


def models_page(models: list[ModelInfo], query: str) -> dict[str, Any] | str:
    """One page of GET /v1/models (`models` newest first) for this query string, with
    Anthropic's cursors; or the message of the 400 the query earns."""
    params = {name: values[-1] for name, values in parse_qs(query).items()}
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        return "limit: Input should be a valid integer"
    if not 1 <= limit <= 1000:
        return "limit: Input should be greater than or equal to 1 and at most 1000"
    ids = [m.id for m in models]
    after, before = params.get("after_id"), params.get("before_id")
    if after is not None and before is not None:
        return "Cannot specify both after_id and before_id"
    cursor = after if after is not None else before
    if cursor is not None and cursor not in ids:
        name = "after_id" if after is not None else "before_id"
        return f"{name}: unknown model id {cursor!r}"
    if after is not None:
        start = ids.index(after) + 1
        page, has_more = models[start : start + limit], start + limit < len(ids)
    elif before is not None:
        end = ids.index(before)
        start = max(0, end - limit)
        page, has_more = models[start:end], start > 0
    else:
        page, has_more = models[:limit], limit < len(ids)
    return {
        "data": [m.as_json() for m in page],
        "has_more": has_more,
        "first_id": page[0].id if page else None,
        "last_id": page[-1].id if page else None,
    }
