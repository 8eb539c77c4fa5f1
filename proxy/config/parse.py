"""Reading the configuration: a TOML file (or the built-in defaults) validated into a Config.

Every error is a :class:`~proxy.config.schema.ConfigError` whose message names the file and the
dotted key (``llm-proxy.toml: 'server.port' must be between 0 and 65535, got 70000``), so a
mistake is found without reading code. Provider keys are resolved here too
(:mod:`proxy.config.provider_keys`), and the database path made absolute.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from proxy.config.checks import redis_url, storage_url
from proxy.config.provider_keys import key_variables, read_credential, resolve_key
from proxy.config.schema import (
    KEYED_PROVIDERS,
    PROVIDER_DEFAULTS,
    PROVIDER_NAMES,
    ClusterConfig,
    Config,
    ImagesConfig,
    ModelAlias,
    ProviderConfig,
    ProvidersWideConfig,
    ServerConfig,
    StorageConfig,
    config_error,
)
from proxy.config.tables import (
    FALLBACK_LIST,
    MODEL_SCHEMA,
    PROVIDERS_WIDE_SCHEMA,
    SCHEMAS,
    SECTIONS,
    TOP_LEVEL,
    as_table,
    fields,
    provider_schema,
)
from proxy.config.toml_text import toml_key
from proxy.image_budget import inlined_size

__all__ = ["DEFAULTS_SOURCE", "load_config", "parse_config", "with_overrides"]

DEFAULTS_SOURCE = "built-in defaults"


def _resolve_database(path: str, environ: Mapping[str, str]) -> str:
    if path == ":memory:":  # SQLite's in-memory database is not a file name
        return path
    base = environ.get("STATE_DIRECTORY", "").split(":")[0] or os.getcwd()
    return os.path.abspath(os.path.join(base, path))


def _parse_providers(
    data: Mapping[str, Any], environ: Mapping[str, str], source: str
) -> dict[str, ProviderConfig]:
    for name in data:
        if name not in PROVIDER_NAMES and name not in PROVIDERS_WIDE_SCHEMA:
            known = ", ".join(PROVIDER_NAMES)
            raise config_error(source, f"unknown provider '{name}' (known: {known})")
    raws: dict[str, dict[str, Any]] = {}
    for name in PROVIDER_NAMES:
        where = f"providers.{name}"
        schema = provider_schema(name)
        raws[name] = fields(as_table(data.get(name, {}), where, source), schema, where, source)
        if "api_key" in raws[name] and "api_key_env" in raws[name]:
            raise config_error(source, f"'{where}.api_key' and '{where}.api_key_env' are both set")
    keys = {name: resolve_key(name, raws[name], environ, source) for name in PROVIDER_NAMES}
    any_keyed = any(keys[name][0] is not None for name in KEYED_PROVIDERS)
    providers: dict[str, ProviderConfig] = {}
    for name, raw in raws.items():
        api_key, key_source = keys[name]
        if name in KEYED_PROVIDERS:
            enabled = raw.pop("enabled", api_key is not None)
            if enabled and api_key is None:
                places = [
                    f"'providers.{name}.api_key'",
                    *map("${}".format, key_variables(name, raw)),
                ]
                raise config_error(
                    source,
                    f"'providers.{name}.enabled' is true but no API key was found: set "
                    f"{', '.join(places)} or the systemd credential {name}_api_key",
                )
        else:
            enabled = raw.pop("enabled", name == "ollama" or not any_keyed)
        raw.pop("api_key", None)
        raw.pop("api_key_env", None)
        base_url = raw.pop("base_url", PROVIDER_DEFAULTS[name][0])
        if name == "anthropic" and base_url.rstrip("/").endswith("/v1"):
            # Anthropic's paths start with /v1 (as its SDKs' ANTHROPIC_BASE_URL has none).
            raise config_error(
                source,
                f"'providers.anthropic.base_url' must not end in /v1 (the gateway appends "
                f"/v1/messages): use {base_url.rstrip('/').removesuffix('/v1')!r}",
            )
        providers[name] = ProviderConfig(name, enabled, base_url, api_key, key_source, **raw)
    return providers


def _parse_provider_wide(data: Mapping[str, Any], source: str) -> ProvidersWideConfig:
    """``[providers]``' own keys (its NAME tables are :func:`_parse_providers`')."""
    own = {key: value for key, value in data.items() if key in PROVIDERS_WIDE_SCHEMA}
    return ProvidersWideConfig(**fields(own, PROVIDERS_WIDE_SCHEMA, "providers", source))


def _parse_models(data: Mapping[str, Any], source: str) -> dict[str, ModelAlias]:
    models: dict[str, ModelAlias] = {}
    for name, value in data.items():
        where = f"models.{toml_key(name)}"
        models[name] = ModelAlias(
            name, **fields(as_table(value, where, source), MODEL_SCHEMA, where, source)
        )
    return models


def parse_config(data: Mapping[str, Any], *, source: str, environ: Mapping[str, str]) -> Config:
    """Validate parsed TOML ``data`` into a :class:`Config`; ``source`` prefixes every error."""
    for section in data:
        if section not in TOP_LEVEL:
            raise config_error(source, f"unknown section '{section}'")
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        values = fields(as_table(data.get(name, {}), name, source), SCHEMAS[name], name, source)
        if cls is ServerConfig:
            values["database"] = _resolve_database(values.get("database", "llm-proxy.db"), environ)
        sections[name] = cls(**values)
    _check_images(sections["images"], source)
    sections["cluster"] = _resolve_redis_url(sections["cluster"], environ, source)
    sections["storage"] = _resolve_storage_url(sections["storage"], environ, source)
    if sections["server"].workers > 1 and not sections["cluster"].redis_url:
        raise config_error(
            source,
            f"'server.workers' is {sections['server'].workers}, which needs 'cluster.redis_url' "
            "(or $LLM_PROXY_REDIS_URL, or the systemd credential redis_url): the workers share "
            "limits, sessions and changes through Redis",
        )
    fallbacks = {
        name: FALLBACK_LIST.convert(value, f"fallbacks.{toml_key(name)}", source)
        for name, value in as_table(data.get("fallbacks", {}), "fallbacks", source).items()
    }
    providers_table = as_table(data.get("providers", {}), "providers", source)
    providers = _parse_providers(providers_table, environ, source)
    provider_wide = _parse_provider_wide(providers_table, source)
    models = _parse_models(as_table(data.get("models", {}), "models", source), source)
    return Config(
        **sections,
        providers=MappingProxyType(providers),
        models=MappingProxyType(models),
        fallbacks=MappingProxyType(fallbacks),
        source=source,
        provider_wide=provider_wide,
    )


def _secret_url(
    in_file: str,
    *,
    variable: str,
    credential: str,
    check: Callable[[str], str | None],
    environ: Mapping[str, str],
    source: str,
) -> tuple[str, str | None]:
    """A URL that may hold a password, and where it came from: the file's value, else
    ``$variable``, else the systemd credential ``credential``; ("", None) when none is set. A
    value from outside the file is checked here (the file's was checked with its section)."""
    if in_file:
        return in_file, "config file"
    for url, origin in (
        (environ.get(variable, ""), f"${variable}"),
        (read_credential(credential, environ, source) or "", f"credential {credential}"),
    ):
        if url:
            problem = check(url)
            if problem:
                raise config_error(source, f"{origin} {problem}")
            return url, origin
    return "", None


def _resolve_redis_url(
    cluster: ClusterConfig, environ: Mapping[str, str], source: str
) -> ClusterConfig:
    """``cluster.redis_url`` from the file, else $LLM_PROXY_REDIS_URL, else the credential."""
    url, origin = _secret_url(
        cluster.redis_url,
        variable="LLM_PROXY_REDIS_URL",
        credential="redis_url",
        check=redis_url,
        environ=environ,
        source=source,
    )
    return dataclasses.replace(cluster, redis_url=url, redis_url_source=origin)


def _resolve_storage_url(
    storage: StorageConfig, environ: Mapping[str, str], source: str
) -> StorageConfig:
    """``storage.url`` from the file, else $LLM_PROXY_STORAGE_URL, else the credential."""
    url, origin = _secret_url(
        storage.url,
        variable="LLM_PROXY_STORAGE_URL",
        credential="storage_url",
        check=storage_url,
        environ=environ,
        source=source,
    )
    return dataclasses.replace(storage, url=url, url_source=origin)


def _check_images(images: ImagesConfig, source: str) -> None:
    """The ``[images]`` limits that only make sense together."""
    # One image of max_bytes, as the base64 it is held as, must fit in a client's share, or an
    # image the size limit allows could never be used.
    one_image = inlined_size(images.max_bytes)
    if images.max_bytes_in_flight_per_client < one_image:
        raise config_error(
            source,
            f"'images.max_bytes_in_flight_per_client' must hold one image of 'images.max_bytes' "
            f"as base64 (4/3 of it): at least {one_image}, got "
            f"{images.max_bytes_in_flight_per_client}",
        )
    if images.max_bytes_in_flight < images.max_bytes_in_flight_per_client:
        raise config_error(
            source,
            "'images.max_bytes_in_flight' must not be below "
            "'images.max_bytes_in_flight_per_client'",
        )
    if images.max_concurrent_fetches < images.max_concurrent_fetches_per_client:
        raise config_error(
            source,
            "'images.max_concurrent_fetches' must not be below "
            "'images.max_concurrent_fetches_per_client'",
        )


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Load ``path``, else ``$LLM_PROXY_CONFIG``, else the built-in defaults."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    if path is None:
        path = env.get("LLM_PROXY_CONFIG") or None
    if path is None:
        return parse_config({}, source=DEFAULTS_SOURCE, environ=env)
    source = os.fspath(path)
    try:
        with open(source, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise config_error(source, "file not found") from exc
    except OSError as exc:
        raise config_error(source, f"cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise config_error(source, f"invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise config_error(source, f"invalid TOML: not UTF-8 ({exc.reason})") from exc
    return parse_config(data, source=source, environ=env)


def with_overrides(
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    database: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Apply ``serve`` command-line flags; ``database`` is resolved like the file's."""
    flags = {"host": host, "port": port, "database": database}
    changes = {
        key: SCHEMAS["server"][key].convert(value, f"--{key}", "command line")
        for key, value in flags.items()
        if value is not None
    }
    if "database" in changes:
        env: Mapping[str, str] = os.environ if environ is None else environ
        changes["database"] = _resolve_database(changes["database"], env)
    return dataclasses.replace(config, server=dataclasses.replace(config.server, **changes))
