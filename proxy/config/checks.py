"""The value checks a configuration key may carry: each returns its complaint or None.

A check says what is wrong in words that follow the key's name in the error ("must be positive,
got 0"), so the schema in :mod:`proxy.config.schema` declares each key's rule once, in its field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from proxy.hosts import entry_problem
from proxy.origins import origin_of

__all__ = [
    "Check",
    "absolute_path",
    "api_version",
    "base_urls",
    "between",
    "host_entries",
    "http_url",
    "non_empty",
    "non_negative",
    "one_of",
    "positive",
    "redis_url",
    "storage_url",
]

Check = Callable[[Any], str | None]


def between(lo: int, hi: int) -> Check:
    """Within ``lo`` and ``hi``, both included."""
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"


def positive(v: float) -> str | None:
    """Above zero."""
    return None if v > 0 else f"must be positive, got {v}"


def non_negative(v: float) -> str | None:
    """Zero or above."""
    return None if v >= 0 else f"must not be negative, got {v}"


def non_empty(v: str | tuple[str, ...]) -> str | None:
    """A string that is not empty, or a list without an empty string."""
    if isinstance(v, tuple):
        return "must not contain empty strings" if "" in v else None
    return None if v else "must not be empty"


def one_of(*choices: str) -> Check:
    """One of ``choices``."""
    allowed = ", ".join(json.dumps(c) for c in choices)
    return lambda v: None if v in choices else f"must be one of {allowed}, got {json.dumps(v)}"


def http_url(v: str) -> str | None:
    """An http:// or https:// URL that the upstream transport can parse."""
    parts = urlsplit(v)
    if parts.scheme in ("http", "https") and parts.netloc:
        try:
            origin_of(v)  # as the upstream transport parses it (a port out of range, ...)
        except ValueError as exc:
            return str(exc)
        return None
    return f"must be an http:// or https:// URL, got {json.dumps(v)}"


def base_urls(v: tuple[str, ...]) -> str | None:
    """Plain base URLs: only their origin counts, so nothing else may hide in them."""
    for url in v:
        if not url:
            return "must not contain empty strings"
        problem = http_url(url)
        if problem:
            return problem
        parts = urlsplit(url)
        if "@" in parts.netloc:  # not echoed: it may hold a password
            return "must not contain a user name or password"
        if parts.query or parts.fragment:
            return f"must not contain a query or fragment, got {json.dumps(url)}"
    return None


def host_entries(v: tuple[str, ...]) -> str | None:
    """``server.allowed_hosts`` entries as :mod:`proxy.hosts` reads them."""
    return next(filter(None, map(entry_problem, v)), None)


_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")


def api_version(v: str) -> str | None:
    """A dated API version, as Anthropic names them (``2023-06-01``)."""
    if _API_VERSION.fullmatch(v):
        return None
    return f'must be a date like "2023-06-01", got {json.dumps(v)}'


def storage_url(v: str) -> str | None:
    """Empty (the SQLite file at ``server.database``), or a PostgreSQL URL as libpq reads it."""
    if not v:
        return None
    parts = urlsplit(v)
    if parts.scheme in ("postgresql", "postgres"):
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            return "has an invalid port"
        return None
    # The value may hold a password: only its scheme is echoed.
    return f"must be a postgresql:// URL, got one starting {parts.scheme!r}"


def absolute_path(v: str) -> str | None:
    """Empty (the default applies), or an absolute path: no guess about the working directory."""
    if not v or v.startswith("/"):
        return None
    return f"must be an absolute path, got {json.dumps(v)}"


def redis_url(v: str) -> str | None:
    """Empty, or a URL Redis clients open: redis://, rediss:// (TLS) or unix:// (a socket)."""
    if not v:
        return None
    parts = urlsplit(v)
    if parts.scheme in ("redis", "rediss") and parts.hostname:
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            return "has an invalid port"
        return None
    if parts.scheme == "unix" and parts.path:
        return None
    # The value may hold a password: only its scheme is echoed.
    return f"must be a redis://, rediss:// or unix:// URL, got one starting {parts.scheme!r}"
