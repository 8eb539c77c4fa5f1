"""A real PostgreSQL (Debian's package, installed by ``make test``) for the tests: a cluster of its
own in a temporary directory, on a loopback port, with a password-protected role, stopped and
deleted when the test ends.

Debian keeps the server's programs in ``/usr/lib/postgresql/<version>/bin``, off the PATH; the
newest version there is used (or the PATH's, elsewhere). ``initdb`` refuses to run as root, so
under root the cluster runs as the ``postgres`` user the package creates. Durability is switched
off (``fsync``, ``synchronous_commit``): these clusters live for one test; benchmarks keep it on.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

__all__ = ["PostgresServer", "postgres_bin", "postgres_server"]

ROLE: Final = "llm_proxy"
DATABASE: Final = "llm_proxy"
START_TIMEOUT_S: Final = 30.0
ATTEMPTS: Final = 5


def postgres_bin() -> Path:
    """The directory of ``initdb`` and ``postgres``: Debian's newest, else the PATH's."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path is None:
        raise RuntimeError("the tests need PostgreSQL: `make test` installs it (apt-get)")
    return Path(on_path).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """A PostgreSQL cluster of a test's own: ``url`` (with the password), ``password``,
    ``stop(kill=True)`` for a crash, and ``start()`` again on the same port with its data."""

    def __init__(
        self, bindir: Path, directory: Path, password: str, *, durable: bool = False
    ) -> None:
        self._bin = bindir
        self._durable = durable
        self._directory = directory
        self._data = directory / "data"
        self.password = password
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        # Under root, the cluster is the postgres user's (initdb will not run as root).
        self._user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """``postgresql://llm_proxy:PASSWORD@127.0.0.1:PORT/llm_proxy``."""
        return f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def url_without_password(self) -> str:
        """The URL a client completes from $PGPASSWORD, ~/.pgpass or a credential."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def init(self) -> None:
        """Make the cluster: the role (password-protected, scram-sha-256) and its database."""
        password_file = self._directory / "password"
        password_file.write_text(self.password)
        self._own(self._directory, password_file)
        self._run(
            "initdb",
            "--pgdata",
            str(self._data),
            "--username",
            ROLE,
            "--pwfile",
            str(password_file),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-instructions",
        )
        password_file.unlink()

    def start(self) -> bool:
        """Start it on a free port the first time, the same port after; whether it answers."""
        self.port = self.port or _free_port()
        self._process = subprocess.Popen(
            [
                str(self._bin / "postgres"),
                "-D",
                str(self._data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self._directory),
                *self._durability(),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._user,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self._process.poll() is None and time.monotonic() < deadline:
            if self._ready():
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def _durability(self) -> list[str]:
        if self._durable:
            return []  # the server's defaults, as an operator runs it: every commit on disk
        return ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]

    def create_database(self) -> None:
        """The ``llm_proxy`` database, owned by the role."""
        self._run(
            "createdb",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            ROLE,
            DATABASE,
            env={"PGPASSWORD": self.password},
        )

    def stop(self, *, kill: bool = False) -> None:
        """Stop it: a fast shutdown, or SIGKILL (``kill``) as a crash."""
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        else:
            process.send_signal(signal.SIGINT)  # "fast" shutdown
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _ready(self) -> bool:
        answer = subprocess.run(
            [str(self._bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return answer.returncode == 0

    def _run(self, program: str, *args: str, env: dict[str, str] | None = None) -> None:
        subprocess.run(
            [str(self._bin / program), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self._user,
            env={**os.environ, **(env or {})},
        )

    def _own(self, *paths: Path) -> None:
        if self._user is not None:
            for path in paths:
                shutil.chown(path, self._user, self._user)


@contextlib.contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster with the ``llm_proxy`` role and database; deleted after.

    ``durable``: the server's own fsync and commit settings (the benchmarks), instead of the
    tests' cheaper ones."""
    bindir = postgres_bin()
    with tempfile.TemporaryDirectory(prefix="postgres-") as directory:
        server = PostgresServer(
            bindir, Path(directory), password=os.urandom(12).hex(), durable=durable
        )
        server.init()
        for _ in range(ATTEMPTS):
            if server.start():
                try:
                    server.create_database()
                    yield server
                finally:
                    server.stop()
                return
            server.port = 0  # taken meanwhile: another free port
        raise RuntimeError(f"PostgreSQL did not start in {ATTEMPTS} attempts")
