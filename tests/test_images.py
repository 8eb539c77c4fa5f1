"""Image fetching and inlining: SSRF refusals, DNS pinning, redirects, limits, request rewriting."""

from __future__ import annotations

import base64
import copy
import ipaddress
import logging
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
import trio

from proxy.chat import ChatRequest, decode_chat_request
from proxy.chat_form import ImagePart
from proxy.config import ImagesConfig
from proxy.data_url import is_data_url
from proxy.errors import InvalidRequest
from proxy.images import (
    ImageError,
    ImageFetcher,
    ImagePolicy,
    IPAddress,
    forbidden_reason,
    inline_remote_images,
    parse_image_data_url,
)
from tests.fakes.image_server import CAT_PNG, FakeImageServer

CAT_B64 = base64.b64encode(CAT_PNG).decode("ascii")
CAT_DATA_URL = f"data:image/png;base64,{CAT_B64}"
ALLOW_PRIVATE = ImagePolicy(allow_private_networks=True)

# ---------------------------------------------------------------------------------------------
# Helpers and fixtures


class StubResolver:
    """A resolver for made-up names; records every lookup."""

    def __init__(self, names: Mapping[str, list[str]]) -> None:
        self.names = dict(names)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.names[host])


def loopback_only(address: IPAddress) -> str | None:
    """An address check that also lets exactly 127.0.0.1 through (where the fake server is)."""
    if address == ipaddress.IPv4Address("127.0.0.1"):
        return None
    return forbidden_reason(address)


class NoTraffic:
    """An httpx transport that fails the test if a request ever reaches it."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        pytest.fail(f"a request was sent to {request.url.host}")


@pytest.fixture
async def server(nursery: trio.Nursery) -> FakeImageServer:
    """The fake image host on 127.0.0.1."""
    fake = FakeImageServer(big_size=200_000)
    await nursery.start(fake.run)
    return fake


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A real httpx client, as the gateway would hand to the fetcher."""
    async with httpx.AsyncClient() as real:
        yield real


@pytest.fixture
def no_traffic() -> NoTraffic:
    """A transport that must never be used."""
    return NoTraffic()


@pytest.fixture
async def guarded_client(no_traffic: NoTraffic) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose transport fails the test when called."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(no_traffic.handler)) as mock:
        yield mock


def png_response(request: httpx.Request) -> httpx.Response:
    """A MockTransport answer with the cat PNG."""
    return httpx.Response(200, headers={"content-type": "image/png"}, content=CAT_PNG)


def chat(*content: Any) -> ChatRequest:
    """A decoded request with one system turn, then one user turn of these content parts."""
    body = {
        "model": "gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": list(content), "name": "ann"},
        ],
        "metadata": {"kept": True},  # unknown to the typed body: must survive in raw
    }
    return decode_chat_request(msgspec.json.encode(body))


def image(url: str, detail: str | None = None) -> dict[str, Any]:
    """An ``image_url`` content part."""
    part: dict[str, Any] = {"url": url}
    if detail is not None:
        part["detail"] = detail
    return {"type": "image_url", "image_url": part}


def urls_of(request: ChatRequest) -> list[tuple[str, str | None]]:
    """(url, detail) of every image part of the internal form."""
    found: list[tuple[str, str | None]] = []
    for message in request.form().messages:
        if isinstance(message.content, list):
            for part in message.content:
                if isinstance(part, ImagePart):
                    found.append((part.image_url.url, part.image_url.detail))
    return found


