"""``llm-proxy monitor``: clients by name, colour only on a terminal, the dashboard's money
format, and an http(s):// URL turned into the feed's ws(s):// URL."""

from __future__ import annotations

import io
import os
import pty
import re
import signal
import subprocess
from typing import Any

import pytest
import trio

from proxy.monitor.call_line import format_cost, format_header, format_request
from proxy.monitor.colour import use_colour
from proxy.monitor.errors import MonitorError
from proxy.monitor.feed_view import FeedView
from proxy.monitor.urls import check_url
from proxy.service import RunningService
from tests.conftest import StartGateway, sdk, signed_in
from tests.process import CLI, ROOT, clean_env
from tests.test_monitor import REQUEST

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_a_call_shows_its_clients_name() -> None:
    named = {**REQUEST, "client_id": "cl_0123456789abcdef", "client_name": "Team Alpha"}
    line = format_request(named, 120)
    assert "Team Alpha" in line
    assert "cl_0123456789abcdef" not in line
    # No name (a deleted client, a gateway from before names): the id; a static key: "static".
    unnamed = {**REQUEST, "client_id": "cl_0123456789abcdef", "client_name": None}
    assert "cl_0123456789abcdef"[:12] in format_request(unnamed, 160)
    assert " static " in format_request(REQUEST, 120)
    evil = {**named, "client_name": "Team\x1b[2J\r\nAlpha"}
    assert "\x1b" not in format_request(evil, 120)


def test_money_as_the_dashboard_shows_it() -> None:
    """Two significant digits below a cent (a priced call never looks free), cents above."""
    costs = (0.000012, 0.0031, 1.24, 0.000219, 0.5, 0.00999, 1234.5, 0, None, float("nan"))
    assert [format_cost(c) for c in costs] == [
        "$0.000012",
        "$0.0031",
        "$1.24",
        "$0.00022",
        "$0.50",
        "$0.01",
        "$1,234.50",
        "$0.00",
        "-",
        "-",
    ]
    # The column is wide enough for the small amounts.
    line = format_request({**REQUEST, "cost_usd": 0.000012}, 100)
    assert "$0.000012" in line


def test_totals_use_the_same_money_format() -> None:
    view = FeedView(120, totals_every=1)
    (_line, totals) = view.on_frame({**REQUEST, "cost_usd": 0.000012})
    assert totals.endswith(", $0.000012")


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_colour_only_on_a_terminal_without_no_color() -> None:
    assert use_colour(Stream(tty=True), {})
    assert use_colour(Stream(tty=True), {"NO_COLOR": ""})  # empty: not set (no-color.org)
    assert not use_colour(Stream(tty=True), {"NO_COLOR": "1"})
    assert not use_colour(Stream(tty=False), {})
    assert not use_colour(Stream(tty=True), {"TERM": "dumb"})


@pytest.mark.parametrize("width", [40, 60, 100, 140])
def test_status_colours_keep_the_line_within_the_width(width: int) -> None:
    failed = {**REQUEST, "status": "error", "http_status": 502, "error_type": "upstream_error"}
    cases: list[tuple[dict[str, Any], str]] = [
        (REQUEST, "\x1b[32m"),  # ok: green
        (failed, "\x1b[31m"),  # error: red
        ({**REQUEST, "status": "cancelled"}, "\x1b[33m"),  # cancelled: yellow
    ]
    for frame, colour in cases:
        plain = format_request(frame, width)
        painted = format_request(frame, width, colour=True)
        assert colour in painted
        assert ANSI.sub("", painted) == plain
        assert "\x1b" not in plain
    assert ANSI.sub("", format_header(width, colour=True)) == format_header(width)


