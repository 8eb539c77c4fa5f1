"""RuntimeSettings: the one owner of what the dashboard changes while the gateway runs.

``provider_settings`` and ``model_settings`` (design §7) change the file config at run time: the
dashboard's PUT routes store a row and hand it to :meth:`RuntimeSettings.apply_provider` /
:meth:`RuntimeSettings.apply_model`, and :meth:`RuntimeSettings.load` applies every stored row at
start. What can change live: whether a provider or model is routed to (told to the
:class:`~proxy.routing.Router`), a provider's base URL and concurrency limit (told to its actor,
:meth:`ProviderActor.reconfigure`), its default model and whether its prepaid credit is tracked
(held here; the provider test and the request logger ask), and model prices (told to the
:class:`~proxy.pricing.Pricer`). A provider disabled in the file config has no actor, so it cannot
be switched on without a restart. A stored base URL whose origin the provider's key is not bound
to (:mod:`proxy.origins`; stored before keys were bound, or the file's ``allowed_base_urls``
changed since) is not applied: the provider keeps the file's.

Handlers ask this object and hand it changes; none of them sets a field on an actor. A change
made by another process of the fleet (announced on the change bus, ``actors/fleet_bus.py``) is
re-read from the database by :meth:`RuntimeSettings.reload_providers` /
:meth:`RuntimeSettings.reload_models` and applied exactly as the local route would have.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from actors.provider import ProviderActor
from actors.request_logger import CreditCrossing, CreditLedger
from proxy.config import ProviderConfig
from proxy.origins import key_binding, origin_of
from proxy.pricing import FREE_PROVIDERS, PriceOverride, Pricer
from proxy.routing import AliasTarget, Route, Router
from storage.model_settings import ModelSettingsRow, list_model_settings
from storage.provider_settings import ProviderSettingsRow, debit_credit, list_provider_settings
from storage.reads import ReadPool
from storage.writer import StorageWriter

log = logging.getLogger("llm_proxy.settings")

Publish = Callable[[Mapping[str, object]], None]
"""Hands an event to the dashboard's live feeds (never blocks)."""


