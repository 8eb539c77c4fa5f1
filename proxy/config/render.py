"""The effective configuration written back as TOML (``llm-proxy check-config``), secrets masked.

No key ever appears in a log line or an API response (design §5): every static token and provider
key is shown as :func:`mask_secret` shows it, with the place the key came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from proxy.config.schema import KEYED_PROVIDERS, AuthConfig, ClusterConfig, Config, StorageConfig
from proxy.config.tables import (
    MODEL_SCHEMA,
    PROVIDERS_WIDE_SCHEMA,
    SCHEMAS,
    SECTIONS,
    provider_schema,
)
from proxy.config.toml_text import toml_key, toml_str, toml_value

__all__ = ["mask_secret", "mask_url", "render_config"]


def mask_secret(secret: str) -> str:
    """Show a secret as its first 3 and last 4 characters; short ones as "…" only."""
    return "…" if len(secret) < 12 else f"{secret[:3]}…{secret[-4:]}"


def mask_url(url: str) -> str:
    """``url`` with its password (if any, in the user info or as a ``password`` parameter)
    masked: redis://user:…@host:6379/0, postgresql://app@db/llm?password=…."""
    parts = urlsplit(url)
    if parts.password is not None:
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{user}:…@{host}")
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        masked = [(k, "…" if k.lower() == "password" else v) for k, v in pairs]
        parts = parts._replace(query=urlencode(masked, safe="…"))
    return urlunsplit(parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())  # a newline would end a TOML comment early


def render_config(config: Config) -> str:
    """The effective configuration as TOML text, every secret masked."""
    lines = [f"# effective configuration from {_one_line(config.source)}"]

    def table(header: str, obj: object, keys: Iterable[str]) -> None:
        lines.extend(("", header))
        for key in keys:
            value = getattr(obj, key)
            if value is not None:
                lines.append(f"{key} = {toml_value(value)}")

    for name, cls in SECTIONS.items():
        section = getattr(config, name)
        if cls is AuthConfig:
            section = dataclasses.replace(section, tokens=tuple(map(mask_secret, section.tokens)))
        if cls is ClusterConfig and section.redis_url:
            section = dataclasses.replace(section, redis_url=mask_url(section.redis_url))
        if cls is StorageConfig and section.url:
            section = dataclasses.replace(section, url=mask_url(section.url))
        table(f"[{name}]", section, SCHEMAS[name])
    table("[providers]", config.provider_wide, PROVIDERS_WIDE_SCHEMA)
    for name, provider in config.providers.items():
        schema = provider_schema(name)
        table(f"[providers.{name}]", provider, (k for k in schema if not k.startswith("api_key")))
        if provider.api_key is None:
            if name in KEYED_PROVIDERS:
                lines.append("# no API key")
        else:
            masked = toml_str(mask_secret(provider.api_key))
            lines.append(f"api_key = {masked}  # from {_one_line(provider.api_key_source or '?')}")
    for alias in config.models.values():
        table(f"[models.{toml_key(alias.name)}]", alias, MODEL_SCHEMA)
    if config.fallbacks:
        lines += ["", "[fallbacks]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in config.fallbacks.items()]
    return "\n".join(lines) + "\n"
