"""The dashboard's provider and model overrides, applied to the running gateway.

``provider_settings`` and ``model_settings`` (design §7) change the file config at run time: the
dashboard's PUT routes store a row and apply it here at once, and :func:`apply_stored_settings`
applies every stored row at start. What can change live: whether a provider or model is routed to,
a provider's base URL and concurrency limit (see :meth:`ProviderActor.reconfigure`), its default
model, its prepaid credit balance, and model prices. A provider disabled in the file config has no
actor, so it cannot be switched on without a restart. A stored base URL whose origin the
provider's key is not bound to (:mod:`proxy.origins`; stored before keys were bound, or the file's
``allowed_base_urls`` changed since) is not applied: the provider keeps the file's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from functools import partial

from actors.request_logger import CreditCrossing
from proxy.config import ProviderConfig
from proxy.origins import key_binding, origin_of
from proxy.pricing import PriceOverride
from proxy.routing import AliasTarget
from storage.model_settings import ModelSettingsRow, list_model_settings
from storage.provider_settings import ProviderSettingsRow, debit_credit, list_provider_settings
from web.gateway import Gateway

log = logging.getLogger("llm_proxy.settings")


async def apply_stored_settings(gateway: Gateway) -> None:
    """At start (the writer running, nothing served yet): apply every stored override and
    connect the request logger's credit debits to the database and the live feed."""
    install_credit_ledger(gateway)
    provider_rows = await gateway.reads.run(list_provider_settings)
    model_rows = await gateway.reads.run(list_model_settings)
    for row in provider_rows:
        if row.provider not in gateway.config.providers:
            log.warning("provider_settings names unknown provider %r: ignored", row.provider)
            continue
        apply_provider_settings(gateway, row.provider, row)
    for model_row in model_rows:
        apply_model_settings(gateway, model_row.model, model_row)
    if provider_rows or model_rows:
        log.info(
            "dashboard overrides applied: %d providers, %d models",
            len(provider_rows),
            len(model_rows),
        )


def install_credit_ledger(gateway: Gateway) -> None:
    """Debit charges through the writer; a balance falling below its threshold is published."""
    writer, events = gateway.writer, gateway.events

    async def debit(charges: Mapping[str, float]) -> Sequence[CreditCrossing]:
        return await writer.execute(
            partial(debit_credit, charges=dict(charges), now_ms=int(time.time() * 1000))
        )

    def low_credit(provider: str, balance: float, threshold: float | None) -> None:
        events.publish(
            {
                "type": "credit",
                "provider": provider,
                "balance_usd": balance,
                # No threshold set: the line is zero (running out).
                "threshold_usd": threshold if threshold is not None else 0.0,
            }
        )

    gateway.logger.set_credit_ledger(debit, low_credit)


def apply_provider_settings(gateway: Gateway, name: str, row: ProviderSettingsRow | None) -> None:
    """Make provider ``name`` run as its file config with ``row``'s overrides (None: none)."""
    tracked = gateway.logger.credit_tracked
    if row is not None and row.credit_balance_usd is not None:
        gateway.logger.track_credit(tracked | {name})
    elif name in tracked:
        gateway.logger.track_credit(tracked - {name})
    actor = gateway.providers.get(name)
    if actor is None:
        if row is not None and row.enabled:
            log.warning(
                "provider=%s is switched on in the dashboard but disabled in the config file; "
                "enable it there (with its API key) and restart",
                name,
            )
        return
    file = gateway.config.providers[name]
    gateway.router.set_provider_enabled(name, row is None or row.enabled is not False)
    base_url = applicable_base_url(file, row)
    concurrency = row.max_concurrency if row is not None else None
    try:
        actor.reconfigure(
            base_url=base_url or file.base_url, max_concurrency=concurrency or file.max_concurrency
        )
    except ValueError as exc:
        log.warning("provider=%s stored override not applied: %s", name, exc)
    actor.default_model_override = row.default_model if row is not None else None


def base_url_refusal(file: ProviderConfig, row: ProviderSettingsRow | None) -> str | None:
    """Why ``row``'s base URL cannot be used with the provider's key (None: it can, or none)."""
    if row is None or row.base_url is None:
        return None
    return key_binding(file).refusal(row.base_url)


def applicable_base_url(file: ProviderConfig, row: ProviderSettingsRow | None) -> str | None:
    """``row``'s base URL if the provider's key may go there, else None (and a warning)."""
    stored = row.base_url if row is not None else None
    refusal = base_url_refusal(file, row)
    if stored is None or refusal is None:
        return stored
    try:
        where = str(origin_of(stored))
    except ValueError:
        where = "an invalid URL"
    log.warning(
        "provider=%s stored base_url override (%s) not applied, the config file's is used: %s "
        "Clear the override on the dashboard, or allow it in the file.",
        file.name,
        where,
        refusal,
    )
    return None


def apply_model_settings(gateway: Gateway, model: str, row: ModelSettingsRow | None) -> None:
    """Serve ``model`` (or not), route it where ``row`` says (an alias), and price it with
    ``row``'s prices (None: as configured)."""
    gateway.router.set_model_enabled(model, row is None or row.enabled)
    alias = None
    if row is not None and row.provider and row.upstream_model:
        alias = AliasTarget(row.provider, row.upstream_model, ())
    try:
        gateway.router.set_live_alias(model, alias)
    except ValueError:
        log.warning(
            "model %r: stored alias names an unknown provider %r", model, row and row.provider
        )
    prices = (
        None
        if row is None
        else PriceOverride(row.input_per_mtok, row.output_per_mtok, row.cached_input_per_mtok)
    )
    gateway.logger.pricer.set_live_override(model, prices)
