"""``llm-proxy serve`` that cannot start says why in one line and exits with status 1.

Before, a port in use printed 156 lines of nested exception groups and never said "Address
already in use". Each known start-up failure is now one log line naming the thing and the
reason; an unexpected exception (a bug) still prints its traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process import CLI, ROOT, clean_env

MOCK_ONLY = "[server]\ngraceful_timeout_s = 5\n\n[providers.ollama]\nenabled = false\n"


def serve(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, config: str = MOCK_ONLY
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.toml"
    path.write_text(config)
    return subprocess.run(
        [*CLI, "serve", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env or clean_env(),
        check=False,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit status 1, no traceback, and exactly one error line, holding every fragment."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "ExceptionGroup" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "level=ERROR" in line]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_a_port_in_use_is_one_line_and_nothing_else_happens(
    tmp_path: Path, taken_port: int
) -> None:
    database = tmp_path / "gateway.db"
    result = serve(tmp_path, "--port", str(taken_port), "--database", str(database))
    line = assert_one_clear_line(result, f"127.0.0.1:{taken_port}", "Address already in use")
    # Bound first: the failure is all there is to read, and nothing was created.
    assert result.stderr.strip() == line, result.stderr
    assert not database.exists()


def test_an_ipv6_port_in_use_names_the_address_in_brackets(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6) as holder:
        holder.bind(("::1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = serve(tmp_path, "--host", "::1", "--port", str(port))
    assert_one_clear_line(result, f"[::1]:{port}", "Address already in use")


def test_a_host_that_does_not_resolve(tmp_path: Path) -> None:
    result = serve(tmp_path, "--host", "no-such-host.invalid", "--port", "0")
    assert_one_clear_line(result, "cannot listen on no-such-host.invalid:0")


def test_a_database_in_a_missing_directory(tmp_path: Path) -> None:
    database = tmp_path / "missing" / "gateway.db"
    result = serve(tmp_path, "--port", "0", "--database", str(database))
    assert_one_clear_line(result, str(database), f"the directory {database.parent} does not exist")


def test_a_database_that_is_not_a_database(tmp_path: Path) -> None:
    database = tmp_path / "notes.txt"
    database.write_text("these are my notes, not a database\n" * 50)
    result = serve(tmp_path, "--port", "0", "--database", str(database))
    assert_one_clear_line(result, str(database), "not a SQLite database")
    assert database.read_text().startswith("these are my notes")


def test_a_database_path_that_is_a_directory(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    database.mkdir()
    result = serve(tmp_path, "--port", "0", "--database", str(database))
    assert_one_clear_line(result, str(database), "is a directory")


def test_a_database_from_a_newer_version(tmp_path: Path) -> None:
    import apsw

    database = tmp_path / "gateway.db"
    conn = apsw.Connection(str(database))
    conn.pragma("user_version", 999)
    conn.close()
    result = serve(tmp_path, "--port", "0", "--database", str(database))
    assert_one_clear_line(result, str(database), "999")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
def test_a_database_this_user_may_not_write(tmp_path: Path) -> None:
    import apsw

    database = tmp_path / "gateway.db"
    conn = apsw.Connection(str(database))
    conn.execute("create table t(x)")
    conn.close()
    database.chmod(0o400)
    result = serve(tmp_path, "--port", "0", "--database", str(database))
    assert_one_clear_line(result, str(database), "permission denied")


def test_a_credentials_directory_that_does_not_exist(tmp_path: Path) -> None:
    nowhere = tmp_path / "no-credentials"
    result = serve(
        tmp_path, "--port", "0", env=clean_env() | {"CREDENTIALS_DIRECTORY": str(nowhere)}
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert "$CREDENTIALS_DIRECTORY" in line, line
    assert str(nowhere) in line, line


def test_a_bad_config_file(tmp_path: Path) -> None:
    result = serve(tmp_path, "--port", "0", config="[server]\nprot = 8080\n")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert "server.prot" in line, line
    assert "config.toml" in line, line


def test_an_unexpected_error_keeps_its_traceback(tmp_path: Path) -> None:
    # A bug inside the running service, deep in its nurseries: no one-line summary for that.
    program = (
        "import sys\n"
        "import actors.runtime_settings\n"
        "async def broken(settings, reads):\n"
        "    raise RuntimeError('a bug in start-up')\n"
        "actors.runtime_settings.RuntimeSettings.load = broken\n"
        "from proxy.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    (tmp_path / "config.toml").write_text(MOCK_ONLY)
    result = subprocess.run(
        [sys.executable, "-c", program, "serve", "--config", "config.toml", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env() | {"PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" in result.stderr
    assert "RuntimeError: a bug in start-up" in result.stderr
    assert "cannot start" not in result.stderr
