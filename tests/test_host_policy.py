"""The Host policy of ``proxy.hosts``: parsing, which settings check, matching, config entries."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config import ConfigError, parse_config
from proxy.hosts import HostPolicy, host_policy, is_loopback_bind, split_host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.com", ("example.com", None)),
        ("Example.COM.:8080", ("example.com", 8080)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::1]", ("::1", None)),
        ("[0:0::1]", ("::1", None)),
        ("", None),
        ("example.com:", None),
        ("example.com:99999", None),
        ("example.com:8o", None),
        ("::1", None),
        ("[::1", None),
        ("[::1]x", None),
        ("[example.com]", None),
        ("ex ample.com", None),
        ("user@example.com", None),
        ("example.com/path", None),
        (".", None),
        ("a..b", None),
        ("ex\u00e4mple.com", None),
    ],
)
def test_split_host(value: str, expected: tuple[str, int | None] | None) -> None:
    assert split_host(value) == expected


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("::1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.1", False),
        ("gateway.internal", False),
    ],
)
def test_loopback_binds(bind: str, loopback: bool) -> None:
    assert is_loopback_bind(bind) is loopback


def policy(**options: Any) -> HostPolicy | None:
    values: dict[str, Any] = {"allowed_hosts": (), "bind_host": "127.0.0.1", "proxy_hops": 0}
    return host_policy(**(values | options))


def test_which_settings_check_hosts() -> None:
    assert policy() is not None  # loopback, nothing forwarded
    assert policy(bind_host="::1") is not None
    assert policy(bind_host="0.0.0.0") is None
    assert policy(proxy_hops=1) is None
    assert policy(allowed_hosts=("*",)) is None
    assert policy(allowed_hosts=("gw.example", "*")) is None
    assert policy(allowed_hosts=("gw.example",), bind_host="0.0.0.0") is not None
    assert policy(allowed_hosts=("gw.example",), proxy_hops=2) is not None


def test_refusals_name_the_offending_value() -> None:
    checker = policy(allowed_hosts=("gw.example",), proxy_hops=1)
    assert checker is not None

    def refused(*headers: tuple[bytes, bytes]) -> str | None:
        return checker.refused_host(list(headers))

    assert refused((b"host", b"gw.example")) is None
    assert refused((b"host", b"evil.example:1")) == "evil.example:1"
    assert refused((b"host", b"gw.example"), (b"host", b"evil.example")) == "evil.example"
    assert refused((b"host", b"127.0.0.1"), (b"x-forwarded-host", b"evil.example")) == (
        "evil.example"
    )
    # Two hops: the second value from the right is the one the outer proxy saw.
    two = policy(allowed_hosts=("gw.example",), proxy_hops=2)
    assert two is not None
    forwarded = (b"x-forwarded-host", b"gw.example, inner.proxy")
    assert two.refused_host([(b"host", b"10.0.0.2"), forwarded]) is None


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("", "must not contain empty strings"),
        ("https://gw.example", "a host name"),
        ("gw.example:8443", "without a port"),
        ("gw.example/path", "a host name"),
        ("*.", "a host name"),
        ("*gw.example", "a host name"),
        ("a.*.example", "a host name"),
        ("gw\u00e4.example", "xn--"),
        (".gw.example", "*.gw.example"),
    ],
)
def test_bad_entries_are_config_errors(entry: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {"allowed_hosts": [entry]}}, source="t.toml", environ={})
    message = str(caught.value)
    assert "server.allowed_hosts" in message, message
    assert complaint in message, message


def test_entries_are_compared_like_hosts() -> None:
    checker = policy(allowed_hosts=("GW.Example.", "*.Corp.Example", "[::1]"))
    assert checker is not None
    for host in (b"gw.example", b"GW.EXAMPLE.:1", b"a.corp.example", b"[::1]:8080"):
        assert checker.refused_host([(b"host", host)]) is None, host
    assert checker.refused_host([(b"host", b"corp.example")]) == "corp.example"
