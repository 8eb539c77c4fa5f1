"""``/api/providers`` and ``/api/models``: what the gateway routes to, changed live (design §8).

A change is stored in ``provider_settings`` / ``model_settings`` and handed to the runtime settings
(:mod:`actors.runtime_settings`), which apply it at once; ``null`` sends a field back to the file
config, a field left out stays as it is. API keys are never shown, not even masked: only whether
one is configured, and the origins it may be sent to. A base URL override outside those is
refused (400): a key from the file, the environment or a credential goes only where the file says
(:mod:`proxy.origins`). Keys cannot be entered here: the design keeps them out of the database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import partial
from typing import Any

import msgspec
import trio
from quart import Blueprint, Response, request

from actors.provider import ProviderActor
from actors.runtime_settings import RuntimeSettings, base_url_refusal
from proxy.config import ProviderConfig
from proxy.errors import Conflict, InvalidRequest, ModelNotFound, NotFound
from proxy.origins import key_binding, origin_of
from proxy.pricing import PriceOverride
from proxy.routing import Route, Router
from storage.clients import UNCHANGED, Unchanged
from storage.model_settings import (
    ModelSettingsRow,
    list_model_settings,
    put_model_settings,
)
from storage.provider_settings import (
    ProviderSettingsRow,
    get_provider_settings,
    list_provider_settings,
    put_provider_settings,
)
from storage.reads import ReadPool
from storage.writer import StorageWriter
from web.api.common import AuditLog, deps_of, json_response, now_ms, read_body
from web.provider_probe import probe

providers = Blueprint("api_providers", __name__, url_prefix="/api")


@dataclasses.dataclass(frozen=True, slots=True)
class ProvidersApi:
    """What ``/api/providers`` and ``/api/models`` use."""

    files: Mapping[str, ProviderConfig]  # every known provider as the config file has it
    actors: Mapping[str, ProviderActor]  # the running ones
    router: Router
    settings: RuntimeSettings  # asked for defaults and prices; handed every change
    reads: ReadPool
    writer: StorageWriter
    audit: AuditLog


def _deps() -> ProvidersApi:
    return deps_of(ProvidersApi)


_UNSET = msgspec.UNSET
_Unset = msgspec.UnsetType


class ProviderChanges(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /api/providers/{name}``: absent = unchanged, null = as in the file config."""

    enabled: bool | _Unset | None = _UNSET
    base_url: str | _Unset | None = _UNSET
    default_model: str | _Unset | None = _UNSET
    max_concurrency: int | _Unset | None = _UNSET
    credit_balance_usd: float | _Unset | None = _UNSET
    low_credit_threshold_usd: float | _Unset | None = _UNSET


