"""``[storage] url``: where it comes from, what it selects, and that its password never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, load_config, parse_config, render_config
from storage.database import PostgresDatabase, SqliteDatabase, configured_database
from web.api.system import config_json

URL = "postgresql://llm_proxy:s3cret-pw@db.internal:5432/llm_proxy?sslmode=require"


def test_by_default_the_database_is_the_sqlite_file() -> None:
    config = load_config(environ={})
    assert config.storage.url == ""
    assert config.storage.url_source is None
    database = configured_database(config)
    assert isinstance(database, SqliteDatabase)
    assert database.path == config.server.database


def test_a_url_in_the_file_selects_postgresql() -> None:
    config = parse_config({"storage": {"url": URL}}, source="test.toml", environ={})
    assert config.storage.url_source == "config file"
    database = configured_database(config)
    assert isinstance(database, PostgresDatabase)
    assert database.url == URL
    # Where it is, for log lines: never the password.
    assert database.describe() == (
        "postgresql://llm_proxy:…@db.internal:5432/llm_proxy?sslmode=require"
    )


def test_the_environment_then_the_credential_supply_a_url_the_file_leaves_empty(
    tmp_path: Path,
) -> None:
    env = {"LLM_PROXY_STORAGE_URL": URL}
    config = parse_config({}, source="test.toml", environ=env)
    assert (config.storage.url, config.storage.url_source) == (URL, "$LLM_PROXY_STORAGE_URL")
    (tmp_path / "storage_url").write_text(URL + "\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    config = parse_config({}, source="test.toml", environ=env)
    assert (config.storage.url, config.storage.url_source) == (URL, "credential storage_url")
    # An empty credential file (as install.sh creates it) means SQLite.
    (tmp_path / "storage_url").write_text("")
    assert parse_config({}, source="test.toml", environ=env).storage.url == ""


@pytest.mark.parametrize(
    ("where", "environ"),
    [
        ({"storage": {"url": "mysql://root:hunter2@db/x"}}, {}),
        ({}, {"LLM_PROXY_STORAGE_URL": "mysql://root:hunter2@db/x"}),
        ({"storage": {"url": "postgresql://root:hunter2@db:99999/x"}}, {}),
    ],
)
def test_anything_but_a_postgresql_url_is_refused_without_echoing_it(
    where: dict[str, dict[str, str]], environ: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(where, source="test.toml", environ=environ)
    message = str(caught.value)
    assert "hunter2" not in message
    assert "postgresql://" in message or "invalid port" in message


def test_the_outage_buffer_is_bounded_both_ways() -> None:
    assert load_config(environ={}).storage.outage_buffer_records == 100_000
    for bad in (0, 999, 10_000_001):
        with pytest.raises(ConfigError, match="outage_buffer_records"):
            parse_config(
                {"storage": {"outage_buffer_records": bad}}, source="test.toml", environ={}
            )


def test_check_config_and_the_settings_page_mask_the_password() -> None:
    for url in (URL, "postgresql://app@db/llm?password=s3cret-pw&sslmode=verify-full"):
        config = parse_config({"storage": {"url": url}}, source="test.toml", environ={})
        text = render_config(config)
        assert "[storage]" in text
        assert "s3cret-pw" not in text
        shown = config_json(config)
        assert "s3cret-pw" not in str(shown)
        storage = shown["storage"]
        assert isinstance(storage, dict)
        assert storage["backend"] == "postgresql"
        assert "db" in str(storage["url"])
