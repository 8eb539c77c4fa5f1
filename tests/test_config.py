"""Tests for proxy.config: parsing, validation, key resolution and rendering."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from proxy.config import (
    DEFAULTS_SOURCE,
    KEYED_PROVIDERS,
    PROVIDER_NAMES,
    Config,
    ConfigError,
    ServerConfig,
    load_config,
    mask_secret,
    parse_config,
    render_config,
    with_overrides,
)

OPENAI_KEY = "sk-proj-SECRETopenai0000wxyz"
TOKEN = "static-token-SECRET-1234"

# Every key of design §5, with non-default values, plus the keys the brief adds.
FULL = f"""
[server]
host = "0.0.0.0"
port = 9090
database = "data/proxy.db"
max_body_bytes = 1_000_000
graceful_timeout_s = 5
log_level = "debug"

[auth]
tokens = ["{TOKEN}"]
allow_anonymous = true

[dashboard]
enabled = false
session_ttl_hours = 1.5

[limits]
global_requests_per_minute = 1000
default_client_requests_per_minute = 30

[logging]
retention_days = 7
store_bodies = true
format = "json"

[responses]
retention_days = 3

[images]
max_bytes = 5_000_000
fetch_timeout_s = 3
allow_private_networks = true

[providers.openai]
enabled = true
base_url = "https://openai.example/v1"
api_key = "{OPENAI_KEY}"
timeout_s = 120
connect_timeout_s = 5
max_concurrency = 64
breaker_failures = 3
breaker_cooldown_s = 10

[providers.gemini]
api_key_env = "MY_GEMINI"

[providers.ollama]
base_url = "http://gpu-box:11434"
enabled = false

[providers.mock]
enabled = true
latency_ms = 25
chunk_count = 4

[models.fast]
provider = "openai"
model = "gpt-4o-mini"
fallbacks = ["gemini-2.5-flash"]
input_per_mtok = 0.15
output_per_mtok = 0.6
cached_input_per_mtok = 0.075

[models."gpt-4.1-cheap"]
provider = "mock"
model = "echo"

[fallbacks]
"gpt-4o" = ["gemini-2.5-pro", "deepseek-chat"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, **environ: str) -> Config:
    return load_config(write(tmp_path, text), environ=environ)


def error_of(tmp_path: Path, text: str, **environ: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=environ)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message


# ---------------------------------------------------------------------------------------------
# Defaults and sources


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert config.source == DEFAULTS_SOURCE
    assert config.server == ServerConfig(database=str(tmp_path / "llm-proxy.db"))
    assert tuple(config.providers) == PROVIDER_NAMES
    assert [p.name for p in config.enabled_providers()] == ["ollama", "mock"]
    assert not config.providers["openai"].enabled
    assert config.providers["openai"].api_key is None
    assert config.providers["mock"].base_url == "mock://local"
    assert config.providers["gemini"].base_url.startswith("https://generativelanguage")
    assert config.auth.tokens == ()
    assert config.limits.default_client_requests_per_minute == 60
    assert config.responses.retention_days == 30
    assert dict(config.models) == {}
    assert dict(config.fallbacks) == {}


def test_config_is_immutable() -> None:
    config = parse_config({}, source="x", environ={})
    with pytest.raises(TypeError):
        config.providers["foo"] = config.providers["mock"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]


def test_llm_proxy_config_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 1234\n")
    config = load_config(environ={"LLM_PROXY_CONFIG": str(path)})
    assert config.server.port == 1234
    assert config.source == str(path)


def test_explicit_path_beats_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 1234\n")
    config = load_config(path, environ={"LLM_PROXY_CONFIG": str(tmp_path / "missing.toml")})
    assert config.server.port == 1234


