"""Log lines for journald: text or JSON, one line per event, the request id on request lines,
and never a secret."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import httpx
import openai
import pytest
import trio

from proxy.log_format import REQUEST_ID, JsonFormatter, LogFormat, TextFormatter, stderr_handler
from proxy.service import RunningService
from tests.conftest import (
    ADMIN_PASSWORD,
    CLIENT_KEY,
    StartGateway,
    initial_admin_password,
    sdk,
    signed_in,
)
from tests.fakes.openai_upstream import DEFAULT_API_KEY, FakeOpenAI, server_error
from tests.process import serve, write_config

HELLO = [{"role": "user", "content": "hello there gateway"}]
PROVIDER_KEY = "sk-provider-secret-for-log-test-0123456789"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} level=[A-Z]+ logger=\S+ ")
JSON_KEYS = {"ts", "level", "logger", "message", "request_id", "exc"}

log = logging.getLogger("llm_proxy.test")


@contextmanager
def captured(fmt: LogFormat, level: int = logging.DEBUG) -> Iterator[io.StringIO]:
    """Everything logged meanwhile, formatted as ``llm-proxy serve`` writes it to stderr."""
    stream = io.StringIO()
    handler = stderr_handler(fmt, stream)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("llm_proxy.v1", logging.WARNING, __file__, 1, message, args, exc_info)


# -- formats --------------------------------------------------------------------------------------


def test_text_lines_name_the_request_once_and_stay_on_one_line() -> None:
    formatter = TextFormatter()
    token = REQUEST_ID.set("req_abc")
    try:
        line = formatter.format(_record("status=%d %s", 502, "upstream said\nlevel=INFO forged"))
    finally:
        REQUEST_ID.reset(token)
    assert TEXT_LINE.match(line), line
    assert "\n" not in line
    assert line.count("request_id=") == 1
    assert " logger=llm_proxy.v1 request_id=req_abc status=502 upstream said\\nlevel=INFO" in line
    outside = formatter.format(_record("no call here"))
    assert "request_id" not in outside
    assert outside.endswith("logger=llm_proxy.v1 no call here")
    crashed = formatter.format(_record("unexpected error", exc=True))
    assert "\n" not in crashed
    trace = json.loads(crashed.split(" exc=", 1)[1])
    assert trace.startswith("Traceback")
    assert "ValueError: boom\nsecond line" in trace


def test_text_lines_show_control_characters_escaped_never_raw() -> None:
    # A request path, header or upstream message can carry any character: a NUL or an escape
    # sequence must not reach journald or a terminal as is, nor a bidi override reorder a line.
    hostile = "GET /static/js/\x00 \x1b[31mred\x07\x7f\x85\u2028\u202eevil\t\r\n end"
    line = TextFormatter().format(_record("Exception on request %s", hostile))
    assert TEXT_LINE.match(line), line
    assert not [ch for ch in line if unicodedata.category(ch) in ("Cc", "Zl", "Zp")], repr(line)
    assert "\u202e" not in line
    assert line.endswith(
        "GET /static/js/\\x00 \\x1b[31mred\\x07\\x7f\\x85\\u2028\\u202eevil\\t\\r\\n end"
    )
    # Printable text, accents and all, stays as it is.
    assert TextFormatter().format(_record("café ok ✓")).endswith(" café ok ✓")


def test_json_lines_are_one_object_each() -> None:
    formatter = JsonFormatter()
    token = REQUEST_ID.set("req_abc")
    try:
        line = json.loads(formatter.format(_record("status=%d", 502, exc=True)))
    finally:
        REQUEST_ID.reset(token)
    assert set(line) == {"ts", "level", "logger", "message", "request_id", "exc"}
    assert line["request_id"] == "req_abc"
    assert line["message"] == "status=502"
    assert line["level"] == "WARNING"
    assert line["logger"] == "llm_proxy.v1"
    assert datetime.fromisoformat(line["ts"]).utcoffset() is not None
    assert "ValueError: boom" in line["exc"]
    plain = formatter.format(_record("café\nnext"))
    assert "\n" not in plain
    assert json.loads(plain) == {
        "ts": json.loads(plain)["ts"],
        "level": "WARNING",
        "logger": "llm_proxy.v1",
        "message": "café\nnext",
    }


async def test_tasks_and_threads_started_in_a_call_inherit_its_request_id() -> None:
    seen: list[str | None] = []

    def in_thread() -> None:
        seen.append(REQUEST_ID.get())

    async def in_task() -> None:
        seen.append(REQUEST_ID.get())

    token = REQUEST_ID.set("req_inherited")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_task)
        await trio.to_thread.run_sync(in_thread)
    finally:
        REQUEST_ID.reset(token)
    assert seen == ["req_inherited", "req_inherited"]
    assert REQUEST_ID.get() is None


# -- the gateway's own lines ----------------------------------------------------------------------


async def _failing_call(gateway: RunningService, fake: FakeOpenAI) -> str:
    """A call whose upstream fails (a 502 and, at the first failure, an open breaker)."""
    fake.enqueue(server_error())
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=10) as client:
        answer = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {CLIENT_KEY}"},
            json={"model": "gpt-4o", "messages": HELLO},
        )
    assert answer.status_code == 502, answer.text
    return answer.headers["x-request-id"]


async def _start(start_gateway: StartGateway, fake: FakeOpenAI) -> RunningService:
    return await start_gateway(
        {
            "providers": {
                "openai": {
                    "base_url": fake.base_url,
                    "api_key": PROVIDER_KEY,
                    "breaker_failures": 1,
                },
                "mock": {"enabled": True},
            },
        }
    )


async def _stop(gateway: RunningService) -> None:
    gateway.stop()
    with trio.fail_after(15):
        await gateway.stopped.wait()


async def test_json_lines_carry_request_ids_and_no_secret(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.api_key = PROVIDER_KEY
    with captured("json") as output:
        gateway = await _start(start_gateway, fake_openai)
        first_password = initial_admin_password(gateway)
        async with signed_in(gateway) as admin:
            made = await admin.post("/api/clients", json={"name": "logged-app"})
            token = made.json()["token"]
            await sdk(gateway, key=token).chat.completions.create(model="mock", messages=HELLO)
            with pytest.raises(openai.AuthenticationError):
                await sdk(gateway, key=token + "x").chat.completions.create(
                    model="mock", messages=HELLO
                )
            await admin.post("/api/auth/login", json={"username": "admin", "password": "wrong-1"})
            await admin.get("/api/system/health")
        request_id = await _failing_call(gateway, fake_openai)
        buffered = gateway.gateway.log_buffer.recent(1000)
        await _stop(gateway)
    text = output.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) > 5
    for line in lines:
        assert isinstance(line, dict)
        assert {"ts", "level", "logger", "message"} <= set(line) <= JSON_KEYS, line
        datetime.fromisoformat(line["ts"])
    ours = [line for line in lines if line.get("request_id") == request_id]
    assert {line["logger"] for line in ours} >= {"llm_proxy.v1", "llm_proxy.provider"}, lines
    (failed,) = [line for line in ours if line["logger"] == "llm_proxy.v1"]
    assert failed["message"].startswith("status=502 ")
    assert "request_id" not in failed["message"]
    # The breaker tripped inside the call, on the provider actor's code: same request id.
    assert any("circuit breaker open" in line["message"] for line in ours)
    # Lines outside a call name none.
    started = [line for line in lines if line["message"].startswith("listening on")]
    assert started
    assert "request_id" not in started[0]
    # The dashboard's buffer has the same lines, request id included.
    assert any(
        line["request_id"] == request_id and str(line["message"]).startswith("status=502")
        for line in buffered
    )
    for secret in (
        PROVIDER_KEY,
        CLIENT_KEY,
        token,
        token[3:],
        ADMIN_PASSWORD,
        first_password,
        "wrong-1",
    ):
        assert secret not in text
        assert secret not in str(buffered)


async def test_text_lines_carry_request_id_once(
    start_gateway: StartGateway, fake_openai: FakeOpenAI
) -> None:
    fake_openai.api_key = PROVIDER_KEY
    with captured("text", logging.INFO) as output:
        gateway = await _start(start_gateway, fake_openai)
        request_id = await _failing_call(gateway, fake_openai)
        await _stop(gateway)
    lines = output.getvalue().splitlines()
    for line in lines:
        assert TEXT_LINE.match(line), line
    ours = [line for line in lines if f"request_id={request_id}" in line]
    assert len(ours) >= 2  # the 502 and the breaker opening
    for line in ours:
        assert line.count("request_id=") == 1, line
    assert any(" logger=llm_proxy.v1 request_id=" in line and "status=502" in line for line in ours)
    assert PROVIDER_KEY not in output.getvalue()
    assert CLIENT_KEY not in output.getvalue()


async def test_serve_writes_json_lines_when_configured(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "llm-proxy.toml",
        upstream_url=fake_openai.base_url,
        upstream_key=DEFAULT_API_KEY,
        graceful_timeout_s=5,
    )
    config.write_text(config.read_text() + '\n[logging]\nformat = "json"\n')
    async with serve(config, tmp_path / "gateway.db", tmp_path) as server:
        listening = [json.loads(line) for line in server.lines if "listening on" in line]
        url = listening[0]["message"].split()[-1]
        fake_openai.enqueue(server_error())
        async with httpx.AsyncClient(base_url=url, timeout=10, trust_env=False) as client:
            answer = await client.post(
                "/v1/chat/completions",
                headers={"authorization": "Bearer sk-client-process-test-0123456789abcdef"},
                json={"model": "gpt-4o-mini", "messages": HELLO},
            )
            assert answer.status_code == 502
        request_id = answer.headers["x-request-id"]
        with trio.fail_after(10):
            await server.wait_for_line(request_id)
        server.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await server.wait() == 0
            await server.stderr_closed.wait()
    lines = [json.loads(line) for line in server.stderr.splitlines()]
    assert any(line.get("request_id") == request_id for line in lines)
    assert lines[-1]["message"] == "shutdown complete"
    assert DEFAULT_API_KEY not in server.stderr


async def test_a_first_start_warns_of_nothing_sqlite_remarks_on_its_query_plans(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """Migrating a new database gives SQLite's log an automatic-index notice (migration 8 joins
    the log's aggregate): a plan detail, not a warning for whoever starts the gateway."""
    config = write_config(
        tmp_path / "llm-proxy.toml",
        upstream_url=fake_openai.base_url,
        upstream_key=DEFAULT_API_KEY,
        graceful_timeout_s=5,
    )
    async with serve(config, tmp_path / "gateway.db", tmp_path) as server:
        server.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            assert await server.wait() == 0
            await server.stderr_closed.wait()
    assert "database migrated to schema version" in server.stderr
    assert "SQLITE_LOG" not in server.stderr, server.stderr


def test_sqlite_plan_notices_are_kept_at_debug_level() -> None:
    stream = io.StringIO()
    handler = stderr_handler("text", stream)
    notice = logging.LogRecord("root", logging.WARNING, __file__, 1, "SQLITE_LOG: x", None, None)
    notice.sqlite_code_name = "SQLITE_WARNING_AUTOINDEX"
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        assert not handler.filter(notice)
        root.setLevel(logging.DEBUG)
        assert handler.filter(notice)
    finally:
        root.setLevel(level)
