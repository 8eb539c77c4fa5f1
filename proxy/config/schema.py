"""The configuration's frozen types: one dataclass per TOML table of design §5, and its error.

The dataclasses are the schema: each field's type, default and value check (in its metadata) say
what the file may contain, so a key is described once; :mod:`proxy.config.tables` reads the keys
each table accepts off them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, Literal

from proxy.config.checks import (
    Check,
    absolute_path,
    api_version,
    base_urls,
    between,
    host_entries,
    non_empty,
    non_negative,
    one_of,
    positive,
    redis_url,
    storage_url,
)

__all__ = [
    "KEYED_PROVIDERS",
    "PROVIDER_DEFAULTS",
    "PROVIDER_NAMES",
    "AuthConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DashboardConfig",
    "ImagesConfig",
    "LimitsConfig",
    "LoggingConfig",
    "ModelAlias",
    "ProviderConfig",
    "ResponsesConfig",
    "ServerConfig",
    "config_error",
]

PROVIDER_NAMES: tuple[str, ...] = (
    "openai",
    "gemini",
    "deepseek",
    "grok",
    "anthropic",
    "ollama",
    "mock",
)
KEYED_PROVIDERS: tuple[str, ...] = ("openai", "gemini", "deepseek", "grok", "anthropic")

# provider -> (default base_url, environment variables tried in order for its key)
PROVIDER_DEFAULTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "openai": ("https://api.openai.com/v1", ("OPENAI_API_KEY",)),
    "gemini": (
        "https://generativelanguage.googleapis.com/v1beta",
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    ),
    "deepseek": ("https://api.deepseek.com", ("DEEPSEEK_API_KEY",)),
    "grok": ("https://api.x.ai/v1", ("XAI_API_KEY",)),
    # Anthropic's own convention: the base without /v1 (the adapter appends /v1/messages).
    "anthropic": ("https://api.anthropic.com", ("ANTHROPIC_API_KEY",)),
    "ollama": ("http://127.0.0.1:11434", ()),
    "mock": ("mock://local", ()),
}


class ConfigError(Exception):
    """An invalid configuration; the message names the file and the dotted key."""


def config_error(source: str, message: str) -> ConfigError:
    """The error for ``message`` about the configuration read from ``source``."""
    return ConfigError(f"{source}: {message}")


def _opt(default: Any = MISSING, check: Check | None = None, *, repr: bool = True) -> Any:
    """A dataclass field whose value, when read from the file, must pass ``check``."""
    return field(default=default, repr=repr, metadata={"check": check})


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: where to listen and where the database lives."""

    host: str = _opt("127.0.0.1", non_empty)
    port: int = _opt(8080, between(0, 65535))
    database: str = _opt("llm-proxy.db", non_empty)  # absolute once parsed
    max_body_bytes: int = _opt(20_000_000, positive)
    graceful_timeout_s: float = _opt(30.0, positive)
    # How long a client may take to send its request body (a slow or lying client holds a task).
    body_timeout_s: float = _opt(60.0, positive)
    # A client that stops reading is dropped after this long with unsent data (TCP_USER_TIMEOUT):
    # hypercorn's socket writes cannot be cancelled, so it would otherwise hold a shutdown.
    stalled_client_timeout_s: float = _opt(20.0, positive)
    # A new connection must send a complete request head within this (a bare or trickling connect
    # holds a socket); a request in progress, a stream included, is never cut by it.
    header_timeout_s: float = _opt(10.0, positive)
    # An idle connection between requests is closed after this.
    keep_alive_timeout_s: float = _opt(15.0, positive)
    # Open client connections at most (0: derived from the open files limit at start). At the
    # limit the oldest idle connection is closed to make room; if none is idle, the new one is.
    max_connections: int = _opt(0, non_negative)
    # Reverse proxies in front whose X-Forwarded-For/-Proto/-Host to believe (0: none). Behind one
    # TLS proxy set 1: the dashboard then sees https (Secure cookie, Origin check) and the real
    # client address (login throttling); never set it when clients reach the gateway directly.
    trusted_proxy_hops: int = _opt(0, between(0, 10))
    # The names a request's Host may carry (DNS rebinding); addresses and localhost always pass.
    # Empty: loopback names only when bound to loopback, anything otherwise (proxy/hosts.py).
    allowed_hosts: tuple[str, ...] = _opt((), host_entries)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Processes sharing the port (SO_REUSEPORT), each a full service; more than 1 needs
    # cluster.redis_url, so that limits, sessions and changes are shared between them.
    workers: int = _opt(1, between(1, 64))


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """``[cluster]``: the Redis several gateway processes share limits, sessions and changes
    through; empty ``redis_url`` keeps everything in this one process's memory."""

    # redis://, rediss:// (TLS) or unix://; else $LLM_PROXY_REDIS_URL, else the systemd
    # credential redis_url. It may hold a password: never shown unmasked.
    redis_url: str = _opt("", redis_url, repr=False)
    # Shown in logs, metrics and the dashboard; default "<hostname>:<pid>".
    instance_name: str = ""
    # Redis unreachable: "local" serves on with per-process limits (and says so), "refuse"
    # answers 503 with retry-after until it is back.
    on_redis_down: Literal["local", "refuse"] = "local"
    # Where redis_url came from ("config file", "$LLM_PROXY_REDIS_URL", "credential redis_url").
    redis_url_source: str | None = field(default=None, metadata={"derived": True})


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """``[storage]``: where clients, users, settings and the request log live."""

    # Empty: the SQLite file at server.database. "postgresql://user@host:5432/llm_proxy": one
    # database several gateways share; else $LLM_PROXY_STORAGE_URL, else the systemd credential
    # storage_url. The password comes from the URL, $PGPASSWORD or ~/.pgpass; sslmode and the
    # other libpq parameters are honoured. Never shown unmasked.
    url: str = _opt("", storage_url, repr=False)
    # Request records held in memory while the database cannot be written; past this, newer ones
    # are dropped and counted (a log line, /metrics, the health page) instead of growing memory
    # or making callers wait.
    outage_buffer_records: int = _opt(100_000, between(1_000, 10_000_000))
    # The pg_dump that backs up a PostgreSQL database (llm-proxy backup, the dashboard). Empty:
    # pg_dump on the PATH, else the newest /usr/lib/postgresql/*/bin/pg_dump.
    pg_dump: str = _opt("", absolute_path)
    # Where url came from ("config file", "$LLM_PROXY_STORAGE_URL", "credential storage_url").
    url_source: str | None = field(default=None, metadata={"derived": True})


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """``[auth]``: static API keys and anonymous access."""

    tokens: tuple[str, ...] = _opt((), non_empty, repr=False)
    allow_anonymous: bool = False


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """``[dashboard]``: the admin web UI."""

    enabled: bool = True
    session_ttl_hours: float = _opt(12.0, positive)
    # Live-feed WebSockets (/api/ws) one session may hold open, and all sessions together; each
    # costs memory and a share of every logged call's fan-out. Past either, 429 / 503.
    max_live_feeds_per_session: int = _opt(8, between(1, 1000))
    max_live_feeds: int = _opt(64, between(1, 10_000))


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """``[limits]``: request rate limits (0 = unlimited)."""

    global_requests_per_minute: int = _opt(0, non_negative)
    default_client_requests_per_minute: int = _opt(60, non_negative)
    # Tokens a call without max_tokens/max_completion_tokens reserves for its answer from its
    # client's tokens-per-minute budget, beside its prompt's estimate (settled after the call).
    default_reserved_completion_tokens: int = _opt(1024, non_negative)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """``[logging]``: request log retention and shape."""

    retention_days: int = _opt(90, non_negative)
    store_bodies: bool = False
    # false: no row per call in llm_requests (the hourly totals in usage_hourly are still kept)
    record_requests: bool = True
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True, slots=True)
class ResponsesConfig:
    """``[responses]``: the responses the gateway stores for ``/v1/responses``."""

    # Days a stored response stays readable (GET, previous_response_id) before retention
    # deletes it; OpenAI keeps its own at least 30.
    retention_days: int = _opt(30, positive)


