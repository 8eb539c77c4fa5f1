"""The systemd notify protocol (issue 9, item 1): readiness, watchdog and stopping, no libsystemd.

A fake service manager is a real AF_UNIX datagram socket (a path in tmp_path, or an abstract
name) given to a real ``llm-proxy serve`` child as ``$NOTIFY_SOCKET``, the way systemd does it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio

from proxy.sd_notify import Notifier, encode, notify_address, status, watchdog_interval
from tests.process import CLI, START_TIMEOUT_S, ServerProcess, clean_env

Message = dict[str, str]

CONFIG = """\
[server]
graceful_timeout_s = 5
log_level = "info"

[dashboard]
enabled = false
"""
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
WATCHDOG_USEC = 400_000  # pings every 0.2 s


# --- encoding and environment -------------------------------------------------------------------


def test_encode_joins_fields_one_per_line() -> None:
    assert encode("READY=1", status("listening on\nhttp://x")) == (
        b"READY=1\nSTATUS=listening on http://x"
    )


@pytest.mark.parametrize("bad", ["READY", "=1", "A=1\nB=2"])
def test_encode_refuses_what_is_not_one_key_value_line(bad: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        encode(bad)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/systemd/notify", "\0/org/systemd/notify"),
        ("", None),
        ("@", None),
        ("relative/socket", None),
        ("vsock:2:1234", None),
    ],
)
def test_notify_address(value: str, address: str | None) -> None:
    assert notify_address({"NOTIFY_SOCKET": value}) == address


def test_notify_address_unset() -> None:
    assert notify_address({}) is None


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "4242"}, 0.2),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "me"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_period(
    environ: Mapping[str, str], interval: float | None
) -> None:
    assert watchdog_interval(environ, pid=4242) == interval


def test_from_environ() -> None:
    notifier = Notifier.from_environ(
        {"NOTIFY_SOCKET": "@n", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "7"}, pid=7
    )
    assert notifier.enabled
    assert notifier.address == "\0n"
    assert notifier.watchdog_interval_s == 0.5
    # a watchdog with no socket to ping is no watchdog
    assert Notifier.from_environ({"WATCHDOG_USEC": "1000000"}).watchdog_interval_s is None


async def test_everything_is_a_no_op_outside_systemd() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert await notifier.notify("READY=1") is False
    stopping = trio.Event()
    stopping.set()
    with trio.fail_after(5):
        await notifier.serve(stopping)


# --- a fake service manager ---------------------------------------------------------------------


class FakeManager:
    """The receiving end of ``$NOTIFY_SOCKET``: keeps every notification, parsed."""

    def __init__(self, sock: trio.socket.SocketType, notify_socket: str) -> None:
        self.sock = sock
        self.notify_socket = notify_socket  # the value for $NOTIFY_SOCKET
        self.messages: list[Message] = []
        self._new = trio.Event()

    async def run(self) -> None:
        while True:
            data = await self.sock.recv(4096)
            fields = data.decode().split("\n")
            self.messages.append(dict(field.split("=", 1) for field in fields))
            self._new.set()
            self._new = trio.Event()

    def count(self, key: str) -> int:
        return sum(key in message for message in self.messages)

    async def wait_for(self, key: str, count: int = 1) -> Message:
        """The ``count``-th message with ``key``, once it has arrived."""
        while self.count(key) < count:
            await self._new.wait()
        return [message for message in self.messages if key in message][count - 1]


@asynccontextmanager
async def fake_manager(address: str, notify_socket: str) -> AsyncIterator[FakeManager]:
    with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        await sock.bind(address)
        manager = FakeManager(sock, notify_socket)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(manager.run)
            yield manager
            nursery.cancel_scope.cancel()


def path_manager(tmp_path: Path) -> AbstractAsyncContextManager[FakeManager]:
    """A manager listening on a socket file, as systemd's /run/systemd/notify."""
    path = str(tmp_path / "notify.sock")
    assert len(path) < 100, "AF_UNIX paths are limited to 108 bytes"
    return fake_manager(path, path)


def abstract_manager(tmp_path: Path) -> AbstractAsyncContextManager[FakeManager]:
    """A manager listening on an abstract socket name (``@name`` in $NOTIFY_SOCKET)."""
    name = f"llm-proxy-test-{os.getpid()}-{tmp_path.name}"
    return fake_manager("\0" + name, "@" + name)


