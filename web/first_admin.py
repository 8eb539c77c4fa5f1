"""The first start: with no user yet, create ``admin`` with a one-time password (design §5).

The password is ``$LLM_PROXY_ADMIN_PASSWORD`` when set, else generated and written to a file
readable only by the service's user, next to the database; the log says where, never what. (The
design said "printed once to the log": logs are copied, shipped and kept for months, so the secret
goes to a 0600 file instead, as Jenkins does with its initial admin password.) Either way the
password must be changed at first sign-in, which the server enforces.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from functools import partial
from pathlib import Path
from typing import Final

import trio

from proxy.errors import StartupError
from proxy.passwords import Passwords, generate_password
from storage.users import UserExists, count_users, create_user
from storage.writer import StorageWriter

log = logging.getLogger("llm_proxy.dashboard")

ADMIN: Final = "admin"
PASSWORD_ENV: Final = "LLM_PROXY_ADMIN_PASSWORD"
PASSWORD_FILE: Final = "llm-proxy-initial-admin-password"


def password_file(database: str) -> Path:
    """Where the first start leaves the generated password: beside the database."""
    return Path(database).resolve().parent / PASSWORD_FILE


def _stage_secret(path: Path, secret: str) -> Path:
    """Write ``secret``, synced and mode 0600, to a new temporary file beside ``path``.

    Its name is claimed exclusively and never followed; :func:`_publish` then renames it over
    ``path``. A file left at ``path`` before (by an older version or by hand, perhaps 0644) is
    so replaced, not rewritten: it neither keeps its mode nor, if it is a symbolic link, sends
    the secret to wherever the link points.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the mode given to open() is filtered by the umask
            os.write(fd, (secret + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def _publish(temp: Path, path: Path) -> None:
    """Give the staged file its name, durably where the file system allows."""
    os.replace(temp, path)
    with contextlib.suppress(OSError):  # some file systems cannot sync a directory
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


async def ensure_first_admin(
    writer: StorageWriter, passwords: Passwords, database: str, *, now_ms: int
) -> None:
    """Create the first admin when the users table is empty; nothing otherwise."""
    if await writer.execute(count_users):
        return
    given = os.environ.get(PASSWORD_ENV, "")
    password = given or generate_password()
    password_hash = await passwords.hash(password)
    path = password_file(database)
    staged: Path | None = None
    if not given:
        # Staged before the user is created, published after: a disk that refuses the file
        # leaves no admin whose password nobody knows, and a second process that creates the
        # admin first keeps its own file.
        try:
            staged = await trio.to_thread.run_sync(_stage_secret, path, password)
        except OSError as exc:
            raise StartupError(
                f"cannot write the first admin's password beside {path}: {exc.strerror or exc}"
            ) from exc
    create = partial(
        create_user,
        username=ADMIN,
        password_hash=password_hash,
        role="admin",
        display_name="Administrator",
        must_change_password=True,
        now_ms=now_ms,
    )
    try:
        await writer.execute(create)
    except BaseException as exc:
        if staged is not None:
            with trio.move_on_after(5, shield=True):
                await trio.to_thread.run_sync(partial(staged.unlink, missing_ok=True))
        if isinstance(exc, UserExists):
            return  # another process (a second server, the CLI) made it first
        raise
    if staged is None:
        log.warning(
            "first start: created user %r with the password from $%s; it must be changed at "
            "first sign-in",
            ADMIN,
            PASSWORD_ENV,
        )
        return
    await trio.to_thread.run_sync(_publish, staged, path)
    log.warning(
        "first start: created user %r; its one-time password is in %s (readable by this user "
        "only); sign in at / and change it",
        ADMIN,
        path,
    )
