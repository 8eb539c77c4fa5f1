"""``server.allowed_hosts``: a page whose DNS name was rebound to the gateway cannot use it.

A browser always sends the name it resolved as ``Host`` (pages cannot forge it), so a page on
``rebind.attacker.example`` that points its name at 127.0.0.1 is recognised by its ``Host``. These
tests start the whole gateway and send raw requests with chosen ``Host`` headers.
"""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway

EVIL = "rebind.attacker.example"
HELLO = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
ONLY_MOCK = {"providers": {"ollama": {"enabled": False}}}


def port_of(gateway: RunningService) -> int:
    return int(gateway.base_url.rsplit(":", 1)[1])


def client(gateway: RunningService) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.base_url, timeout=10, trust_env=False)


def assert_host_refused(response: httpx.Response, host: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "host_not_allowed"
    assert error["param"] is None
    assert host in error["message"]
    assert "server.allowed_hosts" in error["message"]


# --- end to end -------------------------------------------------------------------------------


async def test_a_rebinding_page_cannot_call_v1_in_demo_mode(start_gateway: StartGateway) -> None:
    # Demo mode: no key configured, only the free mock, loopback: calls without a key pass.
    gateway = await start_gateway({"auth": {"tokens": []}, **ONLY_MOCK})
    port = port_of(gateway)
    async with client(gateway) as http:
        local = await http.post("/v1/chat/completions", json=HELLO)
        assert local.status_code == 200, local.text
        rebound = await http.post(
            "/v1/chat/completions", json=HELLO, headers={"host": f"{EVIL}:{port}"}
        )
        assert_host_refused(rebound, EVIL)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/api/auth/status"),
        ("POST", "/api/auth/login"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/"),
        ("GET", "/static/js/api.js"),
        ("GET", "/no/such/page"),
    ],
)
async def test_every_route_refuses_an_unknown_host_on_loopback(
    start_gateway: StartGateway, method: str, path: str
) -> None:
    gateway = await start_gateway(ONLY_MOCK)
    async with client(gateway) as http:
        refused = await http.request(
            method, path, headers={"host": f"{EVIL}:{port_of(gateway)}"}, json={}
        )
    assert_host_refused(refused, EVIL)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:{port}",
        "localhost:{port}",
        "LOCALHOST:{port}",
        "localhost.:{port}",
        "[::1]:{port}",
        "[::1]",
        "dashboard.localhost:{port}",
        "192.0.2.10:{port}",  # an address is never a rebound name
    ],
)
async def test_loopback_names_and_addresses_pass(start_gateway: StartGateway, host: str) -> None:
    gateway = await start_gateway(ONLY_MOCK)
    value = host.format(port=port_of(gateway))
    async with client(gateway) as http:
        models = await http.get(
            "/v1/models", headers={"host": value, "authorization": f"Bearer {CLIENT_KEY}"}
        )
        health = await http.get("/healthz", headers={"host": value})
    assert models.status_code == 200, models.text
    assert health.status_code == 200, health.text


async def test_a_request_without_host_passes(start_gateway: StartGateway) -> None:
    # HTTP/1.0 may leave Host out; a browser never does, so no rebound page can.
    gateway = await start_gateway(ONLY_MOCK)
    head = await raw_exchange(gateway, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head


async def raw_exchange(gateway: RunningService, request: bytes) -> bytes:
    """Send raw bytes, return everything the server answers until it closes (or 5 s)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(gateway))
    async with stream:
        await stream.send_all(request)
        received = b""
        with trio.move_on_after(5):
            while chunk := await stream.receive_some(65536):
                received += chunk
                if b"\r\n\r\n" in received and b"101 Switching" in received:
                    break
    return received


def websocket_handshake(host: str) -> bytes:
    return (
        "GET /api/ws HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def test_the_live_feed_refuses_an_unknown_host_before_the_upgrade(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(ONLY_MOCK)
    port = port_of(gateway)
    refused = await raw_exchange(gateway, websocket_handshake(f"{EVIL}:{port}"))
    assert refused.startswith(b"HTTP/1.1 400"), refused
    assert b"host_not_allowed" in refused, refused
    # The same handshake from the right name reaches the feed (which wants a session).
    allowed = await raw_exchange(gateway, websocket_handshake(f"127.0.0.1:{port}"))
    assert allowed.startswith(b"HTTP/1.1 401"), allowed


async def test_configured_names_and_wildcards(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(
        {"server": {"allowed_hosts": ["gw.example", "*.corp.example"]}, **ONLY_MOCK}
    )
    async with client(gateway) as http:

        async def status(host: str) -> int:
            return (await http.get("/healthz", headers={"host": host})).status_code

        for good in ("gw.example", "GW.Example.:8080", "a.corp.example", "x.y.corp.example:1"):
            assert await status(good) == 200, good
        for bad in ("corp.example", "gw.example.evil", "evilgw.example", "xcorp.example"):
            assert await status(bad) == 400, bad
        # Addresses and loopback names stay allowed: none of them can be a rebound name.
        assert await status("127.0.0.1") == 200
        assert await status("localhost:1234") == 200
        # A malformed Host is refused too, and the message quotes it safely.
        broken = await http.get("/healthz", headers={"host": "gw.example:80:80"})
        assert_host_refused(broken, "gw.example:80:80")


async def test_star_accepts_every_host(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"server": {"allowed_hosts": ["*"]}, **ONLY_MOCK})
    async with client(gateway) as http:
        assert (await http.get("/healthz", headers={"host": EVIL})).status_code == 200


async def test_on_all_interfaces_every_host_passes_and_the_start_says_so(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="llm_proxy"):
        gateway = await start_gateway({"server": {"host": "0.0.0.0"}, **ONLY_MOCK})
    warnings = [r.getMessage() for r in caplog.records if "allowed_hosts" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "0.0.0.0" in warnings[0]
    async with client(gateway) as http:
        assert (await http.get("/healthz", headers={"host": "llm.corp.example"})).status_code == 200


async def test_behind_a_proxy_the_forwarded_host_is_checked_too(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(
        {"server": {"trusted_proxy_hops": 1, "allowed_hosts": ["gw.example"]}, **ONLY_MOCK}
    )
    async with client(gateway) as http:

        async def status(host: str, forwarded: str | None) -> int:
            headers = {"host": host}
            if forwarded is not None:
                headers["x-forwarded-host"] = forwarded
            return (await http.get("/healthz", headers=headers)).status_code

        # nginx's default: Host is the upstream address, X-Forwarded-Host the browser's name.
        assert await status("127.0.0.1:8080", "gw.example") == 200
        # Caddy and Traefik pass the browser's Host through.
        assert await status("gw.example", "gw.example") == 200
        assert await status("gw.example", None) == 200
        # A rebound name reaching the proxy is forwarded as X-Forwarded-Host...
        assert await status("127.0.0.1:8080", EVIL) == 400
        # ...and a page reaching the gateway directly cannot hide its Host behind the header.
        assert await status(EVIL, "gw.example") == 400
        # Only the value the trusted proxy appended counts, not one the client sent before it.
        assert await status("127.0.0.1", f"{EVIL}, gw.example") == 200
        assert await status("127.0.0.1", f"gw.example, {EVIL}") == 400


async def test_behind_a_proxy_by_default_the_proxy_decides(start_gateway: StartGateway) -> None:
    gateway = await start_gateway({"server": {"trusted_proxy_hops": 1}, **ONLY_MOCK})
    async with client(gateway) as http:
        response = await http.get(
            "/healthz", headers={"host": "gw.example", "x-forwarded-host": "gw.example"}
        )
    assert response.status_code == 200
