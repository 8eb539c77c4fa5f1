"""Inline remote images for providers that need the bytes (Gemini, Ollama), fetched safely.

Fetching a URL a client chose is server-side request forgery waiting to happen, so
:class:`ImageFetcher` resolves the host itself, refuses non-public addresses (unless the operator
allows private networks), then connects to the very address it checked, with the original
``Host`` header and TLS name, so DNS cannot answer differently between check and connect. It
follows redirects itself, checking every hop the same way, and bounds time and size.

This module does no I/O of its own: it fetches through the ``httpx.AsyncClient`` it is handed.
That client should be dedicated to image fetching and speak HTTP/1.1 only (httpx's default):
requests go to bare IPs, so the pool keys connections by IP, and only HTTP/1.1's
``Connection: close`` keeps a TLS connection verified for one name from serving another name on
the same IP (an HTTP/2 connection stays open and is shared).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import trio

from proxy.chat import ChatRequest, ImagePart
from proxy.config import ImagesConfig
from proxy.data_url import parse_data_url
from proxy.errors import InvalidRequest

__all__ = [
    "AddressCheck",
    "IPAddress",
    "ImageError",
    "ImageFetcher",
    "ImagePolicy",
    "Resolver",
    "forbidden_reason",
    "inline_remote_images",
    "is_http_url",
    "parse_image_data_url",
    "resolve_host",
]

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
AddressCheck = Callable[[IPAddress], str | None]

_DEFAULT_TOTAL_BYTES = 50_000_000


@dataclass(frozen=True, slots=True)
class ImagePolicy:
    """Limits on fetching images on a client's behalf."""

    max_bytes: int = 20_000_000
    timeout_s: float = 10.0
    allow_private_networks: bool = False
    max_redirects: int = 5
    # All images fetched for one request together: each one is capped, but a request can name
    # many URLs, and every fetched image is held in memory until the upstream call is built.
    max_total_bytes: int = _DEFAULT_TOTAL_BYTES
    max_concurrent: int = 8

    @classmethod
    def from_config(cls, config: ImagesConfig) -> ImagePolicy:
        """The policy of an ``[images]`` config section."""
        return cls(
            max_bytes=config.max_bytes,
            timeout_s=float(config.fetch_timeout_s),
            allow_private_networks=config.allow_private_networks,
            max_total_bytes=max(_DEFAULT_TOTAL_BYTES, config.max_bytes),
        )


class ImageError(Exception):
    """An image could not be used; the text is the reason, safe to show to the client."""


# ---------------------------------------------------------------------------------------------
# Addresses

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 or NAT64 address routes to, if any."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def forbidden_reason(address: IPAddress) -> str | None:
    """Why a fetch may not connect to ``address`` (e.g. "a loopback address"); None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # A dual-stack socket connects to the IPv4 address itself: judge that one.
            return forbidden_reason(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        if embedded is not None and (reason := forbidden_reason(embedded)) is not None:
            return f"{reason} behind a 6to4/NAT64 prefix"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if address in _SITE_LOCAL:
        return "a site-local address"
    # Catch-all for special-purpose ranges the named checks above miss (their coverage differs
    # between Python patch releases).
    if not address.is_global:
        return "not a public address"
    return None


async def resolve_host(host: str, port: int) -> list[str]:
    """All A and AAAA addresses of ``host``, through the system resolver (getaddrinfo)."""
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    addresses: list[str] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (trio.socket.AF_INET, trio.socket.AF_INET6):
            address = str(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
    return addresses


# ---------------------------------------------------------------------------------------------
# Fetching

_DEFAULT_PORTS = {"http": 80, "https": 443}
_USER_AGENT = "llm-proxy-image-fetcher"


def _remote_url(text: str) -> httpx.URL:
    """Parse an http(s) URL to fetch, or raise ImageError."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ImageError("the URL is not valid") from None
    if url.scheme not in _DEFAULT_PORTS:
        raise ImageError(f"unsupported URL scheme {url.scheme!r} (use http or https)")
    if not url.raw_host:
        raise ImageError("the URL has no host")
    return url


def _host_of(url: str) -> str:
    """The host of ``url`` for a log line, never its path or query."""
    try:
        return httpx.URL(url).host or "?"
    except (httpx.InvalidURL, TypeError, ValueError):
        return "?"


def _describe(exc: BaseException) -> str:
    """A short text for a transport error: the first non-empty text down its cause chain."""
    # httpx often wraps the telling error (a failed TLS verification, a refused connection) in
    # one without text. None of these texts carry the URL.
    cause: BaseException | None = exc
    while cause is not None:
        if str(cause):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