@asynccontextmanager
async def serve_under(
    manager: FakeManager, tmp_path: Path, **environ: str
) -> AsyncIterator[ServerProcess]:
    """``llm-proxy serve --port 0`` as a child told to notify ``manager``; killed if still alive."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    database = tmp_path / "gateway.db"
    env = {k: v for k, v in clean_env().items() if k not in NOTIFY_VARIABLES}
    env |= {"NOTIFY_SOCKET": manager.notify_socket, **environ}
    process = await trio.lowlevel.open_process(
        [*CLI, "serve", "--config", str(config), "--port", "0", "--database", str(database)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = ServerProcess(process, database)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.read_stderr)
            try:
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


async def wait_ready(manager: FakeManager, server: ServerProcess) -> Message:
    """READY=1, or a failure carrying the server's log."""
    with trio.move_on_after(START_TIMEOUT_S):
        return await manager.wait_for("READY")
    raise AssertionError(f"no READY=1 from the server:\n{server.stderr}")


async def assert_accepts_connections(url: str) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    await stream.aclose()


# --- the real server ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [path_manager, abstract_manager], ids=["path", "abstract"])
async def test_serve_reports_ready_watchdog_and_stopping(
    tmp_path: Path, kind: Callable[[Path], AbstractAsyncContextManager[FakeManager]]
) -> None:
    async with (
        kind(tmp_path) as manager,
        serve_under(manager, tmp_path, WATCHDOG_USEC=str(WATCHDOG_USEC)) as server,
    ):
        ready = await wait_ready(manager, server)
        # READY=1 comes once the socket is bound: its address is in STATUS, and it takes
        # connections right away.
        url = ready["STATUS"].removeprefix("listening on ").split()[0]
        assert ready["STATUS"].startswith("listening on http://127.0.0.1:"), ready
        await assert_accepts_connections(url)
        assert manager.count("STOPPING") == 0

        with trio.fail_after(30):  # every 0.2 s; no timing precision asserted
            await manager.wait_for("WATCHDOG", count=4)
        assert manager.messages[0] == ready, "READY=1 comes before the first ping"
        assert all(m == {"WATCHDOG": "1"} for m in manager.messages[1:])

        server.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            stopping = await manager.wait_for("STOPPING")
            assert await server.wait() == 0, server.stderr
        assert stopping == {"STOPPING": "1", "STATUS": "shutting down"}


async def test_no_watchdog_pings_when_watchdog_pid_is_another_process(tmp_path: Path) -> None:
    # $WATCHDOG_PID names the process systemd watches; inherited by a child, it is not ours.
    async with (
        path_manager(tmp_path) as manager,
        serve_under(
            manager, tmp_path, WATCHDOG_USEC=str(WATCHDOG_USEC), WATCHDOG_PID=str(os.getpid())
        ) as server,
    ):
        await wait_ready(manager, server)
        await trio.sleep(1.0)  # five ping intervals
        server.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            await manager.wait_for("STOPPING")
            assert await server.wait() == 0, server.stderr
    assert manager.count("WATCHDOG") == 0, manager.messages


async def test_no_pings_while_the_event_loop_is_blocked(tmp_path: Path) -> None:
    """The pings come from the trio loop, so a hung loop stops them (and systemd restarts us)."""
    async with path_manager(tmp_path) as manager:
        notifier = Notifier(manager.notify_socket, watchdog_interval_s=0.05)
        stopping = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(notifier.serve, stopping)
            with trio.fail_after(10):
                await manager.wait_for("WATCHDOG", count=2)
            time.sleep(1.0)  # a blocking call on the trio thread: the loop hangs
            queued = 0
            # What was sent meanwhile, read without a checkpoint (the loop must not run).
            with socket.fromfd(manager.sock.fileno(), socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
                try:
                    while True:
                        raw.recv(4096, socket.MSG_DONTWAIT)
                        queued += 1
                except BlockingIOError:
                    pass
            # at most the ping sent just before the hang was still queued
            assert queued <= 1
            seen = manager.count("WATCHDOG")
            with trio.fail_after(10):  # the loop runs again, and so do the pings
                await manager.wait_for("WATCHDOG", count=seen + 2)
            stopping.set()
        assert manager.messages[-1]["STOPPING"] == "1"


async def test_a_failed_send_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(tmp_path / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING, logger="llm_proxy.systemd"):
        assert await notifier.notify("READY=1") is False
        assert await notifier.notify("WATCHDOG=1") is False
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1, (
        caplog.text
    )
    assert "cannot notify the service manager" in caplog.text
