"""Demo mode: keyless calls only with free local providers, no configured key, on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.client_directory import ClientDirectory
from actors.provider import ProviderActor
from proxy.builders import build_authenticator
from proxy.providers.registry import adapter_for
from storage.reads import ReadPool
from storage.writer import StorageWriter
from tests.conftest import make_config


def anonymous_allowed(tmp_path: Path, data: dict[str, Any]) -> bool:
    config = make_config(tmp_path, data)
    providers = {p.name: ProviderActor(p, adapter_for(p)) for p in config.enabled_providers()}
    database = config.server.database
    directory = ClientDirectory(
        ReadPool(database), StorageWriter(database), default_requests_per_minute=60
    )
    return build_authenticator(config, providers, directory).allow_anonymous


def test_demo_mode_on_loopback_with_free_providers(tmp_path: Path) -> None:
    assert anonymous_allowed(tmp_path, {"auth": {"tokens": []}})


@pytest.mark.parametrize(
    "data",
    [
        {"auth": {"tokens": []}, "server": {"host": "0.0.0.0"}},
        # Hosts unchecked on loopback: a DNS-rebinding page could use it (issue 13, item 9).
        {"auth": {"tokens": []}, "server": {"allowed_hosts": ["*"]}},
        {"auth": {"tokens": []}, "server": {"trusted_proxy_hops": 1}},
        {"auth": {"tokens": ["sk-configured-key-0123456789"]}},
        {"auth": {"tokens": []}, "providers": {"openai": {"api_key": "sk-up-0123456789abcd"}}},
    ],
)
def test_no_demo_mode_otherwise(tmp_path: Path, data: dict[str, Any]) -> None:
    assert not anonymous_allowed(tmp_path, data)
