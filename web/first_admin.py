"""The first start: with no user yet, create ``admin`` with a one-time password (design §5).

The password is ``$LLM_PROXY_ADMIN_PASSWORD`` when set, else generated and written to a file
readable only by the service's user, next to the database; the log says where, never what. (The
design said "printed once to the log": logs are copied, shipped and kept for months, so the secret
goes to a 0600 file instead, as Jenkins does with its initial admin password.) Either way the
password must be changed at first sign-in, which the server enforces.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Final

import trio

from proxy.passwords import Passwords, generate_password
from storage.users import UserExists, count_users, create_user
from storage.writer import StorageWriter

log = logging.getLogger("llm_proxy.dashboard")

ADMIN: Final = "admin"
PASSWORD_ENV: Final = "LLM_PROXY_ADMIN_PASSWORD"
PASSWORD_FILE: Final = "llm-proxy-initial-admin-password"


def _write_secret(database: str, secret: str) -> Path:
    path = Path(database).resolve().parent / PASSWORD_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(secret + "\n")
    return path


async def ensure_first_admin(
    writer: StorageWriter, passwords: Passwords, database: str, *, now_ms: int
) -> None:
    """Create the first admin when the users table is empty; nothing otherwise."""
    if await writer.execute(count_users):
        return
    given = os.environ.get(PASSWORD_ENV, "")
    password = given or generate_password()
    password_hash = await passwords.hash(password)
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
    except UserExists:
        return  # another process (a second server, the CLI) made it first
    if given:
        log.warning(
            "first start: created user %r with the password from $%s; it must be changed at "
            "first sign-in",
            ADMIN,
            PASSWORD_ENV,
        )
        return
    path = await trio.to_thread.run_sync(_write_secret, database, password)
    log.warning(
        "first start: created user %r; its one-time password is in %s (readable by this user "
        "only); sign in at / and change it",
        ADMIN,
        path,
    )
