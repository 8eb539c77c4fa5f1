"""Fetch an image a client named by URL, safely, for providers that need the bytes inline.

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

import ipaddress
import logging
import re
import ssl
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from proxy.config import ImagesConfig
from proxy.image_addresses import AddressCheck, IPAddress, Resolver, forbidden_reason, resolve_host
from proxy.image_budget import ImageBudget, ImageBudgetStatistics, ImageLease, inlined_size

__all__ = ["IMAGE_MIME", "ImageError", "ImageFetcher", "ImagePolicy"]

logger = logging.getLogger("proxy.images")

IMAGE_MIME = re.compile(r"image/[a-z0-9][a-z0-9!#$&^_.+-]*")

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
    # Across all requests: see proxy.image_budget.
    max_bytes_in_flight: int = 256_000_000
    max_bytes_in_flight_per_client: int = 80_000_000
    max_fetches: int = 16
    max_fetches_per_client: int = 4

    @classmethod
    def from_config(cls, config: ImagesConfig) -> ImagePolicy:
        """The policy of an ``[images]`` config section."""
        return cls(
            max_bytes=config.max_bytes,
            timeout_s=float(config.fetch_timeout_s),
            allow_private_networks=config.allow_private_networks,
            max_total_bytes=max(_DEFAULT_TOTAL_BYTES, config.max_bytes),
            max_bytes_in_flight=config.max_bytes_in_flight,
            max_bytes_in_flight_per_client=config.max_bytes_in_flight_per_client,
            max_fetches=config.max_concurrent_fetches,
            max_fetches_per_client=config.max_concurrent_fetches_per_client,
        )


class ImageError(Exception):
    """An image could not be used; the text is the reason, safe to show to the client."""


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
    # one without text. None of these texts carry the URL, but some carry the address connected
    # to: that goes to the debug log only (see _client_text).
    cause: BaseException | None = exc
    while cause is not None:
        if str(cause):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


# An IPv4 address, or an IPv6 one (at least two colons between hex groups).
_ADDRESS = re.compile(
    r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])|(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f.]*"
)


def _client_text(exc: BaseException) -> str:
    """:func:`_describe` for the client: what went wrong, never an address it resolved to."""
    # The fetcher connects to the addresses it resolved; the client named a host. An address
    # in an error text would answer a DNS question the client may not ask (what an internal
    # name resolves to), so every address is cut, whatever the error.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            # Checked against the URL's own name (sni_hostname), so the text names no address.
            return f"the TLS certificate could not be verified ({cause.verify_message})"
        cause = cause.__cause__ or cause.__context__
    return _ADDRESS.sub("<address>", _describe(exc))


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
    ) -> None:
        self._client = client
        self._policy = policy
        # The fetch slots are kept below the client's pool size (see proxy.service): fetches
        # then never queue inside httpcore's pool, where a cancelled wait can leak a slot
        # (httpcore #1093).
        self._budget = ImageBudget(
            max_bytes=policy.max_bytes_in_flight,
            max_bytes_per_client=policy.max_bytes_in_flight_per_client,
            max_fetches=policy.max_fetches,
            max_fetches_per_client=policy.max_fetches_per_client,
            # By then every fetch running now has ended, one way or the other.
            retry_after_s=policy.timeout_s,
        )
        self._resolver: Resolver = resolver if resolver is not None else resolve_host
        self._address_check: AddressCheck = (
            address_check if address_check is not None else forbidden_reason
        )

    @property
    def policy(self) -> ImagePolicy:
        """The limits this fetcher applies."""
        return self._policy

    def lease(self, client: str) -> ImageLease:
        """A lease for the images of one call of ``client`` (see :mod:`proxy.image_budget`)."""
        return self._budget.lease(client)

    def statistics(self) -> ImageBudgetStatistics:
        """Image memory reserved (now and at its peak), fetches running and waiting, refusals."""
        return self._budget.statistics()

    async def fetch(self, url: str, lease: ImageLease | None = None) -> tuple[str, bytes]:
        """Fetch one image: its MIME type (no parameters) and bytes; raises ImageError.

        The image's memory is reserved on ``lease`` (429 or 503 when it does not fit), for its
        holder to release once the image is no longer needed. Without a lease (a one-off fetch)
        a lease of the shared client "" is used and released on return.
        """
        if lease is None:
            with self.lease("") as own:
                return await self.fetch(url, own)
        timeout = self._policy.timeout_s
        try:
            async with self._budget.fetch_slot(lease.client, trio.current_time() + timeout):
                with trio.fail_after(timeout):
                    return await self._fetch_following(url, lease)
        except trio.TooSlowError:
            error = ImageError(f"timed out after {timeout:g} s")
        except ImageError as exc:
            error = exc
        # Host only: paths and queries may carry tokens.
        logger.info("image fetch from host %s failed: %s", _host_of(url), error)
        raise error from None

    async def _fetch_following(self, text: str, lease: ImageLease) -> tuple[str, bytes]:
        """Fetch, following up to ``max_redirects`` redirects, each hop checked afresh."""
        url = _remote_url(text)
        redirects = 0
        while True:
            response = await self._open(url)
            try:
                if not response.is_redirect:
                    mime, data = await self._read_image(response, lease)
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
                # Only that it is refused: the address a name resolves to, even the kind of
                # address, would tell a client about the gateway's network.
                logger.debug("image host %s resolves to %s, %s: refused", host, address, reason)
                if literal:
                    raise ImageError(f"refused: the address {host} is not allowed")
                raise ImageError(f"refused: the address of {host} is not allowed")
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
        failure: str | None = None
        for address in addresses:
            try:
                request = self._request(url, address)
            except httpx.InvalidURL:
                logger.debug("image host %s: address %s is unusable in a URL", host, address)
                continue
            try:
                # auth=None: the client's own auth (an upstream's key) must never go out here.
                return await self._client.send(
                    request, stream=True, follow_redirects=False, auth=None
                )
            except httpx.TimeoutException:
                raise ImageError(f"timed out after {self._policy.timeout_s:g} s") from None
            except httpx.ConnectError as exc:
                # Try the next address, like a browser would; a TLS failure is worth telling.
                logger.debug("image host %s: connecting to %s failed: %s", host, address, exc)
                text = _client_text(exc)
                failure = text if "TLS" in text else failure
            except httpx.InvalidURL:
                # httpx prepares the next request of a redirect even when it does not follow
                # it, and fails on some targets (e.g. a data: URL) before we can check them.
                raise ImageError("the server redirected to an unusable URL") from None
            except httpx.HTTPError as exc:
                raise ImageError(f"could not fetch from {host}: {_client_text(exc)}") from None
        raise ImageError(f"could not connect to {host}" + (f": {failure}" if failure else ""))

    async def _read_image(self, response: httpx.Response, lease: ImageLease) -> tuple[str, bytes]:
        """Check status, type and size, reserve the image's memory, then read the body."""
        if not response.is_success:
            raise ImageError(f"the server answered HTTP {response.status_code}")
        content_type = response.headers.get("content-type", "")
        mime = content_type.split(";", 1)[0].strip().lower()
        if not IMAGE_MIME.fullmatch(mime):
            shown = repr(content_type) if content_type else "none"
            raise ImageError(f"not an image: content type {shown}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ImageError(f"compressed responses are not accepted (content-encoding {encoding})")
        limit = self._policy.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit():
            if int(declared) > limit:
                raise ImageError(f"too large: {declared} bytes declared, the limit is {limit}")
            # Trusted for the reservation, verified while reading: no more is read.
            expected = int(declared)
        else:
            expected = limit
        reserved = inlined_size(expected)
        lease.reserve(reserved)  # before the first byte of the body: 429 or 503 if it cannot fit
        try:
            chunks = await self._read_body(response, expected, limit)
        except BaseException:
            lease.give_back(reserved)
            raise
        size = sum(map(len, chunks))
        lease.give_back(reserved - inlined_size(size))
        if not size:
            raise ImageError("the server sent an empty body")
        return mime, b"".join(chunks)

    async def _read_body(self, response: httpx.Response, expected: int, limit: int) -> list[bytes]:
        """The body as received, at most ``expected`` bytes (the declared or the largest size)."""
        # A list of the pieces, not a growing bytearray: it holds exactly what arrived (a
        # bytearray over-allocates as it grows), and is joined once, at the end.
        chunks: list[bytes] = []
        size = 0
        try:
            # Identity encoding is assured by the caller, so these are the bytes as sent.
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > expected:
                    chunks.clear()
                    if expected < limit:
                        raise ImageError(f"the server sent more than the {expected} bytes declared")
                    raise ImageError(f"too large: more than {limit} bytes")
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise ImageError(f"timed out after {self._policy.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise ImageError(f"reading the image failed: {_client_text(exc)}") from None
        return chunks
