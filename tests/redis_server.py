"""A real ``redis-server`` (Debian's package, installed by ``make test``) for the tests: one per
test that asks for it, on a loopback port, in memory only, stopped when the test ends.

Redis takes no "port 0": a free port is picked by binding one and letting it go, and if another
process takes it in between, the start is retried on a new one.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Final

__all__ = ["RedisServer", "redis_server", "running_redis"]

START_TIMEOUT_S: Final = 10.0
ATTEMPTS: Final = 5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` on a fixed loopback port that a test may stop and start again (a Redis
    outage and its recovery), at the same URL."""

    def __init__(self, binary: str, directory: str, port: int) -> None:
        self._binary = binary
        self._directory = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> bool:
        """Start it; whether it answers (False: the port was taken meanwhile)."""
        self._process = subprocess.Popen(
            [
                self._binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self._process.poll() is None and time.monotonic() < deadline:
            if _answers_ping(self.port):
                return True
            time.sleep(0.01)
        self.stop()
        return False

    def freeze(self) -> None:
        """Stop it answering, its data kept (SIGSTOP): a network partition, or a hung Redis."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen Redis answer again, with everything it held."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self, *, kill: bool = False) -> None:
        """Stop it (``kill``: SIGKILL, as a crash); its data is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a frozen one must be able to hear the signal
        process.kill() if kill else process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server``, stopped when the block ends."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("the tests need redis-server: `make test` installs it (apt-get)")
    with tempfile.TemporaryDirectory(prefix="redis-") as directory:
        for _ in range(ATTEMPTS):
            server = RedisServer(binary, directory, _free_port())
            if server.start():
                try:
                    yield server
                finally:
                    server.stop()
                return
        raise RuntimeError(f"redis-server did not start in {ATTEMPTS} attempts")


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """A fresh ``redis-server``; yields its URL (``redis://127.0.0.1:PORT/0``)."""
    with redis_server() as server:
        yield server.url