@dataclass(frozen=True, slots=True)
class ImagesConfig:
    """``[images]``: limits on image URLs fetched on behalf of clients."""

    max_bytes: int = _opt(20_000_000, positive)
    fetch_timeout_s: float = _opt(10.0, positive)
    allow_private_networks: bool = False
    # Memory held by fetched images until their upstream call has them, counted as base64 (4/3
    # of the bytes): over it a call is refused with 503, over a client's share with 429.
    max_bytes_in_flight: int = _opt(256_000_000, positive)
    max_bytes_in_flight_per_client: int = _opt(80_000_000, positive)
    # Image fetches running at once; a client waits for its own share of them.
    max_concurrent_fetches: int = _opt(16, positive)
    max_concurrent_fetches_per_client: int = _opt(4, positive)


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
    allowed_base_urls: tuple[str, ...] = _opt((), base_urls)
    timeout_s: float = _opt(300.0, positive)
    connect_timeout_s: float = _opt(10.0, positive)
    max_concurrency: int = _opt(256, positive)
    breaker_failures: int = _opt(5, positive)
    breaker_cooldown_s: float = _opt(30.0, non_negative)
    # anthropic only: the anthropic-version its translated calls pin (a passthrough sends the
    # client's own).
    api_version: str = _opt("2023-06-01", api_version)
    latency_ms: float = _opt(0.0, non_negative)  # mock only
    chunk_count: int = _opt(0, non_negative)  # mock only; 0 = one chunk per word


@dataclass(frozen=True, slots=True)
class ProvidersWideConfig:
    """``[providers]``' own keys: what applies to every provider (beside the NAME tables)."""

    # A provider idle longer than this (no call, no probe) gets one cheap, unbilled request to
    # its model list, so its reachability is known before a client finds out; 0 = never probe.
    reachability_probe_interval_s: float = _opt(60.0, non_negative)


@dataclass(frozen=True, slots=True)
class ModelAlias:
    """``[models.NAME]``: a client-visible model name mapped to a provider's model."""

    name: str
    provider: str = field(metadata={"check": one_of(*PROVIDER_NAMES)})
    model: str = field(metadata={"check": non_empty})
    fallbacks: tuple[str, ...] = _opt((), non_empty)
    input_per_mtok: float | None = _opt(None, non_negative)
    output_per_mtok: float | None = _opt(None, non_negative)
    cached_input_per_mtok: float | None = _opt(None, non_negative)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole effective configuration."""

    server: ServerConfig
    auth: AuthConfig
    dashboard: DashboardConfig
    limits: LimitsConfig
    logging: LoggingConfig
    images: ImagesConfig
    responses: ResponsesConfig
    cluster: ClusterConfig
    storage: StorageConfig
    providers: Mapping[str, ProviderConfig]
    models: Mapping[str, ModelAlias]
    fallbacks: Mapping[str, tuple[str, ...]]
    source: str
    provider_wide: ProvidersWideConfig = ProvidersWideConfig()

    def enabled_providers(self) -> tuple[ProviderConfig, ...]:
        """The enabled providers, in :data:`PROVIDER_NAMES` order."""
        return tuple(p for p in self.providers.values() if p.enabled)
