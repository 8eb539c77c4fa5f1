"""The parts built from the configuration alone: the price table, one actor per enabled
provider, and the authenticator (static keys, client keys, demo mode)."""

from __future__ import annotations

import logging

from actors.client_directory import ClientDirectory
from actors.provider import ProviderActor
from actors.rate_limiter import ClientLimits
from proxy.config import KEYED_PROVIDERS, Config
from proxy.hosts import is_loopback_bind
from proxy.images import ImageFetcher
from proxy.pricing import FREE_PROVIDERS, PriceOverride, Pricer
from proxy.providers.registry import adapter_for
from proxy.secret_scrubber import MIN_SECRET_LENGTH, SecretScrubber, configured_secrets
from web.auth import Authenticator
from web.events import EventHub
from web.host_check import policy_for as host_policy_for

__all__ = ["build_authenticator", "build_pricer", "build_providers"]

log = logging.getLogger("llm_proxy.service")


def build_pricer(config: Config) -> Pricer:
    """The price table with the config's per-alias overrides."""
    overrides = {
        name: PriceOverride(
            alias.input_per_mtok, alias.output_per_mtok, alias.cached_input_per_mtok
        )
        for name, alias in config.models.items()
        if alias.input_per_mtok is not None or alias.output_per_mtok is not None
    }
    return Pricer(overrides)


def build_providers(
    config: Config, images: ImageFetcher, events: EventHub | None = None
) -> dict[str, ProviderActor]:
    """One actor per enabled provider; breaker changes are published on ``events``."""

    def breaker_changed(name: str, state: str) -> None:
        if events is not None:
            events.publish({"type": "provider", "name": name, "state": state})

    # Upstream errors are scrubbed of every secret of the config, not only the called
    # provider's key: an upstream may echo anything the gateway was ever given.
    scrubber = SecretScrubber.from_config(config)
    short = [
        where
        for where, secret in configured_secrets(config).items()
        if len(secret) < MIN_SECRET_LENGTH
    ]
    if short:
        log.warning(
            "secrets shorter than %d characters are not scrubbed from upstream error text: %s; "
            "use long random keys",
            MIN_SECRET_LENGTH,
            ", ".join(short),
        )
    actors: dict[str, ProviderActor] = {}
    for provider in config.enabled_providers():
        actors[provider.name] = ProviderActor(
            provider,
            adapter_for(provider),
            images=images,
            on_breaker_change=breaker_changed,
            scrubber=scrubber,
            probe_interval_s=config.provider_wide.reachability_probe_interval_s,
        )
    if "mock" in actors and not any(config.providers[name].api_key for name in KEYED_PROVIDERS):
        log.info(
            "no upstream API key is configured: the mock provider is on (model 'mock' answers "
            "with an echo); set OPENAI_API_KEY or another provider key to use a real upstream"
        )
    return actors


def build_authenticator(
    config: Config, providers: dict[str, ProviderActor], directory: ClientDirectory
) -> Authenticator:
    """Static keys from the config, client keys from the database, anonymous calls if allowed."""
    # Demo mode: no API key configured and only free, local providers (the in-process mock, a
    # local Ollama) enabled, on a loopback address. Letting a first `curl` through without a key
    # then costs nothing and exposes nothing that was not already open on this machine. It ends
    # when the first client key is created. Only while the Host check runs: without it a web page
    # whose name was rebound to 127.0.0.1 would be a caller from this machine too.
    demo = (
        not config.auth.allow_anonymous
        and not config.auth.tokens
        and set(providers) <= FREE_PROVIDERS
        and is_loopback_bind(config.server.host)
        and host_policy_for(config.server) is not None
    )
    if demo:
        log.warning(
            "demo mode: no API key is configured and only free local providers are enabled, so "
            "calls without a key are accepted on %s until a client key is created",
            config.server.host,
        )
    return Authenticator(
        config.auth.tokens,
        allow_anonymous=config.auth.allow_anonymous,
        default_limits=ClientLimits(config.limits.default_client_requests_per_minute),
        directory=directory,
        demo_mode=demo,
    )