class ModelChanges(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /api/models/{model}``: absent = unchanged, null = the default (enabled, table
    price)."""

    enabled: bool | _Unset | None = _UNSET
    input_per_mtok: float | _Unset | None = _UNSET
    output_per_mtok: float | _Unset | None = _UNSET
    cached_input_per_mtok: float | _Unset | None = _UNSET
    # Both together make the name an alias of that provider's model (design §6); both null drop it.
    provider: str | _Unset | None = _UNSET
    upstream_model: str | _Unset | None = _UNSET


class ProbeBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /api/providers/{name}/test``: the model to ask (default: the provider's)."""

    model: str | None = None


def _given(struct: msgspec.Struct) -> dict[str, Any]:
    """The fields a body sets (null included), in declaration order."""
    return {
        name: value
        for name in struct.__struct_fields__
        if (value := getattr(struct, name)) is not _UNSET
    }


def _storage_args(given: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    args: dict[str, Any | Unchanged] = dict.fromkeys(names, UNCHANGED)
    args.update(given)
    return args


# -- providers -------------------------------------------------------------------------------------


def _known_provider(gw: ProvidersApi, name: str) -> ProviderConfig:
    file = gw.files.get(name)
    if file is None:
        known = ", ".join(gw.files)
        raise NotFound(f"Unknown provider '{name}' (known: {known}).", code="unknown_provider")
    return file


def _settings_json(row: ProviderSettingsRow | None) -> dict[str, object] | None:
    if row is None:
        return None
    return {
        "enabled": row.enabled,
        "base_url": row.base_url,
        "default_model": row.default_model,
        "max_concurrency": row.max_concurrency,
        "credit_balance_usd": row.credit_balance_usd,
        "low_credit_threshold_usd": row.low_credit_threshold_usd,
        "updated_at": row.updated_at,
    }


def provider_json(
    gw: ProvidersApi, file: ProviderConfig, row: ProviderSettingsRow | None
) -> dict[str, object]:
    """One provider as it runs now: effective settings, health, credit, stored overrides."""
    actor: ProviderActor | None = gw.actors.get(file.name)
    refusal = base_url_refusal(file, row)
    if actor is not None:
        base_url, concurrency = actor.config.base_url, actor.config.max_concurrency
    else:
        # Not running: what it would run with, once enabled in the file.
        base_url = (row.base_url if row and refusal is None else None) or file.base_url
        concurrency = (row.max_concurrency if row else None) or file.max_concurrency
    balance = row.credit_balance_usd if row is not None else None
    threshold = row.low_credit_threshold_usd if row is not None else None
    binding = key_binding(file)
    return {
        "name": file.name,
        # Routed to now; "running": it has an actor (a provider disabled in the file has none).
        "enabled": actor is not None and gw.router.is_enabled(file.name),
        "running": actor is not None,
        "configured_enabled": file.enabled,
        "base_url": base_url,
        "default_model": gw.settings.default_model(file.name),
        "max_concurrency": concurrency,
        "timeout_s": file.timeout_s,
        "connect_timeout_s": file.connect_timeout_s,
        "api_key_configured": bool(file.api_key),
        # Where the key may go (null: no key, so anywhere); a base_url elsewhere is refused.
        "key_origins": [str(origin) for origin in binding.origins] if binding.keyed else None,
        # Why the stored base_url override is not applied (stored before keys were bound).
        "base_url_refused": refusal,
        "breaker": {
            "state": actor.breaker_state if actor is not None else None,
            "failures_to_open": file.breaker_failures,
            "cooldown_s": file.breaker_cooldown_s,
        },
        "statistics": dataclasses.asdict(actor.statistics()) if actor is not None else None,
        "credit_balance_usd": balance,
        "low_credit_threshold_usd": threshold,
        "low_credit": balance is not None and balance < (threshold or 0.0),
        "overrides": _settings_json(row),
    }


@providers.get("/providers")
async def list_providers() -> Response:
    gw = _deps()
    rows = {row.provider: row for row in await gw.reads.run(list_provider_settings)}
    data = [provider_json(gw, file, rows.get(name)) for name, file in gw.files.items()]
    return json_response({"data": data})


@providers.get("/providers/<name>")
async def get_provider(name: str) -> Response:
    gw = _deps()
    file = _known_provider(gw, name)
    row = await gw.reads.run(partial(get_provider_settings, provider=name))
    return json_response(provider_json(gw, file, row))


@providers.put("/providers/<name>")
async def update_provider(name: str) -> Response:
    gw = _deps()
    file = _known_provider(gw, name)
    changes = _given(await read_body(ProviderChanges))
    actor = gw.actors.get(name)
    if changes.get("enabled") is True and actor is None:
        raise Conflict(
            f"Provider '{name}' is disabled in the config file, so it is not running and cannot "
            f"be switched on from here: set [providers.{name}] enabled = true (and its API key) "
            "and restart the gateway.",
            code="provider_not_running",
        )
    if isinstance(changes.get("base_url"), str):
        _check_base_url(file, changes["base_url"])
    try:
        row = await gw.writer.execute(
            partial(
                put_provider_settings,
                provider=name,
                **_storage_args(changes, ProviderChanges.__struct_fields__),
                now_ms=now_ms(),
            )
        )
    except ValueError as exc:
        raise InvalidRequest(f"Invalid provider settings: {exc}.") from None
    gw.settings.apply_provider(name, row)
    await gw.audit.record("provider.update", name, changes)
    return json_response(provider_json(gw, file, row))


def _check_base_url(file: ProviderConfig, base_url: str) -> None:
    """A 400 unless ``base_url`` is a URL the transport can reach and the key may go to."""
    if file.name == "mock":
        raise InvalidRequest("The mock provider answers in-process: it has no base_url.")
    try:
        origin_of(base_url)
    except ValueError as exc:
        raise InvalidRequest(
            f"Invalid provider settings: base_url {exc}.", param="base_url"
        ) from None
    refusal = key_binding(file).refusal(base_url)
    if refusal is not None:
        raise InvalidRequest(refusal, param="base_url", code="base_url_not_allowed")


async def _optional_body(model: type[ProbeBody]) -> ProbeBody:
    """The body if one was sent (the test call needs none)."""
    if not request.content_length and not request.headers.get("transfer-encoding"):
        return model()
    return await read_body(model)


@providers.post("/providers/<name>/test")
async def test_provider(name: str) -> Response:
    gw = _deps()
    _known_provider(gw, name)
    body = await _optional_body(ProbeBody)
    actor = gw.actors.get(name)
    if actor is None:
        raise Conflict(
            f"Provider '{name}' is disabled in the config file, so there is nothing to test: "
            f"set [providers.{name}] enabled = true and restart the gateway.",
            code="provider_not_running",
        )
    model = body.model or gw.settings.default_model(name)
    if not model:
        raise InvalidRequest(
            f"Provider '{name}' lists no model to test with: name one ({{\"model\": ...}}) "
            "or set its default_model.",
        )
    result = await probe(actor, model)
    await gw.audit.record(
        "provider.test", name, {"model": model, "ok": result.ok, "status": result.status}
    )
    return json_response(result.to_json())


# -- models ----------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Listed:
    id: str
    provider: str | None
    upstream_model: str | None
    alias: str | None


def _listed_id(gw: ProvidersApi, provider: str, model: str) -> str:
    """The name that routes to ``provider``'s ``model``: bare when it does, else prefixed."""
    try:
        route = gw.router.route_of(model)
    except ModelNotFound:
        return f"{provider}/{model}"
    return model if route.provider == provider and route.alias is None else f"{provider}/{model}"


async def _served_models(gw: ProvidersApi) -> list[_Listed]:
    """Aliases, then each running provider's models, as ``GET /v1/models`` names them."""
    listed = [
        _Listed(alias, target.provider, target.model, alias)
        for alias, target in gw.router.aliases.items()
    ]
    per_provider: dict[str, list[str]] = {}

    async def fetch(name: str, actor: ProviderActor) -> None:
        per_provider[name] = await actor.models()

    with trio.move_on_after(15):
        async with trio.open_nursery() as nursery:
            for name, actor in gw.actors.items():
                nursery.start_soon(fetch, name, actor)
    for name in gw.actors:
        listed.extend(
            _Listed(_listed_id(gw, name, model), name, model, None)
            for model in per_provider.get(name, [])
        )
    return listed


def _route(gw: ProvidersApi, model: str) -> Route | None:
    try:
        return gw.router.route_of(model)
    except ModelNotFound:
        return None


def _prices(price: PriceOverride | None) -> dict[str, float | None] | None:
    if price is None:
        return None
    return {
        "input_per_mtok": price.input_per_mtok,
        "output_per_mtok": price.output_per_mtok,
        "cached_input_per_mtok": price.cached_input_per_mtok,
    }


def _model_settings_json(row: ModelSettingsRow | None) -> dict[str, object] | None:
    if row is None:
        return None
    return {
        "enabled": row.enabled,
        "provider": row.provider,
        "upstream_model": row.upstream_model,
        "input_per_mtok": row.input_per_mtok,
        "output_per_mtok": row.output_per_mtok,
        "cached_input_per_mtok": row.cached_input_per_mtok,
        "updated_at": row.updated_at,
    }


def model_json(
    gw: ProvidersApi, listed: _Listed, row: ModelSettingsRow | None
) -> dict[str, object]:
    """One model: where it routes, whether it is served, its effective prices, its overrides."""
    router = gw.router
    provider, upstream = listed.provider, listed.upstream_model
    route = Route(provider, upstream, listed.alias) if provider and upstream else None
    price, source = gw.settings.model_price(route) if route is not None else (None, None)
    return {
        "id": listed.id,
        "provider": provider,
        "upstream_model": upstream,
        "alias": listed.alias is not None,
        "enabled": route is not None
        and router.model_enabled(route, listed.id)
        and router.is_enabled(route.provider)
        and route.provider in gw.actors,
        "model_enabled": route is None or router.model_enabled(route, listed.id),
        "provider_enabled": route is not None
        and route.provider in gw.actors
        and router.is_enabled(route.provider),
        "prices": _prices(price),
        "price_source": source,
        "settings": _model_settings_json(row),
    }


@providers.get("/models")
async def list_models() -> Response:
    gw = _deps()
    rows = {row.model: row for row in await gw.reads.run(list_model_settings)}
    listed = await _served_models(gw)
    seen = {entry.id for entry in listed}
    # A model with settings but not listed now (switched off, an upstream not answering).
    for model in rows:
        if model not in seen:
            route = _route(gw, model)
            listed.append(
                _Listed(
                    model,
                    route.provider if route else None,
                    route.upstream_model if route else None,
                    route.alias if route else None,
                )
            )
    data = [model_json(gw, entry, rows.get(entry.id)) for entry in listed]
    return json_response({"data": data})


@providers.put("/models/<path:model>")
async def update_model(model: str) -> Response:
    gw = _deps()
    changes = _given(await read_body(ModelChanges))
    aliasing = ("provider" in changes, "upstream_model" in changes)
    if any(aliasing):
        if not all(aliasing) or (changes["provider"] is None) != (
            changes["upstream_model"] is None
        ):
            raise InvalidRequest(
                "An alias needs both 'provider' and 'upstream_model' (or both null to drop it).",
            )
        if changes["provider"] is not None and changes["provider"] not in gw.files:
            raise InvalidRequest(f"Unknown provider {changes['provider']!r}.")
    route = _route(gw, model)
    if route is None and not changes.get("provider"):
        raise NotFound(
            f"The model '{model}' does not route to any provider of this gateway.",
            code="model_not_found",
        )
    stored = dict(changes)
    if stored.get("enabled", False) is None:
        stored["enabled"] = True  # back to the default: served
    try:
        row = await gw.writer.execute(
            partial(
                put_model_settings,
                model=model,
                **_storage_args(stored, ModelChanges.__struct_fields__),
                now_ms=now_ms(),
            )
        )
    except ValueError as exc:
        raise InvalidRequest(f"Invalid model settings: {exc}.") from None
    gw.settings.apply_model(model, row)
    await gw.audit.record("model.update", model, changes)
    route = _route(gw, model) or route
    assert route is not None
    listed = _Listed(model, route.provider, route.upstream_model, route.alias)
    return json_response(model_json(gw, listed, row))
