"""Origins and the set of them a provider's key is bound to (issue 13, item 3), without a server.

Compared after normalisation (scheme and host lower-case, IDNA, default port explicit, a trailing
dot dropped), parsed as the transport parses them, so the tricks that fool a string comparison
(user info before an "@", another port, http for https) name the origin the request really goes to.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from proxy.config import ConfigError, parse_config
from proxy.origins import Origin, key_binding, origin_of

KEYS = {"openai": "sk-operator-openai-key-0123456789"}


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://api.openai.com/v1", Origin("https", "api.openai.com", 443)),
        ("HTTPS://API.OpenAI.COM/v1", Origin("https", "api.openai.com", 443)),
        ("https://api.openai.com:443/v1", Origin("https", "api.openai.com", 443)),
        ("https://api.openai.com./v1", Origin("https", "api.openai.com", 443)),
        ("http://api.openai.com/v1", Origin("http", "api.openai.com", 80)),
        ("http://127.0.0.1:11434", Origin("http", "127.0.0.1", 11434)),
        ("http://[::1]:8080/x", Origin("http", "::1", 8080)),
        ("https://BÜCHER.example/v1", Origin("https", "xn--bcher-kva.example", 443)),
        ("https://xn--bcher-kva.example", Origin("https", "xn--bcher-kva.example", 443)),
        # Everything before the last "@" is a user name: the request goes to "evil".
        ("http://api.openai.com@evil.example/", Origin("http", "evil.example", 80)),
        ("http://api.openai.com:443@evil.example:8443/", Origin("http", "evil.example", 8443)),
    ],
)
def test_origins_are_compared_after_normalisation(url: str, origin: Origin) -> None:
    assert origin_of(url) == origin
    assert origin_of(httpx.URL(url)) == origin


@pytest.mark.parametrize("url", ["ftp://example.com", "mock://local", "https://", "not a url", ""])
def test_a_url_without_an_http_origin_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        origin_of(url)


def openai_file(**extra: object) -> Any:
    data = {"providers": {"openai": {"api_key": KEYS["openai"], **extra}}}
    return parse_config(data, source="test", environ={}).providers["openai"]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.openai.com/v1", True),
        ("https://API.OPENAI.COM/other/path", True),
        ("https://api.openai.com:443/v1", True),
        ("https://api.openai.com./v1", True),
        ("http://api.openai.com/v1", False),  # http vs https: another origin, and in clear text
        ("https://api.openai.com:8443/v1", False),  # another port
        ("https://api.openai.com@evil.example/v1", False),
        ("https://evil.example/api.openai.com/v1", False),
        ("https://api.openai.com.evil.example/v1", False),
        ("https://evil.example/v1", False),
        ("ftp://api.openai.com/v1", False),
    ],
)
def test_a_key_is_bound_to_the_default_base_urls_origin(url: str, allowed: bool) -> None:
    binding = key_binding(openai_file())
    refusal = binding.refusal(url)
    assert (refusal is None) is allowed, refusal
    if not allowed:
        assert KEYS["openai"] not in str(refusal)
    if not allowed and url.startswith("http"):
        assert "[providers.openai] allowed_base_urls" in str(refusal)


def test_allowed_base_urls_add_origins_and_the_files_base_url_replaces_the_default() -> None:
    binding = key_binding(
        openai_file(
            base_url="https://gateway.corp.example/openai/v1",
            allowed_base_urls=["https://backup.corp.example:8443/v1"],
        )
    )
    assert binding.origins == (
        Origin("https", "gateway.corp.example", 443),
        Origin("https", "backup.corp.example", 8443),
    )
    assert binding.refusal("https://backup.corp.example:8443/elsewhere") is None
    assert binding.refusal("https://gateway.corp.example/v1") is None
    assert binding.refusal("https://api.openai.com/v1") is not None  # the default is not implied


def test_a_provider_without_a_key_may_go_anywhere() -> None:
    config = parse_config({}, source="test", environ={})
    assert key_binding(config.providers["ollama"]).refusal("http://10.0.0.5:11434") is None


@pytest.mark.parametrize(
    ("urls", "complaint"),
    [
        (["ftp://x.example"], "http:// or https://"),
        (["https://user:pw@x.example"], "user name or password"),
        (["https://x.example/?key=1"], "query"),
        (["https://x.example:99999"], "port"),
        ([""], "empty"),
        ("https://x.example", "list of strings"),
    ],
)
def test_allowed_base_urls_must_be_plain_base_urls(urls: object, complaint: str) -> None:
    data = {"providers": {"openai": {"api_key": KEYS["openai"], "allowed_base_urls": urls}}}
    with pytest.raises(ConfigError, match=complaint) as caught:
        parse_config(data, source="test", environ={})
    assert "providers.openai.allowed_base_urls" in str(caught.value)
