"""``llm-proxy clients``, run as a real process against a database in ``tmp_path``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import apsw
import pytest

from proxy.keys import key_digest
from storage import active_keys
from tests.storage_backends import connect
from tests.test_cli import clean_env, run_cli

KEY = re.compile(r"sk-[A-Za-z0-9_-]{43}")
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


class Cli:
    """Runs ``llm-proxy clients ...`` on one database (a SQLite file, or a PostgreSQL URL given
    as ``$LLM_PROXY_STORAGE_URL``) and checks that no key leaks."""

    def __init__(self, database: Path | str) -> None:
        self.database = database
        self.keys: list[str] = []

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        where = str(self.database)
        if where.startswith("postgresql://"):
            result = run_cli("clients", *args, env=clean_env(LLM_PROXY_STORAGE_URL=where))
        else:
            result = run_cli("clients", *args, "--database", where, env=clean_env())
        # Only `create` and `add-key` may print a key, and only on stdout.
        assert not KEY.search(result.stderr), result.stderr
        for key in self.keys:
            assert key not in result.stderr
            assert key not in result.stdout
        if args[0] not in ("create", "add-key"):
            assert not KEY.search(result.stdout), result.stdout
        return result

    def new_key(self, *args: str) -> tuple[str, str]:
        """Run ``create`` or ``add-key``; return the key (checked to be stdout alone) and stderr."""
        result = self(*args)
        assert result.returncode == 0, result.stderr
        assert KEY.fullmatch(result.stdout.rstrip("\n")), result.stdout
        assert result.stdout.count("\n") == 1
        key = result.stdout.strip()
        self.keys.append(key)
        return key, result.stderr

    def ok(self, *args: str) -> list[str]:
        """Run a command that must succeed; return its stdout lines."""
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    def fails(self, *args: str) -> str:
        """Run a command that must fail with status 2 and a one-line message; return it."""
        result = self(*args)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("llm-proxy: ")
        return lines[0]


@pytest.fixture
def cli(database_url: str) -> Cli:
    return Cli(database_url)


@pytest.fixture
def sqlite_cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "cli.db")


def client_id_from(stderr: str) -> str:
    match = re.search(r"\bcl_[0-9a-f]{16}\b", stderr)
    assert match, stderr
    return match.group(0)


def stored_digests(database: Path | str) -> dict[str, str]:
    conn = connect(str(database))
    try:
        return {key.token_sha256: key.client_id for key in active_keys(conn)}
    finally:
        conn.close()


def test_create_prints_only_the_key_on_stdout(cli: Cli) -> None:
    key, stderr = cli.new_key("create", "demo", "--rpm", "30", "--tpm", "5000")
    client_id = client_id_from(stderr)
    assert "rpm=30" in stderr
    assert "tpm=5000" in stderr
    assert "not shown again" in stderr
    assert f"{key[:7]}…{key[-4:]}" in stderr  # the masked form, to recognise it later
    assert re.search(r"\bkey 1\b", stderr)
    assert stored_digests(cli.database) == {key_digest(key): client_id}


def test_list_and_keys(cli: Cli) -> None:
    assert cli.ok("list") == ["no clients"]
    first, stderr = cli.new_key("create", "first", "--description", "the first one")
    first_id = client_id_from(stderr)
    _, stderr = cli.new_key("create", "second", "--rpm", "0")
    second_id = client_id_from(stderr)
    second_key, stderr = cli.new_key("add-key", first_id, "--name", "ci runner")
    assert first_id in stderr
    lines = cli.ok("list")
    assert len(lines) == 2
    assert lines[0] == f"{first_id} first active rpm=default tpm=none keys=2 last_used=never"
    assert lines[1] == f"{second_id} second active rpm=0 tpm=none keys=1 last_used=never"
    keys = cli.ok("keys", first_id)
    assert len(keys) == 2
    assert re.fullmatch(
        rf"1 {re.escape(first[:7])}…{re.escape(first[-4:])} active created={ISO} last_used=never",
        keys[0],
    )
    assert re.fullmatch(
        rf"3 {re.escape(second_key[:7])}…{re.escape(second_key[-4:])} active created={ISO}"
        r" last_used=never ci runner",
        keys[1],
    )


def test_last_use_recorded_by_the_server_is_listed(cli: Cli) -> None:
    _, stderr = cli.new_key("create", "used")
    client_id = client_id_from(stderr)
    conn = connect(str(cli.database))
    try:
        conn.execute("UPDATE client_tokens SET last_used_at = 1700000000000")
    finally:
        conn.close()
    [line] = cli.ok("list")
    assert line.endswith("last_used=2023-11-14T22:13:20Z")
    [key] = cli.ok("keys", client_id)
    assert "last_used=2023-11-14T22:13:20Z" in key


def test_revoke_a_key_by_id(cli: Cli) -> None:
    _, stderr = cli.new_key("create", "demo")
    client_id = client_id_from(stderr)
    second, _ = cli.new_key("add-key", client_id)
    [line] = cli.ok("revoke", "1")
    assert line.startswith("revoked key 1 ")
    assert client_id in line
    assert stored_digests(cli.database) == {key_digest(second): client_id}
    [again] = cli.ok("revoke", "1")
    assert "already revoked" in again
    keys = cli.ok("keys", client_id)
    assert re.search(rf"^1 \S+ revoked={ISO} created=", keys[0])
    assert " active " in keys[1]
    [listed] = cli.ok("list")
    assert " active " in listed
    assert "keys=1" in listed


def test_revoke_a_client_revokes_all_its_keys(cli: Cli) -> None:
    _, stderr = cli.new_key("create", "doomed")
    doomed = client_id_from(stderr)
    cli.new_key("add-key", doomed)
    kept_key, stderr = cli.new_key("create", "kept")
    kept = client_id_from(stderr)
    [line] = cli.ok("revoke", doomed)
    assert doomed in line
    assert "revoked 2 keys" in line
    assert stored_digests(cli.database) == {key_digest(kept_key): kept}
    listed = {line.split()[0]: line for line in cli.ok("list")}
    assert " inactive " in listed[doomed]
    assert "keys=0" in listed[doomed]
    assert " active " in listed[kept]
    assert all(" revoked=" in line for line in cli.ok("keys", doomed))
    # A key added to an inactive client is created but flagged as not usable yet.
    _, stderr = cli.new_key("add-key", doomed)
    assert "inactive" in stderr


def test_errors_exit_2_with_one_line(cli: Cli, tmp_path: Path) -> None:
    assert "unknown client: cl_nope" in cli.fails("keys", "cl_nope")
    assert "unknown client: cl_nope" in cli.fails("add-key", "cl_nope")
    assert "unknown client: cl_nope" in cli.fails("revoke", "cl_nope")
    assert "unknown key: 42" in cli.fails("revoke", "42")
    assert "name must not be empty" in cli.fails("create", "  ")
    assert "--rpm must not be negative" in cli.fails("create", "x", "--rpm", "-1")
    assert "--tpm must be a whole number" in cli.fails("create", "x", "--tpm", "lots")
    assert "control characters" in cli.fails("create", "a\nb")
    assert cli.ok("list") == ["no clients"]  # nothing was created by the failures

    broken = tmp_path / "not-a-database.db"
    broken.write_bytes(b"this is not SQLite" * 100)
    message = Cli(broken).fails("list")
    assert str(broken) in message
    missing_dir = tmp_path / "missing" / "x.db"
    assert str(missing_dir) in Cli(missing_dir).fails("list")


def test_database_comes_from_the_config(tmp_path: Path) -> None:
    database = tmp_path / "from-config.db"
    config = tmp_path / "config.toml"
    config.write_text(f'[server]\ndatabase = "{database}"\n')
    create = run_cli("clients", "create", "configured", "--config", str(config), env=clean_env())
    assert create.returncode == 0, create.stderr
    key = create.stdout.strip()
    assert key_digest(key) in stored_digests(database)
    listed = run_cli("clients", "list", "--config", str(config), env=clean_env())
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("cl_")
    bad = run_cli("clients", "list", "--config", str(tmp_path / "nope.toml"), env=clean_env())
    assert bad.returncode == 2
    assert "file not found" in bad.stderr


def test_cli_writes_beside_an_open_connection(cli: Cli) -> None:
    # A server keeps its own connections open: the CLI must work beside them, and its changes
    # must be visible to them without reopening.
    conn = connect(str(cli.database))
    try:
        key, _ = cli.new_key("create", "beside")
        assert key_digest(key) in {k.token_sha256 for k in active_keys(conn)}
        cli.ok("revoke", "1")
        assert active_keys(conn) == []
    finally:
        conn.close()


def test_plain_key_is_not_in_the_database(sqlite_cli: Cli) -> None:
    cli = sqlite_cli
    assert isinstance(cli.database, Path)
    key, _ = cli.new_key("create", "secret")
    conn = apsw.Connection(str(cli.database))
    try:
        conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
    finally:
        conn.close()
    wal = Path(f"{cli.database}-wal")
    content = cli.database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert key_digest(key).encode() in content
    assert key.encode() not in content
    assert key[7:-4].encode() not in content


def test_an_unreachable_postgresql_is_one_line_without_the_password(postgres_url: str) -> None:
    # Port 1: nothing listens there, the connection is refused.
    dead = Cli(re.sub(r":\d+/", ":1/", postgres_url))
    message = dead.fails("list")
    assert "postgresql://" in message
    password = re.search(r"://[^:]+:([^@]+)@", postgres_url)
    assert password
    assert password.group(1) not in message
    assert "llm_proxy:…@" in message  # the URL masked as proxy.config.mask_url does
    assert "Connection refused" in message


def test_update_renames_and_changes_only_what_is_given(cli: Cli) -> None:
    _, stderr = cli.new_key("create", "old name", "--rpm", "30", "--description", "kept")
    client_id = client_id_from(stderr)
    [line] = cli.ok("update", client_id, "--name", "Team Alpha")
    assert line == f"updated client {client_id} (Team Alpha) rpm=30 tpm=none"
    [listed] = cli.ok("list")
    assert listed.startswith(f"{client_id} Team Alpha active rpm=30 tpm=none ")
    conn = connect(str(cli.database))
    try:
        (description,) = conn.execute(
            "SELECT description FROM clients WHERE id = ?", (client_id,)
        ).fetchall()[0]
    finally:
        conn.close()
    assert description == "kept"
    [line] = cli.ok("update", client_id, "--rpm", "default", "--tpm", "900")
    assert line == f"updated client {client_id} (Team Alpha) rpm=default tpm=900"
    [line] = cli.ok("update", client_id, "--description", "new words")
    assert line.startswith(f"updated client {client_id} (Team Alpha)")


def test_update_errors_exit_2_with_one_line(cli: Cli) -> None:
    _, stderr = cli.new_key("create", "demo")
    client_id = client_id_from(stderr)
    assert "unknown client: cl_nope" in cli.fails("update", "cl_nope", "--name", "x")
    assert "name must not be empty" in cli.fails("update", client_id, "--name", " ")
    assert "control characters" in cli.fails("update", client_id, "--name", "a\x1b[2Jb")
    assert "--rpm must be a whole number or 'default'" in cli.fails(
        "update", client_id, "--rpm", "lots"
    )
    assert "nothing to change" in cli.fails("update", client_id)
    [listed] = cli.ok("list")
    assert listed.startswith(f"{client_id} demo active ")  # nothing changed by the failures
