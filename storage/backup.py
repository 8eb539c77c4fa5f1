"""Online backups: ``VACUUM INTO`` a timestamped file, checked before it is reported.

``backup_database`` must run on a connection that is *not* inside a transaction (SQLite refuses
``VACUUM`` in one), so never hand it to ``StorageWriter.execute`` (which wraps every job in
``BEGIN IMMEDIATE``) nor wrap it in ``BEGIN`` yourself. It only reads the database, so a read-only
connection is the right one: in the server, ``await reads.run(partial(backup_database,
database_path=path, now_ms=now))`` on the ``ReadPool``; in the CLI, a connection from
``open_connection(path, readonly=True)``. In WAL mode the copy is a consistent snapshot taken
while the writer goes on writing.

The copy is written to a hidden temporary file, checked (``PRAGMA quick_check``), synced, and only
then given its final name ``llm-proxy-YYYYmmdd-HHMMSS[-N].db`` (UTC), so ``list_backups`` never
shows a half-written file and a failure leaves nothing behind.
"""

from __future__ import annotations

import calendar
import contextlib
import logging
import os
import re
import secrets
import stat
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apsw

from storage.connection import create_private_file

__all__ = [
    "BACKUP_DIRECTORY_NAME",
    "BackupError",
    "BackupResult",
    "backup_database",
    "backup_directory",
    "ensure_directory",
    "fsync_path",
    "list_backups",
    "reserve_name",
    "write_backup",
]

logger = logging.getLogger("llm_proxy.storage")

BACKUP_DIRECTORY_NAME = "backups"
# ".db": a SQLite copy; ".dump": pg_dump's custom format (storage/postgres_backup.py).
_NAME = re.compile(r"llm-proxy-(\d{8})-(\d{6})(?:-(\d+))?\.(?:db|dump)")
_MAX_SAME_SECOND = 10_000


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A backup file."""

    path: str
    size_bytes: int
    created_at_ms: int
    """When it was taken; from ``list_backups``, to the second (from the file name)."""


class BackupError(RuntimeError):
    """The copy was made but failed its check; it has been removed."""


def backup_directory(database_path: str) -> Path:
    """Where backups of ``database_path`` go: a ``backups`` folder beside it."""
    if not database_path or database_path == ":memory:":
        raise ValueError(f"database path {database_path!r} has no directory to back up into")
    return Path(database_path).absolute().parent / BACKUP_DIRECTORY_NAME


def backup_database(
    conn: apsw.Connection,
    database_path: str,
    *,
    now_ms: int,
    target: str | os.PathLike[str] | None = None,
) -> BackupResult:
    """Copy the database ``conn`` has open into a new, checked file in the backup directory.

    ``target`` chooses another place: an existing directory gets the timestamped file, any other
    path is the file itself, which must not exist yet (FileExistsError; it is never overwritten)
    and whose directory must. Blocking, and possibly long for a large database: run it on a worker
    thread, on a connection outside any transaction (see the module docstring). Raises on any
    failure, after removing whatever it wrote.
    """
    if conn.in_transaction:
        raise RuntimeError("backup_database cannot run inside a transaction (VACUUM INTO)")

    def vacuum_into(temp: Path) -> None:
        conn.execute("VACUUM INTO ?", (str(temp),))
        _verify(temp, _user_version(conn))

    # VACUUM INTO accepts an empty file as its target: the private file made for it is 0600 from
    # the start and has a name no one else is using.
    return write_backup(
        database_path, now_ms=now_ms, target=target, extension=".db", write=vacuum_into
    )


def write_backup(
    database_path: str,
    *,
    now_ms: int,
    target: str | os.PathLike[str] | None,
    extension: str,
    write: Callable[[Path], None],
) -> BackupResult:
    """Make a backup file whichever the backend: ``write(temp)`` fills and checks a new private
    file beside its destination, which then takes the backup's name in one rename.

    The destination is the backups directory beside ``database_path`` (a timestamped name ending
    in ``extension``), or ``target``: an existing directory, or a new file (``FileExistsError``
    if it exists: a backup never overwrites). On any failure every file written is removed.
    Blocking.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now_ms // 1000))
    named: Path | None = None
    if target is None:
        directory = backup_directory(database_path)
        ensure_directory(directory)
    elif Path(target).is_dir():
        directory = Path(target).absolute()
    else:
        named = Path(target).absolute()
        directory = named.parent
        # Checked now to fail before the copy; the final name is still claimed exclusively.
        if os.path.lexists(named):
            raise FileExistsError(f"{named} already exists; backups never overwrite a file")
        missing = named if str(target).endswith(os.sep) else directory
        if not missing.is_dir():
            raise FileNotFoundError(f"no such directory: {missing}")
    token = secrets.token_hex(4)
    temp = create_private_file(directory / f".llm-proxy-{stamp}-{token}{extension}.tmp")
    final: Path | None = None
    try:
        write(temp)
        fsync_path(temp)
        final = (
            reserve_name(directory, stamp, extension)
            if named is None
            else create_private_file(named)
        )
        os.replace(temp, final)
    except BaseException:
        _remove_quietly(temp)
        if final is not None:
            _remove_quietly(final)
        raise
    # The new name is durable once the directory is synced; some file systems cannot do that.
    with contextlib.suppress(OSError):
        fsync_path(directory)
    size = final.stat().st_size
    logger.info("database backed up to %s (%d bytes)", final, size)
    return BackupResult(path=str(final), size_bytes=size, created_at_ms=now_ms)