class RuntimeSettings:
    """The dashboard's live overrides: held here, applied to the parts that act on them."""

    def __init__(
        self,
        files: Mapping[str, ProviderConfig],
        *,
        router: Router,
        providers: Mapping[str, ProviderActor],
        pricer: Pricer,
    ) -> None:
        self._files = files
        self._router = router
        self._providers = providers
        self._pricer = pricer
        self._default_models: dict[str, str] = {}
        self._credit_tracked: frozenset[str] = frozenset()
        # What was applied last, as compared by _provider_effect / _model_effect: a reload
        # applies only what changed, so the periodic full reload is quiet and cheap.
        self._provider_effects: dict[str, object] = {}
        self._model_rows: dict[str, ModelSettingsRow] = {}

    async def load(self, reads: ReadPool) -> None:
        """At start (the writer running, nothing served yet): apply every stored override."""
        provider_rows = await reads.run(list_provider_settings)
        model_rows = await reads.run(list_model_settings)
        for row in provider_rows:
            if row.provider not in self._files:
                log.warning("provider_settings names unknown provider %r: ignored", row.provider)
                continue
            self.apply_provider(row.provider, row)
        for model_row in model_rows:
            self.apply_model(model_row.model, model_row)
        if provider_rows or model_rows:
            log.info(
                "dashboard overrides applied: %d providers, %d models",
                len(provider_rows),
                len(model_rows),
            )

    async def reload_providers(self, reads: ReadPool, name: str | None = None) -> None:
        """Re-read provider overrides another process changed and apply them (``name``: that
        provider's; None: every provider's); a removed row puts the file config back."""
        rows = {row.provider: row for row in await reads.run(list_provider_settings)}
        for provider in self._files if name is None else (name,):
            if provider not in self._files:
                continue  # named by a newer version or a typo: nothing here runs it
            row = rows.get(provider)
            if _provider_effect(row) != self._provider_effects.get(
                provider, _provider_effect(None)
            ):
                log.info("provider=%s dashboard override changed elsewhere: applied", provider)
                self.apply_provider(provider, row)

    async def reload_models(self, reads: ReadPool, name: str | None = None) -> None:
        """Re-read model overrides another process changed and apply them (``name``: that
        model's; None: every model's); a removed row puts the model back as configured."""
        rows = {row.model: row for row in await reads.run(list_model_settings)}
        names = (name,) if name is not None else {*rows, *self._model_rows}
        for model in names:
            row = rows.get(model)
            if _model_effect(row) != _model_effect(self._model_rows.get(model)):
                log.info("model %r dashboard override changed elsewhere: applied", model)
                self.apply_model(model, row)

    # -- providers -------------------------------------------------------------------------------

    def apply_provider(self, name: str, row: ProviderSettingsRow | None) -> None:
        """Make provider ``name`` run as its file config with ``row``'s overrides (None: none)."""
        self._provider_effects[name] = _provider_effect(row)
        if row is not None and row.credit_balance_usd is not None:
            self._credit_tracked |= {name}
        else:
            self._credit_tracked -= {name}
        default = row.default_model if row is not None else None
        if default:
            self._default_models[name] = default
        else:
            self._default_models.pop(name, None)
        actor = self._providers.get(name)
        if actor is None:
            if row is not None and row.enabled:
                log.warning(
                    "provider=%s is switched on in the dashboard but disabled in the config "
                    "file; enable it there (with its API key) and restart",
                    name,
                )
            return
        file = self._files[name]
        enabled = row is None or row.enabled is not False
        self._router.set_provider_enabled(name, enabled)
        actor.set_probing(enabled)
        base_url = applicable_base_url(file, row)
        concurrency = row.max_concurrency if row is not None else None
        try:
            actor.reconfigure(
                base_url=base_url or file.base_url,
                max_concurrency=concurrency or file.max_concurrency,
            )
        except ValueError as exc:
            log.warning("provider=%s stored override not applied: %s", name, exc)

    def default_model(self, name: str) -> str | None:
        """The model a test call of provider ``name`` uses: the dashboard's choice, else the
        actor's own (a known chat model)."""
        chosen = self._default_models.get(name)
        if chosen:
            return chosen
        actor = self._providers.get(name)
        return actor.default_model if actor is not None else None

    def tracks_credit(self, provider: str) -> bool:
        """Whether ``provider``'s calls are charged against a prepaid balance."""
        return provider in self._credit_tracked

    @property
    def credit_tracked(self) -> frozenset[str]:
        """The providers whose calls are charged."""
        return self._credit_tracked

    # -- models ----------------------------------------------------------------------------------

    def apply_model(self, model: str, row: ModelSettingsRow | None) -> None:
        """Serve ``model`` (or not), route it where ``row`` says (an alias), and price it with
        ``row``'s prices (None: as configured)."""
        if row is None:
            self._model_rows.pop(model, None)
        else:
            self._model_rows[model] = row
        self._router.set_model_enabled(model, row is None or row.enabled)
        alias = None
        if row is not None and row.provider and row.upstream_model:
            alias = AliasTarget(row.provider, row.upstream_model, ())
        try:
            self._router.set_live_alias(model, alias)
        except ValueError:
            log.warning(
                "model %r: stored alias names an unknown provider %r", model, row and row.provider
            )
        prices = (
            None
            if row is None
            else PriceOverride(row.input_per_mtok, row.output_per_mtok, row.cached_input_per_mtok)
        )
        self._pricer.set_live_override(model, prices)

    def model_price(self, route: Route) -> tuple[PriceOverride | None, str | None]:
        """What a call on ``route`` is billed now (None: unpriced), and where that price comes
        from: ``dashboard``, ``config``, ``table`` or ``free``."""
        pricer = self._pricer
        try:
            price = pricer.rates(
                provider=route.provider, upstream_model=route.upstream_model, alias=route.alias
            )
        except Exception:  # a price-table surprise must not break the listing
            return None, None
        if price is None:
            return None, None
        names = [name for name in (route.alias, route.upstream_model) if name]
        if any(name in pricer.live_overrides for name in names):
            return price, "dashboard"
        if any(name in pricer.config_overrides for name in names):
            return price, "config"
        return price, "free" if route.provider in FREE_PROVIDERS else "table"


def _provider_effect(row: ProviderSettingsRow | None) -> object:
    """What of ``row`` :meth:`RuntimeSettings.apply_provider` acts on: not the balance itself
    (every priced call moves it), only whether there is one."""
    if row is None:
        return None
    return (
        row.enabled,
        row.base_url,
        row.default_model,
        row.max_concurrency,
        row.credit_balance_usd is not None,
    )


def _model_effect(row: ModelSettingsRow | None) -> object:
    """What of ``row`` :meth:`RuntimeSettings.apply_model` acts on (not its timestamp)."""
    return None if row is None else dataclasses.replace(row, updated_at=0)


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


def credit_ledger(
    settings: RuntimeSettings, writer: StorageWriter, publish: Publish
) -> CreditLedger:
    """The request logger's prepaid credit: charged for the providers ``settings`` tracks,
    debited through ``writer``; a balance falling below its threshold is ``publish``ed."""

    async def debit(charges: Mapping[str, float]) -> Sequence[CreditCrossing]:
        return await writer.execute(
            partial(debit_credit, charges=dict(charges), now_ms=int(time.time() * 1000))
        )

    def low_credit(provider: str, balance: float, threshold: float | None) -> None:
        publish(
            {
                "type": "credit",
                "provider": provider,
                "balance_usd": balance,
                # No threshold set: the line is zero (running out).
                "threshold_usd": threshold if threshold is not None else 0.0,
            }
        )

    return CreditLedger(tracks=settings.tracks_credit, debit=debit, on_low_credit=low_credit)