def test_full_example_parses(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL, MY_GEMINI="gem-key-0123456789", STATE_DIRECTORY="/srv")
    s = config.server
    assert (s.host, s.port, s.max_body_bytes, s.log_level) == ("0.0.0.0", 9090, 1_000_000, "debug")
    assert s.database == "/srv/data/proxy.db"
    assert s.graceful_timeout_s == 5.0
    assert isinstance(s.graceful_timeout_s, float)
    assert config.auth.tokens == (TOKEN,)
    assert config.auth.allow_anonymous is True
    assert (config.dashboard.enabled, config.dashboard.session_ttl_hours) == (False, 1.5)
    assert config.limits.global_requests_per_minute == 1000
    assert config.limits.default_client_requests_per_minute == 30
    assert (config.logging.retention_days, config.logging.store_bodies) == (7, True)
    assert config.logging.format == "json"
    assert config.responses.retention_days == 3
    assert config.images.max_bytes == 5_000_000
    assert config.images.fetch_timeout_s == 3.0
    assert config.images.allow_private_networks is True

    openai = config.providers["openai"]
    assert openai.enabled
    assert openai.api_key == OPENAI_KEY
    assert openai.api_key_source == "config file"
    assert openai.base_url == "https://openai.example/v1"
    assert (openai.timeout_s, openai.connect_timeout_s) == (120.0, 5.0)
    assert (openai.max_concurrency, openai.breaker_failures) == (64, 3)
    assert openai.breaker_cooldown_s == 10.0
    gemini = config.providers["gemini"]
    assert gemini.enabled
    assert gemini.api_key == "gem-key-0123456789"
    assert gemini.api_key_source == "$MY_GEMINI"
    assert not config.providers["ollama"].enabled
    assert config.providers["ollama"].base_url == "http://gpu-box:11434"
    mock = config.providers["mock"]
    assert mock.enabled
    assert (mock.latency_ms, mock.chunk_count) == (25.0, 4)
    assert [p.name for p in config.enabled_providers()] == ["openai", "gemini", "mock"]

    fast = config.models["fast"]
    assert (fast.provider, fast.model, fast.fallbacks) == (
        "openai",
        "gpt-4o-mini",
        ("gemini-2.5-flash",),
    )
    assert (fast.input_per_mtok, fast.output_per_mtok, fast.cached_input_per_mtok) == (
        0.15,
        0.6,
        0.075,
    )
    cheap = config.models["gpt-4.1-cheap"]
    assert (cheap.name, cheap.provider, cheap.input_per_mtok) == ("gpt-4.1-cheap", "mock", None)
    assert config.fallbacks == {"gpt-4o": ("gemini-2.5-pro", "deepseek-chat")}


def test_repr_hides_secrets(tmp_path: Path) -> None:
    config = load_text(tmp_path, FULL, MY_GEMINI="gem-key-0123456789")
    text = repr(config)
    assert OPENAI_KEY not in text
    assert TOKEN not in text
    assert "gem-key-0123456789" not in text


# ---------------------------------------------------------------------------------------------
# Errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_config(path, environ={})


def test_missing_file_from_variable(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_config(environ={"LLM_PROXY_CONFIG": str(path)})


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"^{tmp_path}: cannot read"):
        load_config(tmp_path, environ={})  # a directory


