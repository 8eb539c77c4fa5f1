"""``llm-proxy monitor``: the lines it prints, against a real gateway, through reconnects."""

from __future__ import annotations

import importlib
import json
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketRequest, open_websocket_url, serve_websocket

from proxy.monitor.call_line import (
    compact_int,
    format_cost,
    format_header,
    format_latency,
    format_request,
    layout,
)
from proxy.monitor.credentials import PasswordLogin, StaticToken, credentials_from
from proxy.monitor.errors import MonitorError
from proxy.monitor.feed_view import FeedView, Totals, format_totals
from proxy.monitor.urls import check_url, is_plaintext_remote, login_url, url_from_config
from proxy.monitor.watch import watch
from proxy.service import RunningService
from tests.conftest import ADMIN_PASSWORD, StartGateway, logged, sdk, signed_in
from tests.process import CLI, ROOT, clean_env

live = importlib.import_module("web.api.live")

REQUEST: dict[str, Any] = {
    "type": "request",
    "request_id": "req-1",
    "ts_ms": 1_700_000_000_000,
    "client_id": "static",
    "provider": "openai",
    "model": "gpt-4o-mini",
    "status": "ok",
    "http_status": 200,
    "prompt_tokens": 1234,
    "completion_tokens": 56,
    "total_tokens": 1290,
    "cost_usd": 0.000219,
    "latency_ms": 842.4,
    "alias": None,
}