class ImageFetcher:
    """Fetches images over http(s) for a client, refusing non-public addresses."""

    # ``resolver`` defaults to getaddrinfo (all A/AAAA records); ``address_check`` to
    # forbidden_reason. Tests swap in narrower ones (e.g. allow exactly 127.0.0.1); neither is
    # consulted for allowing when ``policy.allow_private_networks`` is set: then every address goes.

    def __init__(
        self,
        client: httpx.AsyncClient,
        policy: ImagePolicy,
        *,
        resolver: Resolver | None = None,
        address_check: AddressCheck | None = None,
        max_in_flight: int = 16,
    ) -> None:
        self._client = client
        self._policy = policy
        # Across all requests, kept below the client's pool size: fetches then never queue
        # inside httpcore's pool, where a cancelled wait can leak a slot (httpcore #1093).
        self._in_flight = trio.CapacityLimiter(max_in_flight)
        self._resolver: Resolver = resolver if resolver is not None else resolve_host
        self._address_check: AddressCheck = (
            address_check if address_check is not None else forbidden_reason
        )

    @property
    def policy(self) -> ImagePolicy:
        """The limits this fetcher applies."""
        return self._policy

    async def fetch(self, url: str) -> tuple[str, bytes]:
        """Fetch one image: its MIME type (no parameters) and bytes; raises ImageError."""
        timeout = self._policy.timeout_s
        try:
            with trio.fail_after(timeout):
                async with self._in_flight:
                    return await self._fetch_following(url)
        except trio.TooSlowError:
            error = ImageError(f"timed out after {timeout:g} s")
        except ImageError as exc:
            error = exc
        # Host only: paths and queries may carry tokens.
        logger.info("image fetch from host %s failed: %s", _host_of(url), error)
        raise error from None

    async def _fetch_following(self, text: str) -> tuple[str, bytes]:
        """Fetch, following up to ``max_redirects`` redirects, each hop checked afresh."""
        url = _remote_url(text)
        redirects = 0
        while True:
            response = await self._open(url)
            try:
                if not response.is_redirect:
                    mime, data = await self._read_image(response)
                    logger.debug("fetched image from host %s: %d bytes", url.host, len(data))
                    return mime, data
                if redirects >= self._policy.max_redirects:
                    raise ImageError(f"too many redirects (more than {self._policy.max_redirects})")
                redirects += 1
                try:
                    target = url.join(response.headers["location"])
                except (httpx.InvalidURL, TypeError, ValueError):
                    raise ImageError("a redirect points to an invalid URL") from None
                url = _remote_url(str(target))
            finally:
                # Shielded: a cancelled fetch must still give its connection back.
                with trio.move_on_after(2, shield=True):
                    await response.aclose()

    async def _addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host``, all checked; ImageError if any one is not allowed."""
        literal = True
        try:
            # An IP literal is used as is; getaddrinfo would accept it too, but a test resolver
            # need not.
            addresses: list[IPAddress] = [ipaddress.ip_address(host)]
        except ValueError:
            literal = False
            try:
                names = await self._resolver(host, port)
            except (OSError, UnicodeError):
                raise ImageError(f"could not resolve host {host}") from None
            try:
                addresses = list(dict.fromkeys(ipaddress.ip_address(name) for name in names))
            except ValueError:
                raise ImageError(f"could not resolve host {host}") from None
        if not addresses:
            raise ImageError(f"could not resolve host {host}")
        if self._policy.allow_private_networks:
            return addresses
        # Refuse if ANY address is forbidden: which one a later connect would use is not ours
        # to predict, and a name mixing public and private addresses is suspicious anyway.
        for address in addresses:
            reason = self._address_check(address)
            if reason is not None:
                if literal:
                    raise ImageError(f"refused: {host} is {reason}")
                raise ImageError(f"refused: {host} resolves to {address}, {reason}")
        return addresses

    def _request(self, url: httpx.URL, address: IPAddress) -> httpx.Request:
        """A GET for ``url`` sent to ``address`` itself, built without the client's defaults."""
        host = url.raw_host.decode("ascii")
        extensions: dict[str, Any] = {
            "timeout": httpx.Timeout(self._policy.timeout_s).as_dict(),
        }
        if url.scheme == "https":
            # httpcore verifies the certificate against this name, not the IP we connect to.
            extensions["sni_hostname"] = host
        wire = httpx.URL(scheme=url.scheme, host=str(address), port=url.port, raw_path=url.raw_path)
        headers = [
            ("Host", url.netloc.decode("ascii")),
            ("Accept", "image/*"),
            # Compressed bodies could expand far past max_bytes within one decoded chunk.
            ("Accept-Encoding", "identity"),
            ("User-Agent", _USER_AGENT),
            # The pool keys connections by origin, here the bare IP: without this, a TLS
            # connection verified for one name could be reused for another name on that IP
            # (see the module docstring about HTTP/2).
            ("Connection", "close"),
        ]
        # A Request built here, not with client.build_request, carries none of the client's
        # default headers or cookies (never an upstream's API key).
        return httpx.Request("GET", wire, headers=headers, extensions=extensions)

    async def _open(self, url: httpx.URL) -> httpx.Response:
        """Send one GET to a checked address of ``url``'s host; the response body is unread."""
        host = url.raw_host.decode("ascii")
        port = url.port or _DEFAULT_PORTS[url.scheme]
        addresses = await self._addresses(host, port)
        failure = "no address"
        for address in addresses:
            try:
                request = self._request(url, address)
            except httpx.InvalidURL:
                failure = "unusable address"
                continue
            try:
                # auth=None: the client's own auth (an upstream's key) must never go out here.
                return await self._client.send(
                    request, stream=True, follow_redirects=False, auth=None
                )
            except httpx.TimeoutException:
                raise ImageError(f"timed out after {self._policy.timeout_s:g} s") from None
            except httpx.ConnectError as exc:
                failure = _describe(exc)  # try the next address, like a browser would
            except httpx.InvalidURL:
                # httpx prepares the next request of a redirect even when it does not follow
                # it, and fails on some targets (e.g. a data: URL) before we can check them.
                raise ImageError("the server redirected to an unusable URL") from None
            except httpx.HTTPError as exc:
                raise ImageError(f"could not fetch from {host}: {_describe(exc)}") from None
        raise ImageError(f"could not connect to {host}: {failure}")

    async def _read_image(self, response: httpx.Response) -> tuple[str, bytes]:
        """Check status, type and size, then read the body up to ``max_bytes``."""
        if not response.is_success:
            raise ImageError(f"the server answered HTTP {response.status_code}")
        content_type = response.headers.get("content-type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        if not _IMAGE_MIME.fullmatch(mime):
            shown = repr(content_type) if content_type else "none"
            raise ImageError(f"not an image: content type {shown}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ImageError(f"compressed responses are not accepted (content-encoding {encoding})")
        limit = self._policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise ImageError(f"too large: {declared} bytes declared, the limit is {limit}")
        body = bytearray()
        try:
            # Identity encoding is assured above, so these are the bytes as sent.
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise ImageError(f"too large: more than {limit} bytes")
        except httpx.TimeoutException:
            raise ImageError(f"timed out after {self._policy.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ImageError(f"reading the image failed: {_describe(exc)}") from None
        if not body:
            raise ImageError("the server sent an empty body")
        return mime, bytes(body)


# ---------------------------------------------------------------------------------------------
# Data URLs

_IMAGE_MIME = re.compile(r"image/[a-z0-9][a-z0-9!#$&^_.+-]*")


def is_http_url(url: str) -> bool:
    """Whether ``url`` is an ``http:`` or ``https:`` URL by its scheme."""
    return _scheme(url) in _DEFAULT_PORTS


def _scheme(url: str) -> str:
    """The lower-cased scheme of ``url``, "" when it has none."""
    head, sep, _ = url.partition(":")
    return head.strip().lower() if sep else ""


def parse_image_data_url(url: str) -> tuple[str, str]:
    """The MIME type and base64 text of an image data URL; ValueError when it is not one."""
    parsed = parse_data_url(url)
    if not _IMAGE_MIME.fullmatch(parsed.media_type):
        shown = parsed.media_type or "none"
        raise ValueError(f"a data URL must have an image/* type, not {shown!r}")
    if not parsed.is_base64:
        raise ValueError("a data URL must be base64-encoded (';base64,')")
    if not parsed.payload:
        raise ValueError("the data URL is empty")
    try:
        binascii.a2b_base64(parsed.payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ValueError("the data URL's base64 does not decode") from None
    return parsed.media_type, parsed.payload


def _decoded_size(data: str) -> int:
    """Bytes a valid base64 text decodes to, without decoding it."""
    return len(data) // 4 * 3 - data[-2:].count("=")


# ---------------------------------------------------------------------------------------------
# Requests

Position = tuple[int, int]  # (message index, content part index)


def _part_error(position: Position, reason: str) -> InvalidRequest:
    """The client-facing error for one unusable image part."""
    param = f"messages[{position[0]}].content[{position[1]}].image_url"
    return InvalidRequest(
        f"Image at {param} could not be used: {reason}", param=param, code="invalid_image_url"
    )


def _image_parts(request: ChatRequest) -> list[tuple[Position, str]]:
    """Every image part's position and URL, in order."""
    found: list[tuple[Position, str]] = []
    for i, message in enumerate(request.body.messages):
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if isinstance(part, ImagePart):
                    found.append(((i, j), part.image_url.url))
    return found


def _remote_urls(request: ChatRequest, policy: ImagePolicy) -> dict[str, list[Position]]:
    """The http(s) image URLs by where they are used; data URLs and schemes checked here."""
    remote: dict[str, list[Position]] = {}
    for position, url in _image_parts(request):
        scheme = _scheme(url)
        if scheme == "data":
            try:
                _mime, data = parse_image_data_url(url)
            except ValueError as exc:
                raise _part_error(position, str(exc)) from None
            size = _decoded_size(data)
            if size > policy.max_bytes:
                raise _part_error(
                    position, f"too large: {size} bytes, the limit is {policy.max_bytes}"
                )
        elif scheme in _DEFAULT_PORTS:
            remote.setdefault(url, []).append(position)
        else:
            shown = repr(scheme) if scheme else "none"
            raise _part_error(position, f"unsupported URL scheme {shown} (use http, https or data)")
    return remote


async def inline_remote_images(request: ChatRequest, fetcher: ImageFetcher) -> ChatRequest:
    """Replace every http(s) image URL by a data URL of the fetched image; InvalidRequest if not."""
    if not request.has_images:
        return request
    policy = fetcher.policy
    remote = _remote_urls(request, policy)
    if not remote:
        return request
    inlined: dict[str, str] = {}
    failures: list[tuple[str, ImageError]] = []
    limiter = trio.CapacityLimiter(policy.max_concurrent)
    total = 0

    async def fetch_one(url: str, cancel_scope: trio.CancelScope) -> None:
        nonlocal total
        try:
            async with limiter:
                mime, data = await fetcher.fetch(url)
            total += len(data)
            if total > policy.max_total_bytes:
                raise ImageError(
                    f"the request's images together exceed {policy.max_total_bytes} bytes"
                )
        except ImageError as exc:
            failures.append((url, exc))
            cancel_scope.cancel()  # one bad image fails the request: stop the other fetches
            return
        inlined[url] = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    async with trio.open_nursery() as nursery:
        for url in remote:
            nursery.start_soon(fetch_one, url, nursery.cancel_scope)
    if failures:
        url, error = failures[0]
        raise _part_error(remote[url][0], str(error))
    return _with_urls(
        request, [(position, inlined[url]) for url, used in remote.items() for position in used]
    )


def _with_urls(request: ChatRequest, replacements: Sequence[tuple[Position, str]]) -> ChatRequest:
    """A copy of ``request`` with these image URLs replaced in the typed body and the raw dict."""
    by_message: dict[int, dict[int, str]] = {}
    for (i, j), url in replacements:
        by_message.setdefault(i, {})[j] = url
    messages = list(request.body.messages)
    raw = dict(request.raw)
    raw_messages: list[Any] = list(raw["messages"])
    raw["messages"] = raw_messages
    for i, parts in by_message.items():
        message = messages[i]
        assert isinstance(message.content, list)
        content = list(message.content)
        raw_message = dict(raw_messages[i])
        raw_content: list[Any] = list(raw_message["content"])
        raw_message["content"] = raw_content
        raw_messages[i] = raw_message
        for j, url in parts.items():
            part = content[j]
            assert isinstance(part, ImagePart)
            image_url = msgspec.structs.replace(part.image_url, url=url)
            content[j] = msgspec.structs.replace(part, image_url=image_url)
            raw_part = dict(raw_content[j])
            raw_part["image_url"] = {**raw_part["image_url"], "url": url}
            raw_content[j] = raw_part
        messages[i] = msgspec.structs.replace(message, content=content)
    body = msgspec.structs.replace(request.body, messages=messages)
    return dataclasses.replace(request, body=body, raw=raw)
