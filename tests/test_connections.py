"""Client connections hold no socket longer than they should (issue 13, item 5).

A peer that closes is noticed at once; a connection that sends no request is closed after
``server.header_timeout_s``, an idle keep-alive one after ``server.keep_alive_timeout_s``; at
``server.max_connections`` the oldest idle connection makes room, and when every connection is
busy a new one is closed at accept. Long streams are cut by none of this.
"""

from __future__ import annotations

import logging
import re
import resource
from collections import Counter
from pathlib import Path

import httpx
import pytest
import trio

from proxy.config import ConfigError
from proxy.service import RunningService
from tests.conftest import CLIENT_KEY, StartGateway, make_config
from tests.fakes.openai_upstream import DEFAULT_API_KEY, Echo, FakeOpenAI
from tests.process import CLIENT_KEY as PROCESS_KEY
from tests.process import serve, write_config
from tests.raw_http import RawConnection, head
from web.connections import RESERVED_FILES, connection_limit

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}


def server_side_sockets(base_url: str) -> Counter[str]:
    """The states of the TCP sockets whose local address is the server's (127.0.0.1:port)."""
    local = f"0100007F:{int(base_url.rsplit(':', 1)[1]):04X}"  # /proc/net/tcp's notation
    states: Counter[str] = Counter()
    with open("/proc/net/tcp") as lines:
        for line in lines:
            fields = line.split()
            if fields[1] == local:
                states[TCP_STATES.get(fields[3], fields[3])] += 1
    return states