class Lines:
    """An output sink for the monitor that tests can wait on."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = trio.Event()

    async def emit(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(
        self, predicate: Callable[[list[str]], bool], timeout: float = 15
    ) -> list[str]:
        with trio.fail_after(timeout):
            while not predicate(self.lines):
                await self._changed.wait()
        return self.lines

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


# --- formatting -----------------------------------------------------------------------------


def test_a_call_in_one_line() -> None:
    line = format_request(REQUEST, 100)
    for part in ("static", "gpt-4o-mini", "openai", "ok", "1234/56", "$0.0002", "842ms"):
        assert part in line
    assert len(line) <= 100


@pytest.mark.parametrize("width", [40, 50, 60, 72, 80, 100, 160])
def test_narrow_terminals_truncate_instead_of_wrapping(width: int) -> None:
    frame = {**REQUEST, "model": "a-very-long-model-name-from-some-provider-2025-12-01-preview"}
    line = format_request(frame, width)
    assert len(line) <= width
    columns = layout(width)
    assert sum(w for _, w in columns) + len(columns) - 1 <= width
    # What matters most stays: the model (cut), the status, the tokens, the latency.
    assert "a-very-long" in line
    assert "~" in line
    assert " ok " in line
    assert "1234/56" in line
    assert line.endswith("842ms")
    if width >= 60:
        assert "$0.0002" in line


def test_the_api_a_call_came_through_is_shown_where_there_is_room() -> None:
    responses = format_request({**REQUEST, "endpoint": "responses"}, 100)
    assert " resp " in responses
    assert " chat " in format_request(REQUEST, 100)  # a gateway from before endpoints: chat only
    assert " emb " in format_request({**REQUEST, "endpoint": "embeddings"}, 100)
    assert " api " in format_header(100)
    # Narrow terminals drop it first: the model says more.
    assert " resp " not in format_request({**REQUEST, "endpoint": "responses"}, 60)
    unknown = format_request({**REQUEST, "endpoint": "future\x1b[31m"}, 100)
    assert "\x1b" not in unknown


def test_failed_and_cancelled_calls() -> None:
    failed = {**REQUEST, "status": "error", "http_status": 502, "error_type": "upstream_error"}
    assert "err 502" in format_request(failed, 100)
    # The reason follows when the terminal has room for it.
    assert "upstream_error" in format_request(failed, 130)
    assert len(format_request(failed, 100)) <= 100
    cancelled = {**REQUEST, "status": "cancelled", "cost_usd": None, "completion_tokens": None}
    line = format_request(cancelled, 100)
    assert "cancel" in line
    assert "1234/-" in line
    assert " - " in line  # unpriced, not $0


def test_control_characters_from_callers_are_not_printed() -> None:
    frame = {**REQUEST, "model": "evil\x1b]0;owned\x07model", "client_id": "c\r\nlient"}
    line = format_request(frame, 120)
    assert "\x1b" not in line
    assert "\x07" not in line
    assert "\r" not in line
    assert "\n" not in line


def test_numbers() -> None:
    assert [compact_int(n) for n in (0, 9999, 10_000, 123_456, 1_234_567)] == [
        "0",
        "9999",
        "10k",
        "123k",
        "1.2M",
    ]
    assert compact_int(None) == "-"
    assert [format_cost(c) for c in (None, 0, 0.00123, 0.5, 12.345)] == [
        "-",
        "$0.00",
        "$0.0012",
        "$0.50",
        "$12.35",
    ]
    assert [format_latency(ms) for ms in (12.4, 1250, 12_500, 95_000)] == [
        "12ms",
        "1.25s",
        "12.5s",
        "95s",
    ]


def test_totals_every_n_calls_and_on_metrics() -> None:
    view = FeedView(100, totals_every=3)
    assert view.on_frame({"type": "hello", "user": "admin", "role": "admin"})[0] == (
        "-- connected as admin (admin)"
    )
    printed: list[str] = []
    for n in range(4):
        printed += view.on_frame({**REQUEST, "status": "error" if n == 0 else "ok"})
    totals = [line for line in printed if line.startswith("-- totals")]
    assert totals == ["-- totals: 3 calls, 1 error, 3,870 tokens, $0.00066"]
    # A metrics frame sums up the call since then; the next one has nothing new to say.
    assert view.on_frame({"type": "metrics", "dropped": 0}) == [
        "-- totals: 4 calls, 1 error, 5,160 tokens, $0.00088"
    ]
    assert view.on_frame({"type": "metrics", "dropped": 0}) == []
    assert view.on_frame({"type": "metrics", "dropped": 7}) == [
        "-- 7 events lost: this terminal fell behind"
    ]
    assert view.on_frame({"type": "ping"}) == []
    assert view.on_frame({"type": "provider", "name": "openai", "state": "open"}) == [
        "-- provider openai: circuit breaker open"
    ]
    # The column titles come once, not on every reconnect.
    again = view.on_frame({"type": "hello", "user": "admin", "role": "admin"})
    assert len(again) == 1


def test_totals_line() -> None:
    totals = Totals(calls=1, errors=0, tokens=15, cost_usd=0.0, unpriced=1)
    assert (
        format_totals(totals, 100) == "-- totals: 1 call, 0 errors, 15 tokens, $0.00 (+1 unpriced)"
    )
    assert len(format_totals(totals, 30)) == 30


def test_urls() -> None:
    assert url_from_config("0.0.0.0", 9000) == "ws://127.0.0.1:9000/api/ws"
    assert url_from_config("::", 8080) == "ws://[::1]:8080/api/ws"
    assert url_from_config("10.0.0.5", 8080) == "ws://10.0.0.5:8080/api/ws"
    assert login_url("ws://127.0.0.1:8080/api/ws") == "http://127.0.0.1:8080/api/auth/login"
    assert login_url("wss://example.com/llm/api/ws") == "https://example.com/llm/api/auth/login"
    with pytest.raises(MonitorError, match="header"):
        check_url("ws://127.0.0.1:8080/api/ws?token=secret")
    with pytest.raises(MonitorError, match="ws://"):
        check_url("ftp://127.0.0.1:8080/api/ws")
    assert is_plaintext_remote("ws://10.0.0.5:8080/api/ws")
    assert not is_plaintext_remote("ws://127.0.0.1:8080/api/ws")
    assert not is_plaintext_remote("wss://example.com/api/ws")


def test_credentials_from_the_command_line() -> None:
    def no_prompt(prompt: str) -> str:
        raise AssertionError("no password prompt expected")

    url = "ws://127.0.0.1:8080/api/ws"
    token = credentials_from(
        url=url, token=None, user=None, environ={"LLM_PROXY_TOKEN": "t0k"}, ask_password=no_prompt
    )
    assert isinstance(token, StaticToken)
    assert "t0k" not in repr(token)
    with pytest.raises(MonitorError, match="--user"):
        credentials_from(url=url, token=None, user=None, environ={}, ask_password=no_prompt)
    login = credentials_from(
        url=url, token=None, user="admin", environ={}, ask_password=lambda prompt: "pw-secret"
    )
    assert isinstance(login, PasswordLogin)
    assert "pw-secret" not in repr(login)


# --- against a real gateway -----------------------------------------------------------------


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> RunningService:
    return await start_gateway(
        {
            "limits": {"default_client_requests_per_minute": 0},
            "providers": {"ollama": {"enabled": False}},
        }
    )


def ws_url(gateway: RunningService) -> str:
    return gateway.base_url.replace("http://", "ws://", 1) + "/api/ws"


async def call(gateway: RunningService, text: str = "hello monitor") -> None:
    async with sdk(gateway) as client:
        await client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": text}]
        )


def request_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith("-- ")]


async def test_calls_appear_with_totals(gateway: RunningService) -> None:
    out = Lines()
    async with signed_in(gateway) as client:
        token = client.headers["authorization"].removeprefix("Bearer ")
        async with trio.open_nursery() as nursery:
            view = FeedView(100, totals_every=2)
            nursery.start_soon(watch, ws_url(gateway), StaticToken(token), out.emit, view)
            await out.wait_for(lambda lines: any("connected as admin" in line for line in lines))
            for n in range(4):
                await call(gateway, f"call {n}")
            await out.wait_for(lambda lines: any("totals: 4 calls" in line for line in lines))
            nursery.cancel_scope.cancel()
    rows = await logged(gateway, 4)
    calls = [line for line in request_lines(out.lines) if " mock " in line]
    assert len(calls) == 4
    tokens = f"{rows[0]['prompt_tokens']}/{rows[0]['completion_tokens']}"
    for line in calls:
        assert " ok " in line
        assert "static" in line
    assert any(tokens in line for line in calls)
    # (Metrics frames come every 5 s: only the every-2-calls totals are printed here.)
    assert out.matching("-- totals: 2 calls, 0 errors")
    assert out.matching("-- totals: 4 calls, 0 errors")
    assert token not in out.text


async def test_sign_in_with_a_password_and_again_when_the_session_ends(
    gateway: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "METRICS_EVERY_S", 0.2)  # the feed re-checks its session then
    async with signed_in(gateway):  # sets the admin's password to ADMIN_PASSWORD
        pass
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return ADMIN_PASSWORD

    url = ws_url(gateway)
    credentials = credentials_from(
        url=url, token=None, user="admin", environ={}, ask_password=fake_getpass
    )
    assert prompts == ["password for admin: "]
    out = Lines()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, url, credentials, out.emit, FeedView(100))
        await out.wait_for(lambda lines: bool(out.matching("connected as admin")))
        await call(gateway)
        await out.wait_for(lambda lines: bool(out.matching(" mock ")))
        # Every session of the user ends (as on a password change elsewhere): the feed closes
        # with 4401 and the monitor signs in again by itself.
        await gateway.gateway.sessions.revoke_user("admin")
        await out.wait_for(lambda lines: len(out.matching("connected as admin")) == 2)
        await call(gateway)
        await out.wait_for(lambda lines: len(out.matching(" mock ")) == 2)
        nursery.cancel_scope.cancel()
    assert out.matching("4401")
    assert ADMIN_PASSWORD not in out.text
    assert prompts == ["password for admin: "]  # asked once only


async def test_a_wrong_password_stops_the_monitor(gateway: RunningService) -> None:
    async with signed_in(gateway):
        pass
    credentials = PasswordLogin(login_url(ws_url(gateway)), "admin", "not-the-password")
    out = Lines()
    with pytest.raises(MonitorError, match="sign-in refused"), trio.fail_after(15):
        await watch(ws_url(gateway), credentials, out.emit, FeedView(100))


async def test_a_refused_token_stops_the_monitor(gateway: RunningService) -> None:
    out = Lines()
    with pytest.raises(MonitorError, match="no longer valid"), trio.fail_after(15):
        await watch(ws_url(gateway), StaticToken("not-a-session"), out.emit, FeedView(100))
    assert out.matching("the session was refused")


async def test_a_full_feed_is_retried_not_fatal(start_gateway: StartGateway) -> None:
    # After a drop the server may still hold the old socket's place for a while (until it
    # notices the peer is gone): the monitor waits for the place instead of giving up.
    gateway = await start_gateway(
        {
            "dashboard": {"max_live_feeds_per_session": 1},
            "providers": {"ollama": {"enabled": False}},
        }
    )
    out = Lines()
    async with signed_in(gateway) as client:
        token = client.headers["authorization"].removeprefix("Bearer ")
        headers = [(b"authorization", f"Bearer {token}".encode())]
        async with trio.open_nursery() as nursery:
            async with open_websocket_url(ws_url(gateway), extra_headers=headers):
                nursery.start_soon(
                    lambda: watch(
                        ws_url(gateway),
                        StaticToken(token),
                        out.emit,
                        FeedView(100),
                        backoff_first_s=0.05,
                        backoff_max_s=0.1,
                    )
                )
                await out.wait_for(lambda lines: len(out.matching("reconnecting in")) >= 2)
            await out.wait_for(lambda lines: bool(out.matching("connected as admin")))
            nursery.cancel_scope.cancel()
    assert out.matching("HTTP 429")
    assert token not in out.text


async def test_the_command_runs_until_ctrl_c(gateway: RunningService, tmp_path: Path) -> None:
    async with signed_in(gateway) as client:
        token = client.headers["authorization"].removeprefix("Bearer ")
        env = {**clean_env(), "LLM_PROXY_TOKEN": token, "COLUMNS": "70"}
        process = await trio.lowlevel.open_process(
            [*CLI, "monitor", "--url", ws_url(gateway)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stderr is not None
        output = b""
        try:
            with trio.fail_after(30):
                while b"connected as admin" not in output:
                    output += await process.stdout.receive_some()
                await call(gateway)
                while b" mock " not in output:
                    output += await process.stdout.receive_some()
                process.send_signal(signal.SIGINT)
                async for data in process.stdout:
                    output += data
                assert await process.wait() == 0
            errors = b""
            async for data in process.stderr:
                errors += data
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    text = output.decode()
    assert "-- totals: 1 call, 0 errors" in text
    assert all(len(line) <= 70 for line in text.splitlines() if not line.startswith("-- "))
    assert token not in text
    assert token not in errors.decode()
    assert "Traceback" not in errors.decode()


# --- reconnects -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fake_feed(model: str) -> Callable[[WebSocketRequest], Awaitable[None]]:
    """A tiny stand-in for /api/ws: checks the header, says hello, sends one call."""

    async def handler(request: WebSocketRequest) -> None:
        headers = dict(request.headers)
        if headers.get(b"authorization") != b"Bearer tok-123" or "token" in request.path:
            await request.reject(401, body=b'{"error": {"message": "no session"}}')
            return
        socket = await request.accept()
        await socket.send_message(json.dumps({"type": "hello", "user": "ops", "role": "viewer"}))
        await socket.send_message(json.dumps({**REQUEST, "model": model}))
        await trio.sleep_forever()

    return handler


async def serve_fake(model: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    await serve_websocket(
        fake_feed(model), "127.0.0.1", port, ssl_context=None, task_status=task_status
    )


async def test_reconnects_with_backoff_when_the_server_restarts() -> None:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/api/ws"
    out = Lines()
    async with trio.open_nursery() as nursery:
        first = trio.CancelScope()

        async def first_server(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with first:
                await serve_fake("model-one", port, task_status=task_status)

        await nursery.start(first_server)
        view = FeedView(100)
        nursery.start_soon(
            lambda: watch(
                url,
                StaticToken("tok-123"),
                out.emit,
                view,
                backoff_first_s=0.05,
                backoff_max_s=0.2,
            )
        )
        await out.wait_for(lambda lines: bool(out.matching("model-one")))
        first.cancel()  # the server goes away...
        await out.wait_for(lambda lines: len(out.matching("reconnecting in")) >= 3)
        await nursery.start(serve_fake, "model-two", port)  # ...and comes back
        await out.wait_for(lambda lines: bool(out.matching("model-two")))
        nursery.cancel_scope.cancel()
    delays = [line.split("reconnecting in ")[1] for line in out.matching("reconnecting in")]
    assert delays[:3] == ["0.05 s", "0.1 s", "0.2 s"]  # doubling, up to the maximum
    assert len(out.matching("connected as ops")) == 2
    assert view.totals.calls == 2
    assert "tok-123" not in out.text
