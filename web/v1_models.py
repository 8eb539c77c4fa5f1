"""``GET /v1/models`` and ``GET /v1/models/{id}``: aliases plus each enabled provider's models."""

from __future__ import annotations

import msgspec
import trio

from proxy.chat import ModelCard, ModelList
from proxy.errors import GatewayError
from proxy.routing import Route, Router
from web.asgi import Scope
from web.auth import Caller, request_key
from web.v1_deps import V1Deps

_encode = msgspec.json.Encoder().encode


def authenticate(deps: V1Deps, scope: Scope) -> Caller:
    """The caller of a request, or 401."""
    return deps.auth.authenticate(request_key(scope))


def _routable_id(router: Router, provider: str, model: str) -> str:
    """The name that routes back to ``provider``: bare when it does, else ``provider/model``."""
    try:
        route = router.route_of(model)  # switched-off models are filtered apart
    except GatewayError:
        return f"{provider}/{model}"
    return model if route.provider == provider and route.alias is None else f"{provider}/{model}"


async def list_models(deps: V1Deps) -> ModelList:
    """Aliases first, then every provider's models, fetched concurrently; what is switched off
    (a provider or a model, from the dashboard) is left out.

    ``created`` is the upstream's own value where its listing has one (OpenAI, xAI, Ollama's
    ``modified_at``); an alias takes its target's. Where none is known (Gemini, DeepSeek, the
    static lists) it is the gateway's start: a real date that stays put for as long as the
    process runs, unlike ``0``, which clients show as 1970 and sort last.
    """
    router = deps.router
    serving = [name for name in deps.providers if router.is_enabled(name)]
    per_provider: dict[str, list[str]] = {}

    async def fetch(name: str) -> None:
        per_provider[name] = await deps.providers[name].models()

    async with trio.open_nursery() as nursery:
        for name in serving:
            nursery.start_soon(fetch, name)
    cards = [
        _card(deps, name, target.provider, target.model)
        for name, target in router.aliases.items()
        if router.is_enabled(target.provider)
        and router.model_enabled(Route(target.provider, target.model, name), name)
    ]
    for name in serving:
        for model in per_provider.get(name, []):
            card_id = _routable_id(router, name, model)
            if router.model_enabled(Route(name, model), card_id):
                cards.append(_card(deps, card_id, name, model))
    return ModelList(data=cards)


def _card(deps: V1Deps, card_id: str, provider: str, upstream_model: str) -> ModelCard:
    """The entry for ``card_id``, served by ``provider`` as ``upstream_model``."""
    actor = deps.providers.get(provider)
    created = actor.created_times().get(upstream_model) if actor is not None else None
    if created is None:
        created = deps.started_unix
    return ModelCard(id=card_id, created=created, owned_by=provider)


async def models_body(deps: V1Deps, model: str | None) -> bytes:
    """The list, or one model (404 when nothing routes it)."""
    listing = await list_models(deps)
    if model is None:
        return _encode(listing)
    for card in listing.data:
        if card.id == model:
            return _encode(card)
    route = deps.router.resolve(model)  # raises 404 / 503 for what does not route
    return _encode(_card(deps, model, route.provider, route.upstream_model))