def metric(text: str, name: str) -> float:
    """One sample of the /metrics page, by its full name with labels."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} is not on /metrics"
    return float(match.group(1))


async def closed_at_once(base_url: str) -> bool:
    """Whether a new connection is closed by the server without an answer, and soon."""
    try:
        connection = await RawConnection.open(base_url)
        await connection.send(head("GET", "/healthz"))
    except (OSError, trio.BrokenResourceError):  # the reset came before the request went out
        return True
    return await connection.closed_by_server(timeout=2)


def chat(stream: bool = False) -> dict[str, object]:
    return {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "stream": stream}


@pytest.fixture
def upstream(fake_openai: FakeOpenAI) -> dict[str, object]:
    return {
        "providers": {"openai": {"base_url": fake_openai.base_url, "api_key": DEFAULT_API_KEY}},
        "models": {"fast": {"provider": "openai", "model": "gpt-4o-mini"}},
    }


async def test_a_peer_that_closes_is_noticed_at_once(gateway: RunningService) -> None:
    for n in range(20):
        connection = await RawConnection.open(gateway.base_url)
        if n % 2:
            await connection.send(b"GET /healthz HTTP/1.1\r\n")  # half a request head
        await connection.aclose()
    # Polled on the real clock: the server's sockets must not wait in CLOSE_WAIT for a timer.
    with trio.move_on_after(5):
        while server_side_sockets(gateway.base_url)["CLOSE_WAIT"]:
            await trio.sleep(0.05)
    assert server_side_sockets(gateway.base_url)["CLOSE_WAIT"] == 0


async def test_a_connection_without_a_request_is_closed_after_the_header_timeout(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway({"server": {"header_timeout_s": 0.5}})
    silent = await RawConnection.open(gateway.base_url)
    trickling = await RawConnection.open(gateway.base_url)
    # A head that never ends: no blank line.
    await trickling.send(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n")
    opened = trio.current_time()
    assert await silent.closed_by_server(timeout=5)
    assert trio.current_time() - opened >= 0.45  # not before its time
    assert await trickling.closed_by_server(timeout=5)


async def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway({"server": {"keep_alive_timeout_s": 0.5}})
    connection = await RawConnection.open(gateway.base_url)
    for _ in range(3):  # served one after the other within the keep-alive timeout
        await connection.send(head("GET", "/healthz"))
        answer = await connection.response(timeout=5)
        assert answer is not None
        assert answer.status == 200
    answered = trio.current_time()
    assert await connection.closed_by_server(timeout=5)
    assert trio.current_time() - answered >= 0.45


async def test_a_slow_stream_outlives_the_header_and_keep_alive_timeouts(
    start_gateway: StartGateway, fake_openai: FakeOpenAI, upstream: dict[str, object]
) -> None:
    gateway = await start_gateway(
        {**upstream, "server": {"header_timeout_s": 0.3, "keep_alive_timeout_s": 0.3}}
    )
    fake_openai.enqueue(Echo(text="one two three four five six", chunks=6, chunk_interval_s=0.25))
    async with httpx.AsyncClient(base_url=gateway.base_url, headers=AUTH, timeout=10) as client:
        lines: list[str] = []
        async with client.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as r:
            assert r.status_code == 200
            lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        assert "six" in "".join(lines)
        # The same pooled connection serves the next call.
        assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200
    assert gateway.gateway.connections.statistics().accepted == 1


async def test_at_the_limit_the_oldest_idle_connection_makes_room(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway({"server": {"max_connections": 4}})
    bare = [await RawConnection.open(gateway.base_url) for _ in range(6)]
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as client:
        assert (await client.get("/healthz")).status_code == 200
        # The three oldest made room for the three that came after them.
        for connection in bare[:3]:
            assert await connection.closed_by_server(timeout=5)
        for connection in bare[3:]:
            assert not await connection.closed_by_server(timeout=0.05)
        page = (await client.get("/metrics")).text
    assert metric(page, 'llm_proxy_connections_shed_total{reason="idle_closed"}') == 3
    assert metric(page, 'llm_proxy_connections_shed_total{reason="refused"}') == 0
    assert metric(page, "llm_proxy_connections_open") == 4
    assert metric(page, "llm_proxy_connections_max") == 4


async def test_at_the_limit_with_every_connection_busy_new_ones_are_closed_at_accept(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start_gateway({"server": {"max_connections": 3}})
    busy = []
    for _ in range(3):  # each one a call whose body is still on its way
        connection = await RawConnection.open(gateway.base_url)
        await connection.send(head("POST", "/v1/chat/completions", length=100, headers=AUTH))
        busy.append(connection)
    await trio.sleep(0.1)
    for _ in range(5):
        assert await closed_at_once(gateway.base_url)
    refusals = [r for r in caplog.records if "max_connections" in r.getMessage()]
    assert len(refusals) == 1, "refusals are logged at most once per interval"
    assert refusals[0].levelno == logging.WARNING
    await busy[0].aclose()  # room for one more
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=5) as client:
        with trio.fail_after(5):
            while True:
                try:
                    page = (await client.get("/metrics")).text
                    break
                except httpx.TransportError:  # the closed call has not been noticed yet
                    await trio.sleep(0.05)
    assert metric(page, 'llm_proxy_connections_shed_total{reason="refused"}') >= 5
    for connection in busy[1:]:
        await connection.aclose()


def test_the_limit_follows_the_open_files_limit_unless_configured() -> None:
    assert connection_limit(0, 1024) == (1024 - RESERVED_FILES) // 2
    assert connection_limit(0, 65536) == (65536 - RESERVED_FILES) // 2
    assert connection_limit(0, 100) == 16  # a floor, whatever the limit
    assert connection_limit(0, resource.RLIM_INFINITY) > 100_000
    assert connection_limit(300, 1024) == 300


def test_timeouts_and_limit_are_checked(tmp_path: Path) -> None:
    for key, value in (
        ("header_timeout_s", 0),
        ("keep_alive_timeout_s", -1),
        ("max_connections", -5),
    ):
        with pytest.raises(ConfigError, match=f"server.{key}"):
            make_config(tmp_path, {"server": {key: value}})


async def test_bare_connections_do_not_starve_health_checks_or_calls(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """The review's scenario: 500 connections that send nothing, against 400 open files."""
    config = write_config(
        tmp_path / "config.toml",
        upstream_url=fake_openai.base_url,
        upstream_key=DEFAULT_API_KEY,
        graceful_timeout_s=5,
    )
    async with serve(config, tmp_path / "gateway.db", tmp_path, open_files=400) as server:
        bare = []
        for _ in range(500):
            bare.append(await trio.open_tcp_stream("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
        async with httpx.AsyncClient(base_url=server.url, timeout=5, trust_env=False) as client:
            with trio.fail_after(10):
                assert (await client.get("/healthz")).status_code == 200
                call = await client.post(
                    "/v1/chat/completions",
                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"authorization": f"Bearer {PROCESS_KEY}"},
                )
                assert call.status_code == 200, call.text
                page = (await client.get("/metrics")).text
        assert metric(page, "llm_proxy_connections_open") <= (400 - RESERVED_FILES) // 2
        for stream in bare:
            await stream.aclose()


async def test_out_of_descriptors_the_server_pauses_accepting_and_recovers(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """A max_connections above what the open files carry: accept fails with EMFILE for a while;
    the failure is logged, not once per try, and serving resumes as connections close."""
    config = write_config(
        tmp_path / "config.toml",
        upstream_url=fake_openai.base_url,
        upstream_key=DEFAULT_API_KEY,
        graceful_timeout_s=5,
    )
    text = config.read_text().replace(
        "[server]\n", "[server]\nmax_connections = 1000\nheader_timeout_s = 1.0\n"
    )
    config.write_text(text)
    async with serve(config, tmp_path / "gateway.db", tmp_path, open_files=200) as server:
        assert "more than the open files limit" in server.stderr
        port = int(server.url.rsplit(":", 1)[1])
        bare = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(300)]
        await trio.sleep(0.5)  # the server is out of descriptors meanwhile
        async with httpx.AsyncClient(base_url=server.url, timeout=5, trust_env=False) as client:
            with trio.fail_after(10):  # the bare connections time out, and room comes back
                assert (await client.get("/healthz")).status_code == 200
        complaints = [line for line in server.lines if "accept failed" in line]
        assert 1 <= len(complaints) <= 2, complaints
        for stream in bare:
            await stream.aclose()
