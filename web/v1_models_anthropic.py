"""``GET /v1/models`` in Anthropic's paged shape, for a client that speaks the Messages API.

Claude Code asks a custom base URL for ``/v1/models?limit=1000`` at start-up (with its
``anthropic-version``) to fill its model picker, and reads Anthropic's shape: model objects
(``type``, ``id``, ``display_name``, ``created_at``) in a page with ``has_more``, ``first_id``
and ``last_id``, walked with ``after_id`` / ``before_id``. The models are the same as the OpenAI
listing's, aliases first.
"""

from __future__ import annotations

import datetime
from urllib.parse import parse_qs

import msgspec

from proxy.chat import ModelCard
from proxy.errors import InvalidRequest, NotFound
from web.asgi import Scope
from web.v1_deps import V1Deps
from web.v1_models import list_models

__all__ = ["anthropic_models_body"]

_encode = msgspec.json.Encoder().encode
DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


class AnthropicModel(msgspec.Struct):
    """One model as Anthropic's API lists it."""

    id: str
    display_name: str
    created_at: str
    type: str = "model"


class AnthropicModelPage(msgspec.Struct):
    """One page of the list."""

    data: list[AnthropicModel]
    has_more: bool
    first_id: str | None
    last_id: str | None


def _model(card: ModelCard) -> AnthropicModel:
    created = datetime.datetime.fromtimestamp(card.created, tz=datetime.UTC)
    return AnthropicModel(
        id=card.id, display_name=card.id, created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ")
    )


def _limit(query: dict[str, list[str]]) -> int:
    values = query.get("limit")
    if not values:
        return DEFAULT_LIMIT
    try:
        limit = int(values[0])
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit: Input should be between 1 and {MAX_LIMIT}", param="limit")
    return limit


async def anthropic_models_body(deps: V1Deps, scope: Scope, model: str | None) -> bytes:
    """The page the query asks for, or one model (404 ``not_found_error`` when none has the
    id)."""
    models = [_model(card) for card in (await list_models(deps)).data]
    if model is not None:
        for found in models:
            if found.id == model:
                return _encode(found)
        raise NotFound(f"model: {model}", code="model_not_found")
    raw_query = scope.get("query_string", b"")
    query = parse_qs(raw_query.decode("latin-1") if isinstance(raw_query, bytes) else "")
    limit = _limit(query)
    ids = [found.id for found in models]
    start, end = 0, len(models)
    if after := query.get("after_id"):
        start = ids.index(after[0]) + 1 if after[0] in ids else len(ids)
    if before := query.get("before_id"):
        end = ids.index(before[0]) if before[0] in ids else 0
    if before and not after:
        # Walking backwards: the page that ends just before ``before_id``.
        start = max(0, end - limit)
    page = models[start:end][:limit]
    has_more = (start + len(page) < end) if not (before and not after) else start > 0
    return _encode(
        AnthropicModelPage(
            data=page,
            has_more=has_more,
            first_id=page[0].id if page else None,
            last_id=page[-1].id if page else None,
        )
    )
