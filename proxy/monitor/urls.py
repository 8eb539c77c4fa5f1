"""The feed's URL: made from the config, checked, shown, and the sign-in address beside it.

The session token travels only in the ``Authorization`` header (the feed refuses one in the URL),
so a URL carrying credentials or a query is refused, and a URL is printed without them. A plain
``ws://`` URL to another machine is flagged: the session would cross the network in clear. The
dashboard's address is accepted too: ``http://host:8080`` is the feed ``ws://host:8080/api/ws``,
``https://host/prefix`` is ``wss://host/prefix/api/ws``.
"""

from __future__ import annotations

import urllib.parse
from typing import Final

from proxy.monitor.errors import MonitorError

DEFAULT_URL: Final = "ws://127.0.0.1:8080/api/ws"
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def url_from_config(host: str, port: int) -> str:
    """The feed's URL on a server listening on ``host``:``port`` (a wildcard address means this
    machine)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{port}/api/ws"


FEED_PATH: Final = "/api/ws"
_FEED_SCHEMES: Final = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def check_url(url: str) -> str:
    """The feed's ws:// or wss:// URL for ``url``: the feed's own, or the gateway's http(s)://
    address (``/api/ws`` added to a URL that names no other path); MonitorError for any other
    scheme, or a URL with secrets in it."""
    parts = urllib.parse.urlsplit(url)
    scheme = _FEED_SCHEMES.get(parts.scheme)
    try:
        host = parts.hostname
        parts.port  # noqa: B018 (a port that is no number raises here, not when connecting)
    except ValueError:
        host = None
    if scheme is None or not host:
        raise MonitorError(
            "--url must be the gateway's address (http://HOST:PORT, https://…) or its feed"
            f" (ws://HOST:PORT/api/ws, wss://…), got {shown_url(url)}"
        )
    if parts.query or parts.username or parts.password:
        raise MonitorError(
            "--url must not carry credentials or a query: the token goes in a header"
            " (--token, $LLM_PROXY_TOKEN or --user)"
        )
    path = parts.path.rstrip("/")
    if not path.endswith(FEED_PATH) and (parts.scheme in ("http", "https") or not path):
        path += FEED_PATH
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


def shown_url(url: str) -> str:
    """``url`` as it may be printed: no user info, no query."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def login_url(ws_url: str) -> str:
    """``POST /api/auth/login`` on the server of ``ws_url`` (same prefix, http(s))."""
    parts = urllib.parse.urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path
    prefix = path[: -len("/api/ws")] if path.endswith("/api/ws") else ""
    return urllib.parse.urlunsplit((scheme, parts.netloc, prefix + "/api/auth/login", "", ""))


def is_plaintext_remote(url: str) -> bool:
    """Whether credentials for ``url`` would cross the network unencrypted."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "ws" and (parts.hostname or "") not in LOOPBACK_HOSTS
