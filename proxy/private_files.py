"""The files ``serve`` keeps are its own user's only: those found open to others are tightened.

New files are private from the start (``open_connection``, the backup code and the first admin's
password file create them 0600, and the commands that write files run with umask 077). Files
left by an older version, restored with ``cp`` under umask 022 or made by hand may be readable
by group or others; they hold the same data, so each start takes those permissions away and
says so in one log line. A symbolic link is left alone (what it points to is not ours to
change) except for the database, which SQLite opens through it.

Part of the composition: it names files from several layers (the database, the password file
beside it, the backup directory).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from storage.backup import backup_directory, list_backups
from storage.connection import database_files
from web.first_admin import password_file

log = logging.getLogger("llm_proxy.service")

_GROUP_OTHER = 0o077


def gateway_files(database: str) -> list[Path]:
    """Everything the gateway keeps beside ``database`` that holds its data or a secret."""
    if database == ":memory:":
        return []
    backups = backup_directory(database)
    return [
        *database_files(database),
        password_file(database),
        backups,
        *(Path(backup.path) for backup in list_backups(database)),
    ]


def restrict_to_owner(paths: Iterable[Path]) -> tuple[list[str], list[str]]:
    """Take group and other permissions off each existing file or directory in ``paths``.

    Returns what was changed ("path 0644 -> 0600") and what could not be ("path: reason").
    """
    changed: list[str] = []
    failed: list[str] = []
    for path in paths:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror or exc}")
            continue
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            continue  # a link, a socket: not ours to change
        old = stat.S_IMODE(info.st_mode)
        if not old & _GROUP_OTHER:
            continue
        new = old & ~_GROUP_OTHER
        try:
            os.chmod(path, new)
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror or exc}")
            continue
        changed.append(f"{path} {old:04o} -> {new:04o}")
    return changed, failed


def make_gateway_files_private(database: str) -> None:
    """Tighten the gateway's files (see the module docstring); one log line for each outcome.

    Blocking: run it in a worker thread.
    """
    changed, failed = restrict_to_owner(gateway_files(database))
    if changed:
        log.warning(
            "restricted the permissions of files open to other users to their owner: %s",
            ", ".join(changed),
        )
    if failed:
        log.warning(
            "could not restrict the permissions of files open to other users: %s",
            ", ".join(failed),
        )
