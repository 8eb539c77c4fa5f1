"""Configuration: the TOML file of design §5 parsed and validated into frozen types.

The dataclasses are the schema: each field's type, default and value check (in its metadata) say
what the file may contain, so a key is described once. Provider keys are resolved here (file,
environment, systemd credential) so the rest of the gateway only sees a final ``api_key``;
:func:`render_config` masks them again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from proxy.hosts import entry_problem
from proxy.origins import origin_of

PROVIDER_NAMES: tuple[str, ...] = ("openai", "gemini", "deepseek", "grok", "ollama", "mock")
KEYED_PROVIDERS: tuple[str, ...] = ("openai", "gemini", "deepseek", "grok")
DEFAULTS_SOURCE = "built-in defaults"

# provider -> (default base_url, environment variables tried in order for its key)
_PROVIDER_DEFAULTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("https://api.openai.com/v1", ("OPENAI_API_KEY",)),
    "gemini": (
        "https://generativelanguage.googleapis.com/v1beta",
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    ),
    "deepseek": ("https://api.deepseek.com", ("DEEPSEEK_API_KEY",)),
    "grok": ("https://api.x.ai/v1", ("XAI_API_KEY",)),
    "ollama": ("http://127.0.0.1:11434", ()),
    "mock": ("mock://local", ()),
}


class ConfigError(Exception):
    """An invalid configuration; the message names the file and the dotted key."""


# ---------------------------------------------------------------------------------------------
# Value checks: each returns the complaint (e.g. "must be positive, got 0") or None

_Check = Callable[[Any], str | None]


def _between(lo: int, hi: int) -> _Check:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"


def _positive(v: float) -> str | None:
    return None if v > 0 else f"must be positive, got {v}"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else f"must not be negative, got {v}"


def _non_empty(v: str | tuple[str, ...]) -> str | None:
    if isinstance(v, tuple):
        return "must not contain empty strings" if "" in v else None
    return None if v else "must not be empty"


def _one_of(*choices: str) -> _Check:
    allowed = ", ".join(json.dumps(c) for c in choices)
    return lambda v: None if v in choices else f"must be one of {allowed}, got {json.dumps(v)}"


def _http_url(v: str) -> str | None:
    parts = urlsplit(v)
    if parts.scheme in ("http", "https") and parts.netloc:
        try:
            origin_of(v)  # as the upstream transport parses it (a port out of range, ...)
        except ValueError as exc:
            return str(exc)
        return None
    return f"must be an http:// or https:// URL, got {json.dumps(v)}"


def _base_urls(v: tuple[str, ...]) -> str | None:
    """Plain base URLs: only their origin counts, so nothing else may hide in them."""
    for url in v:
        if not url:
            return "must not contain empty strings"
        problem = _http_url(url)
        if problem:
            return problem
        parts = urlsplit(url)
        if "@" in parts.netloc:  # not echoed: it may hold a password
            return "must not contain a user name or password"
        if parts.query or parts.fragment:
            return f"must not contain a query or fragment, got {json.dumps(url)}"
    return None


def _host_entries(v: tuple[str, ...]) -> str | None:
    return next(filter(None, map(entry_problem, v)), None)


def _opt(default: Any = MISSING, check: _Check | None = None, *, repr: bool = True) -> Any:
    """A dataclass field whose value, when read from the file, must pass ``check``."""
    return field(default=default, repr=repr, metadata={"check": check})


# ---------------------------------------------------------------------------------------------
# Types


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: where to listen and where the database lives."""

    host: str = _opt("127.0.0.1", _non_empty)
    port: int = _opt(8080, _between(0, 65535))
    database: str = _opt("llm-proxy.db", _non_empty)  # absolute once parsed
    max_body_bytes: int = _opt(20_000_000, _positive)
    graceful_timeout_s: float = _opt(30.0, _positive)
    # How long a client may take to send its request body (a slow or lying client holds a task).
    body_timeout_s: float = _opt(60.0, _positive)
    # A client that stops reading is dropped after this long with unsent data (TCP_USER_TIMEOUT):
    # hypercorn's socket writes cannot be cancelled, so it would otherwise hold a shutdown.
    stalled_client_timeout_s: float = _opt(20.0, _positive)
    # A new connection must send a complete request head within this (a bare or trickling connect
    # holds a socket); a request in progress, a stream included, is never cut by it.
    header_timeout_s: float = _opt(10.0, _positive)
    # An idle connection between requests is closed after this.
    keep_alive_timeout_s: float = _opt(15.0, _positive)
    # Open client connections at most (0: derived from the open files limit at start). At the
    # limit the oldest idle connection is closed to make room; if none is idle, the new one is.
    max_connections: int = _opt(0, _non_negative)
    # Reverse proxies in front whose X-Forwarded-For/-Proto/-Host to believe (0: none). Behind one
    # TLS proxy set 1: the dashboard then sees https (Secure cookie, Origin check) and the real
    # client address (login throttling); never set it when clients reach the gateway directly.
    trusted_proxy_hops: int = _opt(0, _between(0, 10))
    # The names a request's Host may carry (DNS rebinding); addresses and localhost always pass.
    # Empty: loopback names only when bound to loopback, anything otherwise (proxy/hosts.py).
    allowed_hosts: tuple[str, ...] = _opt((), _host_entries)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """``[auth]``: static API keys and anonymous access."""

    tokens: tuple[str, ...] = _opt((), _non_empty, repr=False)
    allow_anonymous: bool = False


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """``[dashboard]``: the admin web UI."""

    enabled: bool = True
    session_ttl_hours: float = _opt(12.0, _positive)
    # Live-feed WebSockets (/api/ws) one session may hold open, and all sessions together; each
    # costs memory and a share of every logged call's fan-out. Past either, 429 / 503.
    max_live_feeds_per_session: int = _opt(8, _between(1, 1000))
    max_live_feeds: int = _opt(64, _between(1, 10_000))


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``[limits]``: request rate limits (0 = unlimited)."""

    global_requests_per_minute: int = _opt(0, _non_negative)
    default_client_requests_per_minute: int = _opt(60, _non_negative)
    # Tokens a call without max_tokens/max_completion_tokens reserves for its answer from its
    # client's tokens-per-minute budget, beside its prompt's estimate (settled after the call).
    default_reserved_completion_tokens: int = _opt(1024, _non_negative)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """``[logging]``: request log retention and shape."""

    retention_days: int = _opt(90, _non_negative)
    store_bodies: bool = False
    # false: no row per call in llm_requests (the hourly totals in usage_hourly are still kept)
    record_requests: bool = True
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True)
class ImagesConfig:
    """``[images]``: limits on image URLs fetched on behalf of clients."""

    max_bytes: int = _opt(20_000_000, _positive)
    fetch_timeout_s: float = _opt(10.0, _positive)
    allow_private_networks: bool = False
    # Memory held by fetched images until their upstream call has them, counted as base64 (4/3
    # of the bytes): over it a call is refused with 503, over a client's share with 429.
    max_bytes_in_flight: int = _opt(256_000_000, _positive)
    max_bytes_in_flight_per_client: int = _opt(80_000_000, _positive)
    # Image fetches running at once; a client waits for its own share of them.
    max_concurrent_fetches: int = _opt(16, _positive)
    max_concurrent_fetches_per_client: int = _opt(4, _positive)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """``[providers.NAME]`` with the API key already resolved."""

    name: str
    enabled: bool
    base_url: str
    api_key: str | None = field(repr=False)
    api_key_source: str | None  # e.g. "config file", "$OPENAI_API_KEY", "credential openai_api_key"
    # Origins besides base_url's that the key may be sent to (a dashboard base_url override must
    # name one of them): see proxy.origins. File only, never the dashboard.
    allowed_base_urls: tuple[str, ...] = _opt((), _base_urls)
    timeout_s: float = _opt(300.0, _positive)
    connect_timeout_s: float = _opt(10.0, _positive)
    max_concurrency: int = _opt(256, _positive)
    breaker_failures: int = _opt(5, _positive)
    breaker_cooldown_s: float = _opt(30.0, _non_negative)
    latency_ms: float = _opt(0.0, _non_negative)  # mock only
    chunk_count: int = _opt(0, _non_negative)  # mock only; 0 = one chunk per word


@dataclass(frozen=True, slots=True)
class ModelAlias:
    """``[models.NAME]``: a client-visible model name mapped to a provider's model."""

    name: str
    provider: str = field(metadata={"check": _one_of(*PROVIDER_NAMES)})
    model: str = field(metadata={"check": _non_empty})
    fallbacks: tuple[str, ...] = _opt((), _non_empty)
    input_per_mtok: float | None = _opt(None, _non_negative)
    output_per_mtok: float | None = _opt(None, _non_negative)
    cached_input_per_mtok: float | None = _opt(None, _non_negative)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole effective configuration."""

    server: ServerConfig
    auth: AuthConfig
    dashboard: DashboardConfig
    limits: LimitsConfig
    logging: LoggingConfig
    images: ImagesConfig
    providers: Mapping[str, ProviderConfig]
    models: Mapping[str, ModelAlias]
    fallbacks: Mapping[str, tuple[str, ...]]
    source: str

    def enabled_providers(self) -> tuple[ProviderConfig, ...]:
        """The enabled providers, in :data:`PROVIDER_NAMES` order."""
        return tuple(p for p in self.providers.values() if p.enabled)


# ---------------------------------------------------------------------------------------------
# Schema, read off the dataclasses

_KINDS: dict[str, Callable[[object], bool]] = {
    "an integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "a number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "a boolean": lambda v: isinstance(v, bool),
    "a string": lambda v: isinstance(v, str),
    "a list of strings": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
}
_KIND_OF_TYPE: dict[object, str] = {
    int: "an integer",
    float: "a number",
    float | None: "a number",
    bool: "a boolean",
    str: "a string",
    tuple[str, ...]: "a list of strings",
}


@dataclass(frozen=True, slots=True)
class _Field:
    """One key a table accepts: its kind (a key of ``_KINDS``), its check, whether required."""

    key: str
    kind: str
    check: _Check | None = None
    required: bool = False

    def convert(self, value: Any, where: str, source: str) -> Any:
        """Type-check, normalize (int -> float, list -> tuple) and check ``value``."""
        if not _KINDS[self.kind](value):
            raise _error(source, f"'{where}' must be {self.kind}, got {_describe(value)}")
        if self.kind == "a number":
            value = float(value)
        elif self.kind == "a list of strings":
            value = tuple(value)
        problem = self.check(value) if self.check else None
        if problem:
            raise _error(source, f"'{where}' {problem}")
        return value


def _schema(cls: type[Any], *skip: str) -> dict[str, _Field]:
    """The keys a TOML table for ``cls`` accepts, in field order."""
    hints = get_type_hints(cls)
    schema: dict[str, _Field] = {}
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            hint, check = hints[f.name], f.metadata.get("check")
            if get_origin(hint) is Literal:
                hint, check = str, _one_of(*get_args(hint))
            schema[f.name] = _Field(f.name, _KIND_OF_TYPE[hint], check, f.default is MISSING)
    return schema


_SECTIONS: dict[str, type[Any]] = {
    "server": ServerConfig,
    "auth": AuthConfig,
    "dashboard": DashboardConfig,
    "limits": LimitsConfig,
    "logging": LoggingConfig,
    "images": ImagesConfig,
}
_SCHEMAS = {name: _schema(cls) for name, cls in _SECTIONS.items()}
_TOP_LEVEL = (*_SECTIONS, "providers", "models", "fallbacks")

# keys whose file form differs from the resolved ProviderConfig field
_PROVIDER_KEYS = {
    "enabled": _Field("enabled", "a boolean"),
    "base_url": _Field("base_url", "a string", _http_url),
    "api_key": _Field("api_key", "a string", _non_empty),
    "api_key_env": _Field("api_key_env", "a string", _non_empty),
}
_TUNING = _schema(ProviderConfig, "name", "api_key_source", *_PROVIDER_KEYS)
_MOCK_ONLY = ("latency_ms", "chunk_count")
_PROVIDER_SCHEMA = {**_PROVIDER_KEYS, **{k: v for k, v in _TUNING.items() if k not in _MOCK_ONLY}}
# mock answers in-process, so its base_url is only a label
_MOCK_SCHEMA = {**_PROVIDER_KEYS, **_TUNING, "base_url": _Field("base_url", "a string", _non_empty)}
_MODEL_SCHEMA = _schema(ModelAlias, "name")
_FALLBACK_LIST = _Field("", "a list of strings", _non_empty)


# ---------------------------------------------------------------------------------------------
# Parsing


def _error(source: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {message}")


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"{'integer' if isinstance(value, int) else 'float'} {value!r}"
    if isinstance(value, str):
        return f"string {json.dumps(value[:60])}"
    if isinstance(value, list | dict):
        return "array" if isinstance(value, list) else "table"
    return type(value).__name__  # tomllib's dates and times


def _key(part: str) -> str:
    """A TOML key segment: bare when possible, else quoted."""
    return part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else _toml_str(part)


def _table(value: object, where: str, source: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _error(source, f"'{where}' must be a table, got {_describe(value)}")
    return value


def _fields(
    table: Mapping[str, Any], schema: Mapping[str, _Field], where: str, source: str
) -> dict[str, Any]:
    """Validate one TOML table against ``schema``."""
    for key in table:
        if key not in schema:
            raise _error(source, f"unknown key '{where}.{_key(key)}'")
    for key, spec in schema.items():
        if spec.required and key not in table:
            raise _error(source, f"missing required key '{where}.{key}'")
    return {k: schema[k].convert(v, f"{where}.{_key(k)}", source) for k, v in table.items()}


def _resolve_database(path: str, environ: Mapping[str, str]) -> str:
    if path == ":memory:":  # SQLite's in-memory database is not a file name
        return path
    base = environ.get("STATE_DIRECTORY", "").split(":")[0] or os.getcwd()
    return os.path.abspath(os.path.join(base, path))


def _key_variables(name: str, raw: Mapping[str, Any]) -> tuple[str, ...]:
    return (raw["api_key_env"],) if "api_key_env" in raw else _PROVIDER_DEFAULTS[name][1]


def _resolve_key(
    name: str, raw: Mapping[str, Any], environ: Mapping[str, str], source: str
) -> tuple[str | None, str | None]:
    """The API key and where it came from: the file, then the environment, then systemd."""
    if "api_key" in raw:
        return raw["api_key"], "config file"
    for var in _key_variables(name, raw):
        if environ.get(var):
            return environ[var], f"${var}"
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        if not os.path.isdir(directory):
            # systemd sets it for LoadCredential=; pointing nowhere, every key there is missing.
            raise _error(
                source,
                f"$CREDENTIALS_DIRECTORY is {directory}, which is not a directory (systemd sets "
                "it for LoadCredential=; outside systemd leave it unset)",
            )
        path = Path(directory) / f"{name}_api_key"
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            secret = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise _error(source, f"cannot read credential {path}: {exc}") from exc
        if secret:
            return secret, f"credential {name}_api_key"
    return None, None


def _parse_providers(
    data: Mapping[str, Any], environ: Mapping[str, str], source: str
) -> dict[str, ProviderConfig]:
    for name in data:
        if name not in PROVIDER_NAMES:
            known = ", ".join(PROVIDER_NAMES)
            raise _error(source, f"unknown provider '{name}' (known: {known})")
    raws: dict[str, dict[str, Any]] = {}
    for name in PROVIDER_NAMES:
        where = f"providers.{name}"
        schema = _MOCK_SCHEMA if name == "mock" else _PROVIDER_SCHEMA
        raws[name] = _fields(_table(data.get(name, {}), where, source), schema, where, source)
        if "api_key" in raws[name] and "api_key_env" in raws[name]:
            raise _error(source, f"'{where}.api_key' and '{where}.api_key_env' are both set")
    keys = {name: _resolve_key(name, raws[name], environ, source) for name in PROVIDER_NAMES}
    any_keyed = any(keys[name][0] is not None for name in KEYED_PROVIDERS)
    providers: dict[str, ProviderConfig] = {}
    for name, raw in raws.items():
        api_key, key_source = keys[name]
        if name in KEYED_PROVIDERS:
            enabled = raw.pop("enabled", api_key is not None)
            if enabled and api_key is None:
                places = [
                    f"'providers.{name}.api_key'",
                    *map("${}".format, _key_variables(name, raw)),
                ]
                raise _error(
                    source,
                    f"'providers.{name}.enabled' is true but no API key was found: set "
                    f"{', '.join(places)} or the systemd credential {name}_api_key",
                )
        else:
            enabled = raw.pop("enabled", name == "ollama" or not any_keyed)
        raw.pop("api_key", None)
        raw.pop("api_key_env", None)
        base_url = raw.pop("base_url", _PROVIDER_DEFAULTS[name][0])
        providers[name] = ProviderConfig(name, enabled, base_url, api_key, key_source, **raw)
    return providers


def _parse_models(data: Mapping[str, Any], source: str) -> dict[str, ModelAlias]:
    models: dict[str, ModelAlias] = {}
    for name, value in data.items():
        where = f"models.{_key(name)}"
        models[name] = ModelAlias(
            name, **_fields(_table(value, where, source), _MODEL_SCHEMA, where, source)
        )
    return models


def parse_config(data: Mapping[str, Any], *, source: str, environ: Mapping[str, str]) -> Config:
    """Validate parsed TOML ``data`` into a :class:`Config`; ``source`` prefixes every error."""
    for section in data:
        if section not in _TOP_LEVEL:
            raise _error(source, f"unknown section '{section}'")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        values = _fields(_table(data.get(name, {}), name, source), _SCHEMAS[name], name, source)
        if cls is ServerConfig:
            values["database"] = _resolve_database(values.get("database", "llm-proxy.db"), environ)
        sections[name] = cls(**values)
    _check_images(sections["images"], source)
    fallbacks = {
        name: _FALLBACK_LIST.convert(value, f"fallbacks.{_key(name)}", source)
        for name, value in _table(data.get("fallbacks", {}), "fallbacks", source).items()
    }
    providers = _parse_providers(
        _table(data.get("providers", {}), "providers", source), environ, source
    )
    models = _parse_models(_table(data.get("models", {}), "models", source), source)
    return Config(
        **sections,
        providers=MappingProxyType(providers),
        models=MappingProxyType(models),
        fallbacks=MappingProxyType(fallbacks),
        source=source,
    )


def _check_images(images: ImagesConfig, source: str) -> None:
    """The ``[images]`` limits that only make sense together."""
    # One image of max_bytes, as the base64 it is held as, must fit in a client's share, or an
    # image the size limit allows could never be used.
    one_image = -(-images.max_bytes // 3) * 4
    if images.max_bytes_in_flight_per_client < one_image:
        raise _error(
            source,
            f"'images.max_bytes_in_flight_per_client' must hold one image of 'images.max_bytes' "
            f"as base64 (4/3 of it): at least {one_image}, got "
            f"{images.max_bytes_in_flight_per_client}",
        )
    if images.max_bytes_in_flight < images.max_bytes_in_flight_per_client:
        raise _error(
            source,
            "'images.max_bytes_in_flight' must not be below "
            "'images.max_bytes_in_flight_per_client'",
        )
    if images.max_concurrent_fetches < images.max_concurrent_fetches_per_client:
        raise _error(
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
        raise _error(source, "file not found") from exc
    except OSError as exc:
        raise _error(source, f"cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise _error(source, f"invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise _error(source, f"invalid TOML: not UTF-8 ({exc.reason})") from exc
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
        key: _SCHEMAS["server"][key].convert(value, f"--{key}", "command line")
        for key, value in flags.items()
        if value is not None
    }
    if "database" in changes:
        env: Mapping[str, str] = os.environ if environ is None else environ
        changes["database"] = _resolve_database(changes["database"], env)
    return dataclasses.replace(config, server=dataclasses.replace(config.server, **changes))


# ---------------------------------------------------------------------------------------------
# Rendering


def mask_secret(secret: str) -> str:
    """Show a secret as its first 3 and last 4 characters; short ones as "…" only."""
    return "…" if len(secret) < 12 else f"{secret[:3]}…{secret[-4:]}"


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _toml_str(text: str) -> str:
    escaped = (
        _ESCAPES.get(ch) or (f"\\u{ord(ch):04x}" if ch < " " or ch == "\x7f" else ch) for ch in text
    )
    return '"' + "".join(escaped) + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)  # int or float; repr of inf/nan is TOML too


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
                lines.append(f"{key} = {_toml_value(value)}")

    for name, cls in _SECTIONS.items():
        section = getattr(config, name)
        if cls is AuthConfig:
            section = dataclasses.replace(section, tokens=tuple(map(mask_secret, section.tokens)))
        table(f"[{name}]", section, _SCHEMAS[name])
    for name, provider in config.providers.items():
        schema = _MOCK_SCHEMA if name == "mock" else _PROVIDER_SCHEMA
        table(f"[providers.{name}]", provider, (k for k in schema if not k.startswith("api_key")))
        if provider.api_key is None:
            if name in KEYED_PROVIDERS:
                lines.append("# no API key")
        else:
            masked = _toml_str(mask_secret(provider.api_key))
            lines.append(f"api_key = {masked}  # from {_one_line(provider.api_key_source or '?')}")
    for alias in config.models.values():
        table(f"[models.{_key(alias.name)}]", alias, _MODEL_SCHEMA)
    if config.fallbacks:
        lines += ["", "[fallbacks]"]
        lines += [f"{_key(k)} = {_toml_value(v)}" for k, v in config.fallbacks.items()]
    return "\n".join(lines) + "\n"
