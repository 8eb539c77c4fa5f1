"""A real ``redis-server`` (Debian's package, installed by ``make test``) for the tests: one per
test that asks for it, on a loopback port, in memory only, stopped when the test ends.

Redis takes no "port 0": a free port is picked by binding one and letting it go, and if another
process takes it in between, the start is retried on a new one.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Final

__all__ = ["running_redis"]

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


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """A fresh ``redis-server``; yields its URL (``redis://127.0.0.1:PORT/0``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("the tests need redis-server: `make test` installs it (apt-get)")
    with tempfile.TemporaryDirectory(prefix="redis-") as directory:
        for _ in range(ATTEMPTS):
            port = _free_port()
            process = subprocess.Popen(
                [
                    binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    directory,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + START_TIMEOUT_S
                while process.poll() is None and time.monotonic() < deadline:
                    if _answers_ping(port):
                        break
                    time.sleep(0.01)
                if process.poll() is None and _answers_ping(port):
                    yield f"redis://127.0.0.1:{port}/0"
                    return
            finally:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        raise RuntimeError(f"redis-server did not start in {ATTEMPTS} attempts")
