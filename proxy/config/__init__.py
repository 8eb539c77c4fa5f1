"""Configuration: the TOML file of design §5 parsed and validated into frozen types.

The dataclasses are the schema (:mod:`~proxy.config.schema`, value checks in
:mod:`~proxy.config.checks`); :mod:`~proxy.config.tables` reads the keys each table accepts off
them; :mod:`~proxy.config.parse` reads a file into a :class:`Config`, resolving provider keys
(file, environment, systemd credential: :mod:`~proxy.config.provider_keys`) so the rest of the
gateway only sees a final ``api_key``; :mod:`~proxy.config.render` masks them again. Everything
the gateway uses is importable from here.
"""

from proxy.config.parse import DEFAULTS_SOURCE, load_config, parse_config, with_overrides
from proxy.config.render import mask_secret, mask_url, render_config
from proxy.config.schema import (
    KEYED_PROVIDERS,
    PROVIDER_NAMES,
    AuthConfig,
    ClusterConfig,
    Config,
    ConfigError,
    DashboardConfig,
    ImagesConfig,
    LimitsConfig,
    LoggingConfig,
    ModelAlias,
    ProviderConfig,
    ProvidersWideConfig,
    ResponsesConfig,
    ServerConfig,
    StorageConfig,
)

__all__ = [
    "DEFAULTS_SOURCE",
    "KEYED_PROVIDERS",
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
    "ProvidersWideConfig",
    "ResponsesConfig",
    "ServerConfig",
    "StorageConfig",
    "load_config",
    "mask_secret",
    "mask_url",
    "parse_config",
    "render_config",
    "with_overrides",
]