def list_backups(database_path: str) -> list[BackupResult]:
    """The backups in the backup directory, newest first; none if the directory is missing."""
    directory = backup_directory(database_path)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found: list[tuple[int, int, BackupResult]] = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match is None:
            continue
        day, clock, number = match.groups()
        try:
            created_s = calendar.timegm(time.strptime(day + clock, "%Y%m%d%H%M%S"))
            info = (directory / name).lstat()
        except (ValueError, OSError):
            continue
        # Symbolic links are not ours; an empty file is a name being claimed by a backup.
        if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
            continue
        result = BackupResult(str(directory / name), info.st_size, created_s * 1000)
        found.append((created_s, int(number or 0), result))
    found.sort(key=lambda entry: entry[:2], reverse=True)
    return [result for _, _, result in found]


# --- helpers ------------------------------------------------------------------------------------


def ensure_directory(directory: Path) -> None:
    """Create ``directory`` private to its owner, unless it exists."""
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        if not directory.is_dir():
            raise NotADirectoryError(f"{directory} exists and is not a directory") from None
        return
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def reserve_name(directory: Path, stamp: str, extension: str = ".db") -> Path:
    """Claim the first free ``llm-proxy-<stamp>[-N]<extension>`` by creating it empty."""
    for number in range(_MAX_SAME_SECOND):
        suffix = f"-{number}" if number else ""
        try:
            return create_private_file(directory / f"llm-proxy-{stamp}{suffix}{extension}")
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: {_MAX_SAME_SECOND} backups named for {stamp} already")


def _user_version(conn: apsw.Connection) -> int:
    return int(conn.pragma("user_version"))


def _verify(path: Path, user_version: int) -> None:
    """Open the copy read-only and check it; BackupError if it is not sound."""
    # immutable=1: nothing else writes this file, so SQLite takes no locks and creates no -shm.
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro&immutable=1"
    copy = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    try:
        result = [tuple(row) for row in copy.execute("PRAGMA quick_check").fetchall()]
        copied_version = _user_version(copy)
    finally:
        copy.close()
    if result != [("ok",)]:
        raise BackupError(f"backup {path} failed its check: {result[:5]!r}")
    if copied_version != user_version:
        raise BackupError(
            f"backup {path} has schema version {copied_version}, the database {user_version}"
        )


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: Path) -> None:
    """Remove ``path`` and any journal SQLite left beside it; log what cannot be removed."""
    for leftover in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            leftover.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not remove %s after a failed backup: %r", leftover, exc)