def raw_urls_of(raw: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(url, detail) of every image part of a raw body."""
    found: list[tuple[str, str | None]] = []
    for message in raw["messages"]:
        if isinstance(message.get("content"), list):
            for part in message["content"]:
                if part.get("type") == "image_url":
                    found.append((part["image_url"]["url"], part["image_url"].get("detail")))
    return found


# ---------------------------------------------------------------------------------------------
# Data URLs


def test_parse_data_url_accepts_base64_images() -> None:
    assert parse_image_data_url(CAT_DATA_URL) == ("image/png", CAT_B64)
    assert parse_image_data_url(f"DATA:Image/PNG;BASE64,{CAT_B64}") == ("image/png", CAT_B64)
    assert (
        parse_image_data_url(f"data:image/webp;name=cat.webp;base64,{CAT_B64}")[0] == "image/webp"
    )
    assert parse_image_data_url("data:image/svg+xml;base64,PHN2Zy8+") == (
        "image/svg+xml",
        "PHN2Zy8+",
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://example.com/cat.png", "not a data URL"),
        ("data:image/png;base64", "comma"),
        (f"data:text/plain;base64,{CAT_B64}", "image/\\* type"),
        (f"data:;base64,{CAT_B64}", "image/\\* type"),
        (f"data:image/png,{CAT_B64}", "base64"),
        (f"data:base64,{CAT_B64}", "image/\\* type"),
        ("data:image/png;base64,", "empty"),
        ("data:image/png;base64,@@@@", "does not decode"),
        ("data:image/png;base64,abc", "does not decode"),  # missing padding
        ("data:image/png;base64,YWJj\nZGVm", "does not decode"),
    ],
)
def test_parse_data_url_rejects(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_image_data_url(url)


def test_is_data_url() -> None:
    assert is_data_url(CAT_DATA_URL)
    assert is_data_url("DATA:whatever")
    assert not is_data_url("https://example.com/data:image/png")
    assert not is_data_url("")


# ---------------------------------------------------------------------------------------------
# Address rules


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]
)
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) is None


FORBIDDEN = [
    ("10.0.0.5", "private"),
    ("192.168.1.1", "private"),
    ("172.16.0.1", "private"),
    ("169.254.169.254", "link-local"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("100.64.0.1", "shared"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("0.1.2.3", "private"),
    ("127.0.0.53", "loopback"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "private|reserved"),
    ("255.255.255.255", "private|reserved"),
    ("198.18.0.1", "private"),
    ("fec0::1", "site-local"),
    ("64:ff9b::a00:1", "private address behind a 6to4/NAT64"),
    ("2002:7f00:1::", "loopback address behind a 6to4/NAT64"),
]


@pytest.mark.parametrize(("address", "word"), FORBIDDEN)
def test_forbidden_reason(address: str, word: str) -> None:
    reason = forbidden_reason(ipaddress.ip_address(address))
    assert reason is not None
    assert re.search(word, reason)


# ---------------------------------------------------------------------------------------------
# Refusals: never a connection


REFUSED_NAME = "refused: the address of {} is not allowed"


@pytest.mark.parametrize(("address", "word"), FORBIDDEN)
async def test_names_resolving_to_forbidden_addresses_are_refused_before_connecting(
    guarded_client: httpx.AsyncClient,
    no_traffic: NoTraffic,
    caplog: pytest.LogCaptureFixture,
    address: str,
    word: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="proxy.images")
    resolver = StubResolver({"inside.example": [address]})
    fetcher = ImageFetcher(guarded_client, ImagePolicy(), resolver=resolver)
    with pytest.raises(ImageError) as caught:
        await fetcher.fetch("https://inside.example/cat.png?token=secret")
    # The client learns that the host is refused, never what it resolves to (an internal DNS
    # answer) nor what kind of address that is.
    assert str(caught.value) == REFUSED_NAME.format("inside.example")
    assert resolver.calls == [("inside.example", 443)]
    assert no_traffic.requests == []
    # The operator finds the detail in the debug log.
    shown = str(ipaddress.ip_address(address))  # ::ffff:7f00:1 before Python 3.13
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(f"inside.example resolves to {shown}" in line for line in debug), debug
    assert any(re.search(word, line) for line in debug)
    assert "token" not in caplog.text


async def test_one_private_address_among_public_ones_is_refused(
    guarded_client: httpx.AsyncClient, no_traffic: NoTraffic
) -> None:
    resolver = StubResolver({"mixed.example": ["93.184.216.34", "2606:4700::1111", "10.0.0.1"]})
    fetcher = ImageFetcher(guarded_client, ImagePolicy(), resolver=resolver)
    with pytest.raises(ImageError) as caught:
        await fetcher.fetch("http://mixed.example:8080/cat.png")
    assert str(caught.value) == REFUSED_NAME.format("mixed.example")
    assert no_traffic.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/cat.png",
        "http://[::1]/cat.png",
        "http://[::ffff:127.0.0.1]/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1%25eth0]/cat.png",
        "http://0.0.0.0/cat.png",
        # Forms ipaddress will not parse but getaddrinfo (and so a connect) reads as 127.0.0.1.
        "http://2130706433/cat.png",
        "http://0x7f000001/cat.png",
        "http://0177.0.0.1/cat.png",  # httpx itself refuses this one as an invalid URL
        "http://127.1/cat.png",
        "http://localhost/cat.png",
    ],
)
async def test_loopback_and_metadata_urls_are_refused_with_the_real_resolver(
    guarded_client: httpx.AsyncClient, no_traffic: NoTraffic, url: str
) -> None:
    fetcher = ImageFetcher(guarded_client, ImagePolicy())
    with pytest.raises(ImageError) as caught:
        await fetcher.fetch(url)
    message = str(caught.value)
    assert re.fullmatch(r"refused: the address (of )?\S+ is not allowed|the URL.*", message)
    # A name (or a numeric form only the resolver reads) is never answered with its address.
    if "127.0.0.1" not in url:
        assert "127.0.0.1" not in message
    assert no_traffic.requests == []


async def test_loopback_server_is_refused_by_default_and_sees_no_hit(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    fetcher = ImageFetcher(client, ImagePolicy())
    with pytest.raises(ImageError, match=r"^refused: the address 127\.0\.0\.1 is not allowed$"):
        await fetcher.fetch(f"{server.base_url}/cat.png")
    assert server.hits == {}


async def test_unresolvable_names_fail_cleanly(
    guarded_client: httpx.AsyncClient, no_traffic: NoTraffic
) -> None:
    resolver = StubResolver({"empty.example": [], "garbage.example": ["not-an-ip"]})
    fetcher = ImageFetcher(guarded_client, ImagePolicy(), resolver=resolver)
    for host in ("nowhere.example", "empty.example", "garbage.example"):
        with pytest.raises(ImageError, match=f"could not resolve host {host}"):
            await fetcher.fetch(f"https://{host}/cat.png")
    assert no_traffic.requests == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/cat.png", "unsupported URL scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported URL scheme 'file'"),
        ("gopher://example.com/", "unsupported URL scheme 'gopher'"),
        ("http:///cat.png", "no host|not valid"),
        ("http://exa mple.com/", "not valid|could not resolve"),
    ],
)
async def test_bad_urls_are_refused(
    guarded_client: httpx.AsyncClient, no_traffic: NoTraffic, url: str, why: str
) -> None:
    fetcher = ImageFetcher(guarded_client, ALLOW_PRIVATE, resolver=StubResolver({}))
    with pytest.raises(ImageError, match=why):
        await fetcher.fetch(url)
    assert no_traffic.requests == []


# ---------------------------------------------------------------------------------------------
# What goes on the wire


async def test_request_goes_to_the_checked_address_with_the_original_host_and_tls_name() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return png_response(request)

    resolver = StubResolver({"public.example": ["93.184.216.34"]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as mock:
        fetcher = ImageFetcher(mock, ImagePolicy(), resolver=resolver)
        assert await fetcher.fetch("https://public.example/img/cat.png?sig=a%2Fb&x=1#frag") == (
            "image/png",
            CAT_PNG,
        )
        assert await fetcher.fetch("http://public.example:8080/cat.png") == ("image/png", CAT_PNG)
        assert await fetcher.fetch("http://[2606:4700::1111]:81/v6.png") == ("image/png", CAT_PNG)

    tls, plain, literal = sent
    assert str(tls.url) == "https://93.184.216.34/img/cat.png?sig=a%2Fb&x=1"
    assert tls.headers["host"] == "public.example"
    assert tls.extensions["sni_hostname"] == "public.example"
    assert str(plain.url) == "http://93.184.216.34:8080/cat.png"
    assert plain.headers["host"] == "public.example:8080"
    assert "sni_hostname" not in plain.extensions
    assert str(literal.url) == "http://[2606:4700::1111]:81/v6.png"
    assert literal.headers["host"] == "[2606:4700::1111]:81"
    assert resolver.calls == [("public.example", 443), ("public.example", 8080)]  # not literals


async def test_the_clients_own_headers_cookies_and_auth_are_never_sent() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return png_response(request)

    resolver = StubResolver({"public.example": ["93.184.216.34"]})
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler),
        headers={"Authorization": "Bearer sk-upstream", "x-goog-api-key": "AIza-secret"},
        cookies={"session": "s3cret"},
        auth=("user", "pass"),
    ) as mock:
        fetcher = ImageFetcher(mock, ImagePolicy(), resolver=resolver)
        await fetcher.fetch("https://who:pw@public.example/cat.png")
    (request,) = sent
    assert request.headers["host"] == "public.example"
    assert str(request.url) == "https://93.184.216.34/cat.png"
    names = {name.lower() for name in request.headers}
    assert names.isdisjoint({"authorization", "x-goog-api-key", "cookie"})
    assert request.headers["accept-encoding"] == "identity"


async def test_the_next_address_is_tried_when_one_does_not_connect() -> None:
    tried: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if request.url.host == "2606:4700::1111":
            raise httpx.ConnectError("network unreachable")
        return png_response(request)

    resolver = StubResolver({"public.example": ["2606:4700::1111", "93.184.216.34"]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as mock:
        fetcher = ImageFetcher(mock, ImagePolicy(), resolver=resolver)
        assert await fetcher.fetch("https://public.example/cat.png") == ("image/png", CAT_PNG)
    assert tried == ["2606:4700::1111", "93.184.216.34"]


async def test_a_failed_connection_names_no_address(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="proxy.images")

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"[Errno 111] Connect call failed ('{request.url.host}', 443)")

    resolver = StubResolver({"public.example": ["93.184.216.34", "2606:4700::1111"]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as mock:
        fetcher = ImageFetcher(mock, ImagePolicy(), resolver=resolver)
        with pytest.raises(ImageError) as caught:
            await fetcher.fetch("https://public.example/cat.png")
    assert str(caught.value) == "could not connect to public.example"
    # Each failed address is in the debug log, for the operator.
    debug = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "93.184.216.34" in debug
    assert "2606:4700::1111" in debug


async def test_other_transport_errors_name_no_address() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError(f"{request.url.host} and [2606:4700::1111]:443 hung up")

    resolver = StubResolver({"public.example": ["93.184.216.34"]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as mock:
        fetcher = ImageFetcher(mock, ImagePolicy(), resolver=resolver)
        with pytest.raises(ImageError) as caught:
            await fetcher.fetch("https://public.example/cat.png")
    assert str(caught.value) == (
        "could not fetch from public.example: <address> and [<address>]:443 hung up"
    )


async def test_dns_is_checked_once_and_the_connection_goes_to_that_address(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    class Rebinding(StubResolver):
        """Answers the checked address first, a private one afterwards (DNS rebinding)."""

        async def __call__(self, host: str, port: int) -> list[str]:
            self.calls.append((host, port))
            return ["127.0.0.1"] if len(self.calls) == 1 else ["10.0.0.1"]

    resolver = Rebinding({})
    fetcher = ImageFetcher(client, ImagePolicy(), resolver=resolver, address_check=loopback_only)
    url = f"http://images.example:{server.port}/cat.png?token=t"
    assert await fetcher.fetch(url) == ("image/png", CAT_PNG)
    assert resolver.calls == [("images.example", server.port)]
    (seen,) = server.seen
    assert seen.headers["host"] == f"images.example:{server.port}"
    assert seen.query == "token=t"


# ---------------------------------------------------------------------------------------------
# Real fetches from the loopback server


async def test_fetch_from_the_loopback_server_when_private_networks_are_allowed(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    fetcher = ImageFetcher(client, ALLOW_PRIVATE)
    assert await fetcher.fetch(f"{server.base_url}/cat.png") == ("image/png", CAT_PNG)
    assert server.hits["/cat.png"] == 1
    assert server.seen[0].headers["accept"] == "image/*"


async def test_redirects_are_followed_and_each_hop_is_checked(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    resolver = StubResolver({"start.example": ["127.0.0.1"], "hop.example": ["10.0.0.1"]})
    fetcher = ImageFetcher(client, ImagePolicy(), resolver=resolver, address_check=loopback_only)
    start = f"http://start.example:{server.port}"

    # Relative and absolute targets on the allowed server work.
    assert await fetcher.fetch(f"{start}/redirect?to=/cat.png") == ("image/png", CAT_PNG)
    target = quote(f"{start}/cat.png", safe="")
    assert await fetcher.fetch(f"{start}/redirect?to={target}") == ("image/png", CAT_PNG)
    assert server.hits["/cat.png"] == 2
    assert {s.headers["host"] for s in server.seen} == {f"start.example:{server.port}"}

    # A hop to a name that resolves privately is refused before it is contacted.
    target = quote(f"http://hop.example:{server.port}/cat.png", safe="")
    with pytest.raises(ImageError, match=r"^refused: the address of hop.example is not allowed$"):
        await fetcher.fetch(f"{start}/redirect?to={target}")
    assert server.hits["/cat.png"] == 2
    assert resolver.calls[-1] == ("hop.example", server.port)

    # So is a hop to a forbidden literal, or to another scheme.
    for bad, why in [
        ("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is not allowed"),
        ("file:///etc/passwd", "unsupported URL scheme 'file'"),
        (CAT_DATA_URL, "unsupported URL scheme 'data'|unusable URL"),
        ("ftp://example.com/cat.png", "unsupported URL scheme 'ftp'"),
    ]:
        with pytest.raises(ImageError, match=why):
            await fetcher.fetch(f"{start}/redirect?to={quote(bad, safe='')}")


def redirect_chain(base: str, hops: int, final: str) -> str:
    """A URL that redirects ``hops`` times through the fake, then lands on ``final``."""
    url = final
    for _ in range(hops):
        url = f"{base}/redirect?to={quote(url, safe='')}"
    return url


async def test_too_many_redirects_are_refused(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    fetcher = ImageFetcher(client, ImagePolicy(allow_private_networks=True, max_redirects=2))
    ok = redirect_chain(server.base_url, 2, f"{server.base_url}/cat.png")
    assert await fetcher.fetch(ok) == ("image/png", CAT_PNG)
    too_many = redirect_chain(server.base_url, 3, f"{server.base_url}/cat.png")
    with pytest.raises(ImageError, match=r"too many redirects \(more than 2\)"):
        await fetcher.fetch(too_many)
    assert server.hits["/cat.png"] == 1


async def test_size_caps(server: FakeImageServer, client: httpx.AsyncClient) -> None:
    fetcher = ImageFetcher(client, ImagePolicy(allow_private_networks=True, max_bytes=100_000))
    with pytest.raises(ImageError, match=r"too large: more than 100000 bytes"):
        await fetcher.fetch(f"{server.base_url}/big.png")
    with trio.fail_after(5):  # refused on the header, not after waiting for the body
        with pytest.raises(ImageError, match=r"too large: 999999999999 bytes declared"):
            await fetcher.fetch(f"{server.base_url}/huge-declared")

    exact = ImageFetcher(client, ImagePolicy(allow_private_networks=True, max_bytes=len(CAT_PNG)))
    assert await exact.fetch(f"{server.base_url}/cat.png") == ("image/png", CAT_PNG)
    short = ImageFetcher(
        client, ImagePolicy(allow_private_networks=True, max_bytes=len(CAT_PNG) - 1)
    )
    with pytest.raises(ImageError, match="too large"):
        await short.fetch(f"{server.base_url}/cat.png")

    whole = ImageFetcher(client, ImagePolicy(allow_private_networks=True, max_bytes=1_000_000))
    mime, data = await whole.fetch(f"{server.base_url}/big.png")
    assert (mime, data) == ("image/png", server.big_png)


async def test_timeout_covers_the_whole_fetch(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    fetcher = ImageFetcher(client, ImagePolicy(allow_private_networks=True, timeout_s=0.3))
    start = trio.current_time()
    with pytest.raises(ImageError, match=r"^timed out after 0.3 s$"):
        await fetcher.fetch(f"{server.base_url}/slow.png?s=5")
    assert trio.current_time() - start < 2


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/page.html", r"not an image: content type 'text/html; charset=utf-8'"),
        ("/missing", r"the server answered HTTP 404"),
    ],
)
async def test_non_images_and_errors_are_refused(
    server: FakeImageServer, client: httpx.AsyncClient, path: str, why: str
) -> None:
    fetcher = ImageFetcher(client, ALLOW_PRIVATE)
    with pytest.raises(ImageError, match=why):
        await fetcher.fetch(f"{server.base_url}{path}")


async def test_compressed_and_empty_bodies_are_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gz.png":
            headers = {"content-type": "image/png", "content-encoding": "gzip"}
            return httpx.Response(200, headers=headers, content=b"\x1f\x8b")
        return httpx.Response(200, headers={"content-type": "image/png"}, content=b"")

    resolver = StubResolver({"public.example": ["93.184.216.34"]})
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as mock:
        fetcher = ImageFetcher(mock, ImagePolicy(), resolver=resolver)
        with pytest.raises(ImageError, match="compressed responses are not accepted"):
            await fetcher.fetch("https://public.example/gz.png")
        with pytest.raises(ImageError, match="empty body"):
            await fetcher.fetch("https://public.example/empty.png")


# ---------------------------------------------------------------------------------------------
# TLS: the certificate is verified against the name in the URL, not the address connected to


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA and a server certificate for ``public.example``, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("tls")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=llm-proxy test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    run("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=public.example")
    (d / "leaf.ext").write_text(
        "subjectAltName=DNS:public.example\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n"
    )
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext")  # fmt: skip
    return {"ca": d / "ca.pem", "cert": d / "leaf.pem", "key": d / "leaf.key"}


async def test_https_verifies_the_url_name_while_connecting_to_the_checked_address(
    nursery: trio.Nursery, tls_files: dict[str, Path]
) -> None:
    server = FakeImageServer()
    await nursery.start(
        partial(server.run, certfile=str(tls_files["cert"]), keyfile=str(tls_files["key"]))
    )
    resolver = StubResolver({"public.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    context = ssl.create_default_context(cafile=str(tls_files["ca"]))
    async with httpx.AsyncClient(verify=context) as tls_client:
        fetcher = ImageFetcher(
            tls_client, ImagePolicy(), resolver=resolver, address_check=loopback_only
        )
        url = f"https://public.example:{server.port}/cat.png"
        assert await fetcher.fetch(url) == ("image/png", CAT_PNG)
        assert server.seen[0].headers["host"] == f"public.example:{server.port}"

        # The same address under a name the certificate does not carry fails verification.
        for bad in ("other.example", "127.0.0.1"):
            with pytest.raises(ImageError, match=r"(?i)certificate"):
                await fetcher.fetch(f"https://{bad}:{server.port}/cat.png")
    assert server.hits["/cat.png"] == 1


# ---------------------------------------------------------------------------------------------
# inline_remote_images


def test_policy_from_config() -> None:
    policy = ImagePolicy.from_config(
        ImagesConfig(max_bytes=1234, fetch_timeout_s=2, allow_private_networks=True)
    )
    assert (policy.max_bytes, policy.timeout_s, policy.allow_private_networks) == (1234, 2.0, True)
    assert policy.max_redirects == 5
    assert policy.max_total_bytes >= policy.max_bytes
    assert ImagePolicy.from_config(ImagesConfig()) == ImagePolicy()


async def test_inline_fetches_each_distinct_url_once_and_rewrites_both_views(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    first = f"{server.base_url}/cat.png"
    second = f"{server.base_url}/cat.png?copy=2"
    request = chat(
        {"type": "text", "text": "What are these?"},
        image(first, "high"),
        image(first),
        image(CAT_DATA_URL, "low"),
        image(second, "auto"),
    )
    raw_before = copy.deepcopy(request.raw)

    inlined = await inline_remote_images(request, ImageFetcher(client, ALLOW_PRIVATE))

    assert server.hits["/cat.png"] == 2
    assert sorted(s.query for s in server.seen) == ["", "copy=2"]
    expected = [
        (CAT_DATA_URL, "high"),
        (CAT_DATA_URL, None),
        (CAT_DATA_URL, "low"),
        (CAT_DATA_URL, "auto"),
    ]
    assert urls_of(inlined) == expected
    assert raw_urls_of(inlined.raw) == expected
    assert inlined.raw["metadata"] == {"kept": True}
    assert inlined.raw["messages"][1]["name"] == "ann"
    assert inlined.form().messages[0] == request.form().messages[0]
    assert inlined.has_images
    assert inlined.model == request.model
    # The original request is untouched, in both views.
    assert request.raw == raw_before
    assert urls_of(request) == [
        (first, "high"),
        (first, None),
        (CAT_DATA_URL, "low"),
        (second, "auto"),
    ]
    # The rewritten raw body is still what decode_chat_request accepts.
    again = decode_chat_request(msgspec.json.encode(inlined.raw))
    assert again.form() == inlined.form()


async def test_requests_without_remote_images_come_back_unchanged(
    guarded_client: httpx.AsyncClient,
) -> None:
    fetcher = ImageFetcher(guarded_client, ImagePolicy())
    for request in (
        chat({"type": "text", "text": "hi"}),
        chat(image(CAT_DATA_URL), image(CAT_DATA_URL, "high")),
        decode_chat_request(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'),
    ):
        assert await inline_remote_images(request, fetcher) is request


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("/missing", "the server answered HTTP 404"),
        ("/page.html", "not an image"),
        ("ftp://example.com/cat.png", "unsupported URL scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported URL scheme 'file'"),
        ("cat.png", "unsupported URL scheme none"),
        ("data:text/plain;base64,aGk=", "image/\\* type"),
        ("data:image/png;base64,@@", "does not decode"),
    ],
)
async def test_an_unusable_image_names_its_part(
    server: FakeImageServer, client: httpx.AsyncClient, bad: str, why: str
) -> None:
    url = f"{server.base_url}{bad}" if bad.startswith("/") else bad
    request = chat(
        {"type": "text", "text": "look"}, image(f"{server.base_url}/cat.png"), image(url)
    )
    with pytest.raises(InvalidRequest, match=why) as caught:
        await inline_remote_images(request, ImageFetcher(client, ALLOW_PRIVATE))
    error = caught.value
    assert error.param == "messages[1].content[2].image_url"
    assert error.message.startswith("Image at messages[1].content[2].image_url could not be used: ")
    assert error.status == 400
    assert error.code == "invalid_image_url"


async def test_a_refused_address_is_an_invalid_request(
    guarded_client: httpx.AsyncClient, no_traffic: NoTraffic
) -> None:
    request = chat(image("http://169.254.169.254/latest/meta-data/iam"))
    with pytest.raises(InvalidRequest, match="is not allowed") as caught:
        await inline_remote_images(request, ImageFetcher(guarded_client, ImagePolicy()))
    assert caught.value.param == "messages[1].content[0].image_url"
    assert no_traffic.requests == []


async def test_data_urls_count_against_max_bytes(guarded_client: httpx.AsyncClient) -> None:
    request = chat(image(CAT_DATA_URL))
    small = ImageFetcher(guarded_client, ImagePolicy(max_bytes=len(CAT_PNG) - 1))
    with pytest.raises(InvalidRequest, match="too large") as caught:
        await inline_remote_images(request, small)
    assert caught.value.param == "messages[1].content[0].image_url"
    exact = ImageFetcher(guarded_client, ImagePolicy(max_bytes=len(CAT_PNG)))
    assert await inline_remote_images(request, exact) is request


async def test_images_are_fetched_concurrently_within_a_bound(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    urls = [f"{server.base_url}/slow.png?s=0.3&n={n}" for n in range(4)]
    request = chat(*(image(url) for url in urls[:3]))
    await inline_remote_images(request, ImageFetcher(client, ALLOW_PRIVATE))
    assert server.max_in_flight == 3

    server.max_in_flight = 0
    bounded = ImageFetcher(client, ImagePolicy(allow_private_networks=True, max_concurrent=2))
    inlined = await inline_remote_images(chat(*(image(url) for url in urls)), bounded)
    assert server.max_in_flight == 2
    assert [url for url, _ in urls_of(inlined)] == [CAT_DATA_URL] * 4


async def test_fetches_of_all_requests_share_one_bound(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    policy = ImagePolicy(allow_private_networks=True, max_fetches=2, max_fetches_per_client=2)
    fetcher = ImageFetcher(client, policy)
    requests = [
        chat(*(image(f"{server.base_url}/slow.png?s=0.2&r={r}&n={n}") for n in range(2)))
        for r in range(3)
    ]

    async def inline(request: ChatRequest, client: str) -> None:
        with fetcher.lease(client) as lease:
            await inline_remote_images(request, fetcher, lease)

    async with trio.open_nursery() as nursery:
        for r, request in enumerate(requests):
            nursery.start_soon(inline, request, f"client-{r}")
    assert server.hits["/slow.png"] == 6
    assert server.max_in_flight == 2


async def test_the_first_failure_stops_the_other_fetches(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    request = chat(image(f"{server.base_url}/slow.png?s=30"), image(f"{server.base_url}/missing"))
    fetcher = ImageFetcher(client, ImagePolicy(allow_private_networks=True, timeout_s=60))
    with trio.fail_after(5):
        with pytest.raises(InvalidRequest, match="HTTP 404") as caught:
            await inline_remote_images(request, fetcher)
    assert caught.value.param == "messages[1].content[1].image_url"


async def test_a_duplicated_failing_url_names_its_first_use(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    missing = f"{server.base_url}/missing"
    request = chat(image(CAT_DATA_URL), image(missing), image(missing))
    with pytest.raises(InvalidRequest) as caught:
        await inline_remote_images(request, ImageFetcher(client, ALLOW_PRIVATE))
    assert caught.value.param == "messages[1].content[1].image_url"
    assert server.hits["/missing"] == 1


async def test_images_of_one_request_share_a_byte_budget(
    server: FakeImageServer, client: httpx.AsyncClient
) -> None:
    policy = ImagePolicy(allow_private_networks=True, max_total_bytes=2 * len(CAT_PNG) - 1)
    request = chat(image(f"{server.base_url}/cat.png?a"), image(f"{server.base_url}/cat.png?b"))
    with pytest.raises(InvalidRequest, match="together exceed"):
        await inline_remote_images(request, ImageFetcher(client, policy))