def test_invalid_toml_names_line(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[server]\nport = = 1\n")
    assert "invalid TOML" in message
    assert "line 2" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nprot = 1\n", "unknown key 'server.prot'"),
        ("[serverr]\n", "unknown section 'serverr'"),
        ("top = 1\n", "unknown section 'top'"),
        ("[providers.openai]\nlatency_ms = 5\n", "unknown key 'providers.openai.latency_ms'"),
        ("[models.x]\nprovider = 'mock'\nmodel = 'm'\nprice = 1\n", "unknown key 'models.x.price'"),
        (
            "[providers.foo]\n",
            "unknown provider 'foo' "
            "(known: openai, gemini, deepseek, grok, anthropic, ollama, mock)",
        ),
        ('[server]\nport = "abc"\n', "'server.port' must be an integer, got string \"abc\""),
        ("[server]\nport = true\n", "'server.port' must be an integer, got boolean true"),
        ("[server]\nport = 80.0\n", "'server.port' must be an integer, got float 80.0"),
        ("[server]\ngraceful_timeout_s = true\n", "'server.graceful_timeout_s' must be a number"),
        ("[dashboard]\nenabled = 1\n", "'dashboard.enabled' must be a boolean, got integer 1"),
        ("[auth]\ntokens = 'abc'\n", "'auth.tokens' must be a list of strings"),
        ("[auth]\ntokens = ['a', 1]\n", "'auth.tokens' must be a list of strings, got array"),
        ("[auth]\ntokens = ['']\n", "'auth.tokens' must not contain empty strings"),
        ("server = 1\n", "'server' must be a table, got integer 1"),
        ("[server]\nport = 70000\n", "'server.port' must be between 0 and 65535, got 70000"),
        ("[server]\nport = -1\n", "'server.port' must be between 0 and 65535, got -1"),
        ("[server]\nmax_body_bytes = 0\n", "'server.max_body_bytes' must be positive, got 0"),
        ("[server]\ngraceful_timeout_s = 0\n", "'server.graceful_timeout_s' must be positive"),
        ('[server]\nlog_level = "loud"\n', "'server.log_level' must be one of"),
        ('[server]\ndatabase = ""\n', "'server.database' must not be empty"),
        ('[logging]\nformat = "xml"\n', '\'logging.format\' must be one of "text", "json"'),
        ("[logging]\nretention_days = -1\n", "'logging.retention_days' must not be negative"),
        ("[responses]\nretention_days = 0\n", "'responses.retention_days' must be positive, got 0"),
        ("[responses]\nretention_days = 1.5\n", "'responses.retention_days' must be an integer"),
        ("[responses]\nkeep = 1\n", "unknown key 'responses.keep'"),
        (
            "[limits]\nglobal_requests_per_minute = -5\n",
            "'limits.global_requests_per_minute' must not be negative, got -5",
        ),
        ("[images]\nfetch_timeout_s = -1\n", "'images.fetch_timeout_s' must be positive"),
        (
            "[images]\nmax_bytes_in_flight_per_client = 20_000_000\n",
            "'images.max_bytes_in_flight_per_client' must hold one image of 'images.max_bytes' "
            "as base64 (4/3 of it): at least 26666668, got 20000000",
        ),
        (
            "[images]\nmax_bytes_in_flight = 50_000_000\n",
            "'images.max_bytes_in_flight' must not be below "
            "'images.max_bytes_in_flight_per_client'",
        ),
        (
            "[images]\nmax_concurrent_fetches = 2\n",
            "'images.max_concurrent_fetches' must not be below "
            "'images.max_concurrent_fetches_per_client'",
        ),
        ("[images]\nmax_concurrent_fetches = 0\n", "'images.max_concurrent_fetches' must be"),
        ("[providers.openai]\ntimeout_s = 0\n", "'providers.openai.timeout_s' must be positive"),
        (
            "[providers.grok]\nmax_concurrency = 0\n",
            "'providers.grok.max_concurrency' must be positive",
        ),
        (
            "[providers.ollama]\nbreaker_failures = 0\n",
            "'providers.ollama.breaker_failures' must be positive",
        ),
        ("[providers.mock]\nlatency_ms = -1\n", "'providers.mock.latency_ms' must not be negative"),
        (
            "[providers.mock]\nchunk_count = 1.5\n",
            "'providers.mock.chunk_count' must be an integer",
        ),
        (
            '[providers.ollama]\nbase_url = "ftp://x"\n',
            "'providers.ollama.base_url' must be an http:// or https:// URL, got \"ftp://x\"",
        ),
        ('[providers.openai]\nbase_url = "https://"\n', "'providers.openai.base_url' must be"),
        ("[providers]\nopenai = 1\n", "'providers.openai' must be a table"),
        ('[models.x]\nmodel = "m"\n', "missing required key 'models.x.provider'"),
        ('[models.x]\nprovider = "mock"\n', "missing required key 'models.x.model'"),
        (
            '[models.x]\nprovider = "nope"\nmodel = "m"\n',
            "'models.x.provider' must be one of \"openai\",",
        ),
        ('[models.x]\nprovider = "mock"\nmodel = ""\n', "'models.x.model' must not be empty"),
        (
            '[models.x]\nprovider = "mock"\nmodel = "m"\ninput_per_mtok = -1\n',
            "'models.x.input_per_mtok' must not be negative",
        ),
        (
            '[models."a.b"]\nprovider = "mock"\nmodel = "m"\nfallbacks = "y"\n',
            '\'models."a.b".fallbacks\' must be a list of strings, got string "y"',
        ),
        ("[models]\nx = 1\n", "'models.x' must be a table"),
        ('[fallbacks]\n"gpt-4o" = "x"\n', "'fallbacks.gpt-4o' must be a list of strings"),
        (
            '[providers.openai]\napi_key = "k"\napi_key_env = "K"\n',
            "'providers.openai.api_key' and 'providers.openai.api_key_env' are both set",
        ),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_floats_accept_integers(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[providers.mock]\nlatency_ms = 3\nbreaker_cooldown_s = 0\n")
    assert config.providers["mock"].latency_ms == 3.0
    assert config.providers["mock"].breaker_cooldown_s == 0.0


def test_mock_base_url_need_not_be_http(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[providers.mock]\nbase_url = "mock://elsewhere"\n')
    assert config.providers["mock"].base_url == "mock://elsewhere"


def test_parse_config_uses_given_source() -> None:
    with pytest.raises(ConfigError, match=r"^built-in defaults: unknown key 'server\.x'$"):
        parse_config({"server": {"x": 1}}, source=DEFAULTS_SOURCE, environ={})


# ---------------------------------------------------------------------------------------------
# Provider keys


def test_key_from_file_beats_environment(tmp_path: Path) -> None:
    config = load_text(
        tmp_path, f'[providers.openai]\napi_key = "{OPENAI_KEY}"\n', OPENAI_API_KEY="from-env"
    )
    assert config.providers["openai"].api_key == OPENAI_KEY
    assert config.providers["openai"].api_key_source == "config file"


def test_key_from_default_variable() -> None:
    config = load_config(environ={"OPENAI_API_KEY": "sk-env", "XAI_API_KEY": "xai"})
    assert config.providers["openai"].api_key == "sk-env"
    assert config.providers["openai"].api_key_source == "$OPENAI_API_KEY"
    assert config.providers["grok"].enabled
    assert config.providers["grok"].api_key_source == "$XAI_API_KEY"
    assert not config.providers["deepseek"].enabled


def test_gemini_falls_back_to_google_api_key() -> None:
    gemini = load_config(environ={"GOOGLE_API_KEY": "g"}).providers["gemini"]
    assert (gemini.api_key, gemini.api_key_source, gemini.enabled) == ("g", "$GOOGLE_API_KEY", True)
    env = {"GOOGLE_API_KEY": "g", "GEMINI_API_KEY": "first"}
    assert load_config(environ=env).providers["gemini"].api_key == "first"


def test_empty_variable_counts_as_unset() -> None:
    config = load_config(environ={"GEMINI_API_KEY": "", "GOOGLE_API_KEY": "g"})
    assert config.providers["gemini"].api_key == "g"
    config = load_config(environ={"OPENAI_API_KEY": ""})
    assert config.providers["openai"].api_key is None
    assert config.providers["mock"].enabled


def test_api_key_env_replaces_default_variable(tmp_path: Path) -> None:
    text = '[providers.openai]\napi_key_env = "OTHER"\n'
    config = load_text(tmp_path, text, OPENAI_API_KEY="ignored")
    assert config.providers["openai"].api_key is None
    config = load_text(tmp_path, text, OTHER="sk-other")
    assert config.providers["openai"].api_key_source == "$OTHER"


def test_key_from_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "deepseek_api_key").write_text("  ds-secret\n", encoding="utf-8")
    (creds / "openai_api_key").write_text("cred-openai", encoding="utf-8")
    config = load_config(
        environ={"CREDENTIALS_DIRECTORY": str(creds), "OPENAI_API_KEY": "env-openai"}
    )
    deepseek = config.providers["deepseek"]
    assert (deepseek.api_key, deepseek.enabled) == ("ds-secret", True)
    assert deepseek.api_key_source == "credential deepseek_api_key"
    assert config.providers["openai"].api_key == "env-openai"  # the environment comes first
    assert not config.providers["grok"].enabled


def test_empty_credential_file_counts_as_missing(tmp_path: Path) -> None:
    (tmp_path / "grok_api_key").write_text("\n", encoding="utf-8")
    config = load_config(environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.providers["grok"].api_key is None


def test_a_credentials_directory_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    # systemd sets it only with LoadCredential=: pointing nowhere, every key there is missing,
    # which used to start the gateway silently without them.
    nowhere = tmp_path / "gone"
    with pytest.raises(ConfigError, match=r"\$CREDENTIALS_DIRECTORY .*gone.* not a directory"):
        load_config(environ={"CREDENTIALS_DIRECTORY": str(nowhere)})


def test_mock_disabled_when_a_keyed_provider_has_a_key() -> None:
    variables = [
        "OPENAI_API_KEY",
        "GEMINI_API_KEY",
        "DEEPSEEK_API_KEY",
        "XAI_API_KEY",
        "ANTHROPIC_API_KEY",
    ]
    for name, var in zip(KEYED_PROVIDERS, variables, strict=True):
        config = load_config(environ={var: "k"})
        assert not config.providers["mock"].enabled
        assert [p.name for p in config.enabled_providers()] == [name, "ollama"]


def test_mock_can_be_enabled_explicitly(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[providers.mock]\nenabled = true\n", OPENAI_API_KEY="k")
    assert config.providers["mock"].enabled


def test_keyed_provider_can_be_disabled_with_a_key(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[providers.openai]\nenabled = false\n", OPENAI_API_KEY="k")
    assert not config.providers["openai"].enabled
    assert config.providers["mock"].enabled is False  # a key exists, even if unused


def test_enabled_without_key_is_an_error(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[providers.gemini]\nenabled = true\n")
    assert "'providers.gemini.enabled' is true but no API key was found" in message
    assert "$GEMINI_API_KEY" in message
    assert "$GOOGLE_API_KEY" in message
    assert "gemini_api_key" in message


def test_ollama_accepts_an_api_key(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[providers.ollama]\napi_key = "proxy-key"\n')
    ollama = config.providers["ollama"]
    assert (ollama.enabled, ollama.api_key, ollama.api_key_source) == (
        True,
        "proxy-key",
        "config file",
    )
    assert config.providers["mock"].enabled  # ollama's key does not count as a keyed provider


# ---------------------------------------------------------------------------------------------
# Database path and overrides


def test_database_relative_to_state_directory() -> None:
    config = load_config(environ={"STATE_DIRECTORY": "/var/lib/llm-proxy:/var/lib/other"})
    assert config.server.database == "/var/lib/llm-proxy/llm-proxy.db"


def test_absolute_database_is_kept(tmp_path: Path) -> None:
    config = load_text(tmp_path, '[server]\ndatabase = "/data/x.db"\n', STATE_DIRECTORY="/srv")
    assert config.server.database == "/data/x.db"


def test_database_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_text(tmp_path, '[server]\ndatabase = "sub/x.db"\n')
    assert config.server.database == str(tmp_path / "sub" / "x.db")
    assert os.path.isabs(config.server.database)


def test_with_overrides(tmp_path: Path) -> None:
    config = load_text(tmp_path, "[server]\nport = 9000\nlog_level = 'debug'\n")
    changed = with_overrides(
        config, host="::1", port=0, database="o.db", environ={"STATE_DIRECTORY": "/state"}
    )
    assert (changed.server.host, changed.server.port) == ("::1", 0)
    assert changed.server.database == "/state/o.db"
    assert changed.server.log_level == "debug"
    assert changed.providers is config.providers
    assert with_overrides(config) == config
    assert with_overrides(config, port=1).server.host == config.server.host


def test_with_overrides_validates() -> None:
    config = load_config(environ={})
    with pytest.raises(ConfigError, match=r"^command line: '--port' must be between 0 and 65535"):
        with_overrides(config, port=70000)


# ---------------------------------------------------------------------------------------------
# Masking and rendering


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("sk-proj-abcdef0123456789wxyz", "sk-…wxyz"),
        ("abcdefghijkl", "abc…ijkl"),
        ("abcdefghijk", "…"),
        ("", "…"),
    ],
)
def test_mask_secret(secret: str, masked: str) -> None:
    assert mask_secret(secret) == masked


def test_render_config_masks_and_round_trips(tmp_path: Path) -> None:
    environ = {"MY_GEMINI": "gem-key-0123456789", "STATE_DIRECTORY": "/srv"}
    config = load_text(tmp_path, FULL, **environ)
    text = render_config(config)
    assert OPENAI_KEY not in text
    assert TOKEN not in text
    assert "gem-key-0123456789" not in text
    assert 'api_key = "sk-…wxyz"  # from config file' in text
    assert "# from $MY_GEMINI" in text

    data = tomllib.loads(text)
    assert data["auth"]["tokens"] == [mask_secret(TOKEN)]
    again = parse_config(data, source="rendered", environ={})
    for section in ("server", "dashboard", "limits", "logging", "images"):
        assert getattr(again, section) == getattr(config, section)
    assert again.auth.allow_anonymous is True
    assert again.models == config.models
    assert again.fallbacks == config.fallbacks
    for name in PROVIDER_NAMES:
        before, after = config.providers[name], again.providers[name]
        assert after.enabled == before.enabled
        assert after.base_url == before.base_url
        assert after.timeout_s == before.timeout_s
        assert after.max_concurrency == before.max_concurrency
        assert (after.latency_ms, after.chunk_count) == (before.latency_ms, before.chunk_count)


def test_render_defaults_parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    again = parse_config(tomllib.loads(render_config(config)), source="r", environ={})
    assert [p.name for p in again.enabled_providers()] == ["ollama", "mock"]
    assert again.server == config.server


def test_render_escapes_strange_strings(tmp_path: Path) -> None:
    text = '[server]\ndatabase = "/tmp/a \\"b\\"\\\\c\\u0001.db"\n[fallbacks]\n"x y\\n" = ["\\t"]\n'
    config = load_text(tmp_path, text)
    data = tomllib.loads(render_config(config))
    assert data["server"]["database"] == config.server.database
    assert data["fallbacks"] == {"x y\n": ["\t"]}


def test_anthropic_provider_defaults_and_key_sources(tmp_path: Path) -> None:
    config = load_config(environ={"ANTHROPIC_API_KEY": "sk-ant-env"})
    anthropic = config.providers["anthropic"]
    assert (anthropic.enabled, anthropic.api_key) == (True, "sk-ant-env")
    assert anthropic.base_url == "https://api.anthropic.com"
    assert anthropic.api_version == "2023-06-01"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "anthropic_api_key").write_text("sk-ant-cred\n", encoding="utf-8")
    config = load_config(environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.providers["anthropic"].api_key_source == "credential anthropic_api_key"


def test_anthropic_api_version_is_its_own_key(tmp_path: Path) -> None:
    text = '[providers.anthropic]\napi_key = "k"\napi_version = "2026-10-21"\n'
    assert load_text(tmp_path, text).providers["anthropic"].api_version == "2026-10-21"
    assert "'providers.anthropic.api_version' must be a date" in error_of(
        tmp_path, '[providers.anthropic]\napi_version = "latest"\n'
    )
    # Only Anthropic's calls carry a version header.
    assert "unknown key 'providers.openai.api_version'" in error_of(
        tmp_path, '[providers.openai]\napi_version = "2023-06-01"\n'
    )


def test_anthropic_base_url_with_v1_is_refused_by_name(tmp_path: Path) -> None:
    message = error_of(
        tmp_path, '[providers.anthropic]\nbase_url = "https://api.anthropic.com/v1"\n'
    )
    assert "'providers.anthropic.base_url' must not end in /v1" in message
    assert "'https://api.anthropic.com'" in message
