"""Where a provider's API key (and the Redis URL) comes from: the config file, the environment,
systemd credentials.

Keys are resolved while the config is parsed, so the rest of the gateway only sees a final
``ProviderConfig.api_key`` and the place it came from (``api_key_source``, shown masked by
:func:`proxy.config.render.render_config`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proxy.config.schema import PROVIDER_DEFAULTS, config_error

__all__ = ["key_variables", "read_credential", "resolve_key"]


def key_variables(name: str, raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The environment variables tried for provider ``name``'s key, in order."""
    return (raw["api_key_env"],) if "api_key_env" in raw else PROVIDER_DEFAULTS[name][1]


def resolve_key(
    name: str, raw: Mapping[str, Any], environ: Mapping[str, str], source: str
) -> tuple[str | None, str | None]:
    """The API key and where it came from: the file, then the environment, then systemd."""
    if "api_key" in raw:
        return raw["api_key"], "config file"
    for var in key_variables(name, raw):
        if environ.get(var):
            return environ[var], f"${var}"
    secret = read_credential(f"{name}_api_key", environ, source)
    if secret:
        return secret, f"credential {name}_api_key"
    return None, None


def read_credential(name: str, environ: Mapping[str, str], source: str) -> str | None:
    """The systemd credential ``name`` (LoadCredential=), stripped; None when there is none."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    if not os.path.isdir(directory):
        # systemd sets it for LoadCredential=; pointing nowhere, every credential is missing.
        raise config_error(
            source,
            f"$CREDENTIALS_DIRECTORY is {directory}, which is not a directory (systemd sets "
            "it for LoadCredential=; outside systemd leave it unset)",
        )
    path = Path(directory) / name
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise config_error(source, f"cannot read credential {path}: {exc}") from exc
    return secret or None
