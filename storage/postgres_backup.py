"""Backups of a PostgreSQL database: ``pg_dump --format=custom`` into the backups directory.

The same directory, names and guarantees as the SQLite copies (``storage/backup.py``), with
``.dump`` for ``.db``: the dump goes to a hidden private temporary file, is checked by
``pg_restore --list`` (when pg_restore is beside pg_dump), synced, and only then named
``llm-proxy-YYYYmmdd-HHMMSS[-N].dump``; a failure leaves nothing behind. The password never
reaches pg_dump's command line, where ``ps`` would show it to every user of the host: it is taken
out of the URL and passed in ``PGPASSWORD``. Without pg_dump there is no backup to take here:
the database's own tooling or the provider's snapshots are the way, and the error says so.
Blocking: run it on a worker thread.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Final

from storage.backup import BackupError, BackupResult, write_backup

__all__ = ["DATABASES_JOB", "BackupUnavailable", "dump_database", "find_pg_dump"]

logger = logging.getLogger("llm_proxy.storage")

DUMP_TIMEOUT_S: Final = 3600.0
"""How long a dump may run before it is stopped and counted as failed."""

DATABASES_JOB: Final = (
    "backups of a PostgreSQL database are the database's job (pg_dump, or your provider's "
    "snapshots)"
)

_CHECK_TIMEOUT_S: Final = 300.0
_STDERR_CHARS: Final = 2000


class BackupUnavailable(RuntimeError):
    """No pg_dump to run: backups are the database's own job."""


def find_pg_dump() -> str | None:
    """pg_dump on the PATH (Debian's wrapper picks the version that suits the server), else the
    newest of ``/usr/lib/postgresql/*/bin/pg_dump``; None when there is none."""
    found = shutil.which("pg_dump")
    if found is not None:
        return found
    installed = [
        path for path in glob.glob("/usr/lib/postgresql/*/bin/pg_dump") if os.access(path, os.X_OK)
    ]

    def version(path: str) -> tuple[int, ...]:
        number = Path(path).parents[1].name
        return tuple(int(part) for part in number.split(".") if part.isdigit())

    return max(installed, key=version, default=None)


def dump_database(
    url: str,
    database_path: str,
    *,
    now_ms: int,
    target: str | os.PathLike[str] | None = None,
    pg_dump: str | None = None,
    timeout_s: float = DUMP_TIMEOUT_S,
) -> BackupResult:
    """Dump the database at ``url`` into a new, checked file in the backups directory beside
    ``database_path`` (or at ``target``: an existing directory, or a new file).

    ``pg_dump`` is the program to run (empty: :func:`find_pg_dump`). Raises
    :class:`BackupUnavailable` without one, :class:`BackupError` when the dump or its check
    fails, ``FileExistsError`` for a ``target`` that exists, after removing whatever it wrote.
    """
    program = pg_dump or find_pg_dump()
    if program is None:
        raise BackupUnavailable(
            f"{DATABASES_JOB}: pg_dump is not installed on this host (Debian: apt install"
            " postgresql-client)"
        )
    if not (os.path.isfile(program) and os.access(program, os.X_OK)):
        raise BackupUnavailable(f"{DATABASES_JOB}: there is no pg_dump at {program}")
    conninfo, environment = _without_password(url)

    def dump_into(temp: Path) -> None:
        _run(
            [program, "--format=custom", "--no-password", f"--file={temp}", f"--dbname={conninfo}"],
            environment,
            timeout_s,
            "pg_dump",
        )
        _check(program, temp, environment)

    return write_backup(
        database_path, now_ms=now_ms, target=target, extension=".dump", write=dump_into
    )


def _without_password(url: str) -> tuple[str, dict[str, str]]:
    """``url`` as a libpq conninfo without its password, and the environment that carries it."""
    import psycopg.conninfo

    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise BackupError(f"the database URL cannot be read: {exc}") from None
    environment = dict(os.environ)
    password = params.pop("password", None)
    if password is not None:
        environment["PGPASSWORD"] = str(password)
    # make_conninfo quotes each value as libpq needs ("": no conninfo to extend).
    conninfo = psycopg.conninfo.make_conninfo(
        "", **{key: str(value) for key, value in params.items() if value is not None}
    )
    return conninfo, environment


def _run(command: list[str], environment: dict[str, str], timeout_s: float, what: str) -> None:
    """Run ``command``; BackupError with the end of its stderr when it fails or takes too long."""
    try:
        done = subprocess.run(
            command,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} did not finish within {timeout_s:g} s") from None
    except OSError as exc:
        raise BackupError(f"{what} could not run: {exc}") from None
    if done.returncode != 0:
        said = " ".join(done.stderr.decode(errors="replace").split())[-_STDERR_CHARS:]
        raise BackupError(f"{what} exited with status {done.returncode}: {said or 'no message'}")


def _check(pg_dump: str, dump: Path, environment: dict[str, str]) -> None:
    """A dump is never empty; ``pg_restore --list`` (when installed beside pg_dump) reads its
    whole table of contents, which a truncated file fails."""
    if dump.stat().st_size == 0:
        raise BackupError("pg_dump wrote an empty file")
    pg_restore = Path(pg_dump).with_name("pg_restore")
    if os.access(pg_restore, os.X_OK):
        _run([str(pg_restore), "--list", str(dump)], environment, _CHECK_TIMEOUT_S, "pg_restore")