def test_http_urls_become_the_feeds_url() -> None:
    assert check_url("http://127.0.0.1:8080") == "ws://127.0.0.1:8080/api/ws"
    assert check_url("http://127.0.0.1:8080/") == "ws://127.0.0.1:8080/api/ws"
    assert check_url("https://gw.example.com") == "wss://gw.example.com/api/ws"
    assert check_url("https://gw.example.com/llm/") == "wss://gw.example.com/llm/api/ws"
    assert check_url("http://[::1]:9000/api/ws") == "ws://[::1]:9000/api/ws"
    assert check_url("ws://127.0.0.1:8080/api/ws") == "ws://127.0.0.1:8080/api/ws"
    assert check_url("wss://gw.example.com") == "wss://gw.example.com/api/ws"
    with pytest.raises(MonitorError, match="header"):
        check_url("https://gw.example.com/?token=secret")
    with pytest.raises(MonitorError, match="http://"):
        check_url("ftp://gw.example.com/api/ws")


# --- against a real gateway -----------------------------------------------------------------


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> RunningService:
    return await start_gateway(
        {
            "limits": {"default_client_requests_per_minute": 0},
            "providers": {"ollama": {"enabled": False}},
        }
    )


async def test_the_command_takes_the_http_url_and_names_clients(gateway: RunningService) -> None:
    async with signed_in(gateway) as admin:
        made = await admin.post("/api/clients", json={"name": "Team Alpha"})
        assert made.status_code == 201, made.text
        key = made.json()["token"]
        token = admin.headers["authorization"].removeprefix("Bearer ")
        # stdout is a pipe: no colour, whatever the environment says.
        env = {**clean_env(), "LLM_PROXY_TOKEN": token, "COLUMNS": "100", "TERM": "xterm"}
        env.pop("NO_COLOR", None)
        process = await trio.lowlevel.open_process(
            [*CLI, "monitor", "--url", gateway.base_url],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        output = b""
        try:
            with trio.fail_after(30):
                while b"connected as admin" not in output:
                    output += await process.stdout.receive_some()
                async with sdk(gateway, key) as client:
                    await client.chat.completions.create(
                        model="mock", messages=[{"role": "user", "content": "hi"}]
                    )
                while b" mock " not in output:
                    output += await process.stdout.receive_some()
                process.send_signal(signal.SIGINT)
                async for data in process.stdout:
                    output += data
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = output.decode()
    (line,) = [line for line in text.splitlines() if " mock " in line]
    assert "Team Alpha" in line
    assert made.json()["id"] not in text
    assert "\x1b" not in text
    assert os.environ.get("LLM_PROXY_TOKEN") != token


async def run_monitor_on_a_terminal(gateway: RunningService, env: dict[str, str]) -> str:
    """Run ``llm-proxy monitor`` with stdout on a pseudo-terminal through one call; its output."""
    main, terminal = pty.openpty()
    try:
        process = await trio.lowlevel.open_process(
            [*CLI, "monitor", "--url", gateway.base_url],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=terminal,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(terminal)
    output = b""
    stream = trio.lowlevel.FdStream(main)
    try:
        with trio.fail_after(30):
            while b"connected as admin" not in output:
                output += await stream.receive_some()
            async with sdk(gateway) as client:
                await client.chat.completions.create(
                    model="mock", messages=[{"role": "user", "content": "hi"}]
                )
            while b" mock " not in output:
                output += await stream.receive_some()
    finally:
        process.kill()
        await process.wait()
        await stream.aclose()
    return output.decode()


async def test_colour_on_a_terminal_unless_no_color(gateway: RunningService) -> None:
    async with signed_in(gateway) as admin:
        token = admin.headers["authorization"].removeprefix("Bearer ")
        env = {**clean_env(), "LLM_PROXY_TOKEN": token, "COLUMNS": "100", "TERM": "xterm"}
        env.pop("NO_COLOR", None)
        coloured = await run_monitor_on_a_terminal(gateway, env)
        plain = await run_monitor_on_a_terminal(gateway, {**env, "NO_COLOR": "1"})
    (line,) = [line for line in coloured.splitlines() if " mock " in line]
    assert "\x1b[32mok\x1b[0m" in line
    assert "\x1b" not in plain
