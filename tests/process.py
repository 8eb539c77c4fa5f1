"""A real ``llm-proxy serve`` process, started from an async test beside in-process fakes.

The server runs in a subprocess so that tests can send it real signals (SIGTERM, SIGKILL); fake
upstreams run in the test's own trio loop and are reached over loopback. The server's stderr is
read continuously (so the pipe never fills and blocks the server) and kept for assertions.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import apsw
import trio
import trio.lowlevel

CLI = [sys.executable, "-m", "proxy.cli"]
ROOT = Path(__file__).resolve().parent.parent
CLIENT_KEY = "sk-client-process-test-0123456789abcdef"
START_TIMEOUT_S = 30.0

_LISTENING = re.compile(r"listening on (http://\S+)")


def write_config(
    path: Path,
    *,
    upstream_url: str,
    upstream_key: str,
    graceful_timeout_s: float,
    workers: int = 1,
    redis_url: str = "",
    on_redis_down: str = "local",
    storage_url: str = "",
) -> Path:
    """A TOML config: the openai provider at ``upstream_url``, one static key, no rate limits;
    ``workers`` processes sharing ``redis_url`` (``on_redis_down`` while it is away), storing in
    ``storage_url``'s PostgreSQL (empty: the SQLite file given with ``--database``)."""
    cluster = (
        f'[cluster]\nredis_url = "{redis_url}"\non_redis_down = "{on_redis_down}"\n'
        if redis_url
        else ""
    )
    storage = f'[storage]\nurl = "{storage_url}"\n' if storage_url else ""
    path.write_text(
        f"""\
[server]
graceful_timeout_s = {graceful_timeout_s}
log_level = "info"
workers = {workers}

{cluster}
{storage}
[auth]
tokens = ["{CLIENT_KEY}"]

[limits]
global_requests_per_minute = 0
default_client_requests_per_minute = 0

[providers.openai]
base_url = "{upstream_url}"
api_key = "{upstream_key}"
timeout_s = 30

[models.fast]
provider = "openai"
model = "gpt-4o-mini"
"""
    )
    return path


def clean_env() -> dict[str, str]:
    """The environment without provider keys, a config path or proxies that could interfere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_API_KEY") and key.lower() not in {"http_proxy", "https_proxy"}
    }
    env.pop("LLM_PROXY_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ServerProcess:
    """A running ``serve`` subprocess: its URL, its stderr so far, and ways to stop it."""

    def __init__(self, process: trio.Process, database: Path) -> None:
        self.process = process
        self.database = database
        self.url = ""
        self.lines: list[str] = []
        self.listening = trio.Event()
        self.stderr_closed = trio.Event()
        self._line_seen: dict[str, trio.Event] = {}

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    async def read_stderr(self) -> None:
        """Collect stderr lines until the process closes it; notice the bound URL."""
        assert self.process.stderr is not None
        pending = b""
        try:
            async for data in self.process.stderr:
                pending += data
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    self._add_line(raw.decode(errors="replace") + "\n")
            if pending:
                self._add_line(pending.decode(errors="replace"))
        finally:
            self.stderr_closed.set()

    def _add_line(self, line: str) -> None:
        self.lines.append(line)
        if not self.url and (match := _LISTENING.search(line)):
            self.url = match.group(1)
            self.listening.set()
        for text, event in self._line_seen.items():
            if text in line:
                event.set()

    async def wait_for_line(self, text: str, *, timeout_s: float = 60) -> None:
        """Return once a stderr line containing ``text`` has been seen; fail, showing stderr, if
        none is within ``timeout_s`` (a line that never comes must fail the test, not hang it)."""
        if any(text in line for line in self.lines):
            return
        event = self._line_seen.setdefault(text, trio.Event())
        with trio.move_on_after(timeout_s):
            await event.wait()
            return
        raise AssertionError(f"no line with {text!r} within {timeout_s} s:\n{self.stderr}")

    def send_signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def wait(self) -> int:
        """Wait for the process to exit; its exit status (negative: killed by that signal)."""
        return await self.process.wait()

    def running(self) -> bool:
        return self.process.returncode is None


def _limit_open_files(count: int) -> Callable[[], None]:
    def limit() -> None:  # in the child, before exec: soft and hard, as `ulimit -n` does
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))

    return limit


@asynccontextmanager
async def serve(
    config: Path,
    database: Path,
    cwd: Path,
    *,
    open_files: int | None = None,
    umask: int = 0o022,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[ServerProcess]:
    """Start ``llm-proxy serve --port 0`` and yield once it listens; killed on exit if alive.

    ``open_files`` limits the process's open files (``ulimit -n``). The process starts with the
    permissive ``umask`` most shells have, whatever the test runner's is, so that file modes are
    the gateway's doing. ``env`` adds to (or replaces in) the clean environment.
    """
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--config", str(config), "--port", "0", "--database", str(database)],
        cwd=cwd,
        env=clean_env() | dict(env or {}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=None if open_files is None else _limit_open_files(open_files),
        umask=umask,
    )
    server = ServerProcess(process, database)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.read_stderr)
            try:
                with trio.move_on_after(START_TIMEOUT_S):
                    # Either it listens or it dies trying; both end the wait.
                    async with trio.open_nursery() as waiting:
                        waiting.start_soon(_set_when, server.listening, waiting.cancel_scope)
                        waiting.start_soon(_set_when, server.stderr_closed, waiting.cancel_scope)
                assert server.url, f"the server did not start listening:\n{server.stderr}"
                yield server
            finally:
                if server.running():
                    process.kill()
                with trio.move_on_after(10, shield=True):
                    await process.wait()
                    await server.stderr_closed.wait()
                nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:  # pragma: no cover - only if waiting above timed out
            process.kill()
        if process.stderr is not None:
            await process.stderr.aclose()


async def _set_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def read_rows(database: Path) -> dict[str, dict[str, object]]:
    """Every ``llm_requests`` row by ``request_id``, read with a read-only connection.

    Duplicated request ids are an error: each call must be logged exactly once.
    """
    conn = apsw.Connection(str(database), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        columns = ["request_id", "status", "stream", "http_status", "prompt_tokens"]
        columns += ["completion_tokens", "total_tokens", "error_type"]
        # Named here, not read from the cursor: an empty table leaves it without a description.
        cursor = conn.execute(f"select {', '.join(columns)} from llm_requests")
        rows = [dict(zip(columns, row, strict=True)) for row in cursor]
    finally:
        conn.close()
    by_id: dict[str, dict[str, object]] = {}
    for row in rows:
        request_id = str(row["request_id"])
        assert request_id not in by_id, f"request {request_id} was logged twice"
        by_id[request_id] = row
    return by_id
