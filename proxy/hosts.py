"""Which ``Host`` a request may name: the gateway's defence against DNS rebinding.

A page on ``rebind.attacker.example`` can point its own name at 127.0.0.1 (or at any address the
visitor's browser reaches) and then call the gateway as if it were same-origin: the browser
sends no CORS preflight and reads every answer. What gives such a page away is the ``Host``
header, which a browser always sets to the name it resolved and which no page can forge. So a
request is refused (400, ``host_not_allowed``) when a ``Host`` names something the gateway does
not answer to. The cases, as decided:

* **Always accepted**, whatever ``server.allowed_hosts`` says: an IP address literal
  (``127.0.0.1``, ``[::1]``, ``192.0.2.10``), ``localhost`` and names under ``.localhost``
  (RFC 6761: browsers resolve them to loopback themselves). None of them can be a rebound
  name: a page served under them comes from this gateway. A request without ``Host``
  (HTTP/1.0) is accepted too: browsers always send one. This is what Vite and
  webpack-dev-server, which closed the same hole, accept by default.
* **Bound to loopback** (``127.0.0.1``, ``::1``, ``localhost``), nothing forwarded, key unset:
  only the above, so ``curl``, the SDKs and the dashboard at ``http://127.0.0.1:8080`` or
  ``http://localhost:8080`` work and a rebound name does not. This is the case that matters
  most: demo mode lets loopback callers in without a key.
* **Bound to another address or ``0.0.0.0``/``::``**, key unset: every ``Host`` is accepted,
  and the start logs one warning asking for the key. The gateway cannot know the names clients
  use (DNS, /etc/hosts, a load balancer), so refusing them by default would break every
  existing deployment on upgrade, while the gain is small there: on such an address every call
  needs a key or a dashboard session anyway (demo mode is loopback only), which a rebound page
  does not have.
* **Behind a trusted proxy** (``server.trusted_proxy_hops`` > 0), key unset: the proxy is the
  front door and its virtual hosts (``server_name``) decide which names reach the gateway, so
  "whatever the trusted proxy forwards" is accepted, with the same warning. Demo mode is off
  whenever hosts are not checked.
* **``allowed_hosts`` set** (e.g. ``["llm.example.com", "*.corp.example"]``): a ``Host`` must
  be always-accepted or match an entry: a name exactly, or ``*.suffix`` for any name under
  ``suffix`` (at any depth, not ``suffix`` itself). With trusted proxy hops the value of
  ``X-Forwarded-Host`` that the trusted proxy set (the same one the dashboard believes,
  counted from the right like ``X-Forwarded-For``) must match as well. Both are checked: the
  forwarded one catches a rebound name that reached the proxy (nginx forwards its upstream
  address as ``Host``), the raw one a page that reaches the gateway directly and adds a
  made-up ``X-Forwarded-Host``.
* **``["*"]``**: every ``Host`` is accepted, silently (the operator's explicit choice).

Names are compared case-insensitively with one trailing dot removed; the port is ignored (the
listening socket fixes it). Entries are host names (``xn--`` form for international names) or
addresses, without scheme, port or path; the config check says so when one is not.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Final

ANY_HOST: Final = "*"
CONFIG_KEY: Final = "server.allowed_hosts"

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_MAX_CACHED = 256


def _host_name(text: str) -> str | None:
    """``text`` as a lower-case DNS name without its trailing dot; None when it is not one."""
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > 253 or not name.isascii():
        return None
    if all(_LABEL.fullmatch(label) for label in name.split(".")):
        return name
    return None


def _address(text: str) -> str | None:
    """``text`` as a compressed IP address (no brackets); None when it is not one."""
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


def split_host(value: str) -> tuple[str, int | None] | None:
    """A ``Host`` value as (name or address, port), normalised; None when it is malformed."""
    if value.startswith("["):
        end = value.find("]")
        address = _address(value[1:end]) if end > 0 else None
        if address is None or ":" not in address:
            return None
        rest = value[end + 1 :]
        if not rest:
            return address, None
        port = _port(rest[1:]) if rest.startswith(":") else None
        return (address, port) if port is not None else None
    host, colon, port_text = value.partition(":")
    port = _port(port_text) if colon else None
    if colon and port is None:
        return None
    address = _address(host)
    if address is not None:
        return address, port
    name = _host_name(host)
    return (name, port) if name is not None else None


def _port(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        return None
    port = int(text)
    return port if port <= 65535 else None


def is_loopback_bind(host: str) -> bool:
    """Whether listening on ``host`` (``server.host``) is reachable from this machine only."""
    if host.lower() in ("localhost", "localhost."):
        return True
    address = _address(host.strip("[]"))
    return address is not None and ipaddress.ip_address(address).is_loopback


def _always_allowed(host: str) -> bool:
    """Addresses and loopback names: a page served under them is served by the gateway."""
    return host == "localhost" or host.endswith(".localhost") or _address(host) is not None


def entry_problem(entry: str) -> str | None:
    """What is wrong with one ``allowed_hosts`` entry, or None."""
    if entry == ANY_HOST or _address(entry) is not None:
        return None
    if not entry:
        return "must not contain empty strings"
    if entry.startswith(".") and _host_name(entry[1:]):
        return f'has {entry!r}: write "*{entry}" for the names under it (and {entry[1:]!r})'
    if not entry.isascii():
        return f"has {entry!r}: write international names in their xn-- form"
    if entry.startswith("*."):
        if _host_name(entry[2:]) is None:
            return f"has {entry!r}, which is not *. followed by a host name"
        return None
    parsed = split_host(entry)
    if parsed is not None and parsed[1] is not None:
        return f"has {entry!r}: give the name without a port (every port is accepted)"
    if parsed is None:
        return f"has {entry!r}, which is not a host name or an address (no scheme, no path)"
    return None


class HostPolicy:
    """The names a request's ``Host`` (and trusted ``X-Forwarded-Host``) may carry."""

    __slots__ = ("_cache", "_names", "_proxy_hops", "_suffixes")

    def __init__(self, allowed_hosts: Iterable[str], *, proxy_hops: int) -> None:
        names: set[str] = set()
        suffixes: list[str] = []
        for entry in allowed_hosts:
            if entry.startswith("*."):
                suffix = _host_name(entry[2:])
                if suffix is not None:
                    suffixes.append("." + suffix)
            elif (name := _host_name(entry)) is not None:
                names.add(name)  # addresses need no entry: they are always accepted
        self._names = frozenset(names)
        self._suffixes = tuple(suffixes)
        self._proxy_hops = proxy_hops
        # Decisions by raw header value: a handful of distinct values in practice, so the hot
        # path is one dictionary look-up; the bound keeps a flood of made-up names from growing it.
        self._cache: dict[bytes, bool] = {}

    def _allows(self, value: bytes) -> bool:
        known = self._cache.get(value)
        if known is not None:
            return known
        parsed = split_host(value.decode("latin-1").strip())
        allowed = parsed is not None and self._matches(parsed[0])
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[value] = allowed
        return allowed

    def _matches(self, host: str) -> bool:
        return _always_allowed(host) or host in self._names or host.endswith(self._suffixes)

    def refused_host(self, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
        """The first ``Host`` (or trusted ``X-Forwarded-Host``) value not allowed, or None."""
        forwarded: list[bytes] = []
        for name, value in headers:
            if name == b"host":
                if not self._allows(value):
                    return value.decode("latin-1")
            elif name == b"x-forwarded-host" and self._proxy_hops:
                forwarded.extend(part.strip() for part in value.split(b","))
        if len(forwarded) >= self._proxy_hops > 0:
            # The value the outermost trusted proxy set, as hypercorn's ProxyFixMiddleware reads it.
            trusted = forwarded[-self._proxy_hops]
            if not self._allows(trusted):
                return trusted.decode("latin-1")
        return None


def host_policy(
    *, allowed_hosts: Sequence[str], bind_host: str, proxy_hops: int
) -> HostPolicy | None:
    """The policy for these settings, or None when every ``Host`` is accepted (module doc)."""
    if ANY_HOST in allowed_hosts:
        return None
    if not allowed_hosts and (proxy_hops or not is_loopback_bind(bind_host)):
        return None
    return HostPolicy(allowed_hosts, proxy_hops=proxy_hops)
