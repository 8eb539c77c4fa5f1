"""Origins (scheme, host, port), and the set of them one provider's API key is bound to.

A provider key from the file, the environment or a systemd credential may only travel to the origin
of the ``base_url`` configured beside it in the file (the built-in default when the file has none)
and to the origins listed in that provider's ``allowed_base_urls``. Nothing the dashboard stores can
widen that set. URLs are parsed by httpx, as the upstream transport parses them, so an origin here
is the one a request really connects to: ``https://api.openai.com@evil/`` is ``evil``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from proxy.config import ProviderConfig

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclasses.dataclass(frozen=True, slots=True)
class Origin:
    """Where a request goes: scheme, ASCII (IDNA) lower-case host, port made explicit."""

    scheme: str
    host: str  # an IPv6 address without its brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin_of(url: str | httpx.URL) -> Origin:
    """The origin of an http(s) URL; ValueError (saying why) for anything else.

    Scheme and host compare lower-case, a host in Unicode as its IDNA (``xn--``) form, a default
    port as the number, and a host's one trailing dot (the same name to DNS) is dropped.
    """
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as exc:
        raise ValueError(f"is not a valid http:// or https:// URL ({exc})") from None
    scheme = parsed.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an http:// or https:// URL")
    host = parsed.raw_host.decode("ascii").lower().removesuffix(".")
    if not host:
        raise ValueError("must be an http:// or https:// URL with a host")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"has a port out of range: {port}")
    return Origin(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme])


@dataclasses.dataclass(frozen=True, slots=True)
class KeyBinding:
    """The origins one provider's API key may be sent to; every origin when it has no key."""

    provider: str
    origins: tuple[Origin, ...]  # the file's base_url first, then allowed_base_urls
    keyed: bool
    key_source: str | None = None

    def refusal(self, url: str | httpx.URL) -> str | None:
        """Why the key must not go to ``url`` (None: it may, or there is no key to protect).

        Never raises: a URL without an http(s) origin is refused with the reason.
        """
        if not self.keyed:
            return None
        try:
            origin = origin_of(url)
        except ValueError as exc:
            return f"The base_url {exc}."
        if origin in self.origins:
            return None
        bound = ", ".join(map(str, self.origins)) or "nowhere"
        source = f" (from {self.key_source})" if self.key_source else ""
        return (
            f"Provider {self.provider}'s API key{source} may only be sent to {bound}, not to "
            f"{origin}. To allow {origin}, add it to [providers.{self.provider}] "
            "allowed_base_urls in the config file and restart the gateway."
        )


def key_binding(config: ProviderConfig) -> KeyBinding:
    """The binding of a provider as configured in the file (never a dashboard override)."""
    origins: list[Origin] = []
    for url in (config.base_url, *config.allowed_base_urls):
        try:
            origin = origin_of(url)
        except ValueError:
            continue  # only the mock's label is not a URL, and the mock sends nothing
        if origin not in origins:
            origins.append(origin)
    return KeyBinding(config.name, tuple(origins), bool(config.api_key), config.api_key_source)
