"""Dashboard users: plain functions of an APSW connection.

Write functions run inside the caller's transaction: the server passes them to
``StorageWriter.execute``, the CLI wraps them in its own ``BEGIN IMMEDIATE``. Timestamps are integer
Unix milliseconds passed in as ``now_ms``. Only password hashes are stored, made by the caller.

Usernames are stored as given (after NFC normalisation) and compared in Python with
:func:`proxy.usernames.fold_username` (NFC and full case folding), the folding the sessions and
the sign-in throttle use too: SQLite's ``lower()`` and ``NOCASE`` only fold ASCII, so "Ärger" and
"ärger" would both be allowed by the ``UNIQUE`` column. The users table is small (a handful of
dashboard accounts), so look-ups compare in Python. Databases made when names were compared with
``str.lower()`` need no migration: a name that now folds like another one can only be reached by
its exact spelling (an exact match wins), and no new name can collide.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final, Literal, get_args

import apsw

from proxy.usernames import fold_username
from storage.clients import UNCHANGED, Unchanged
from storage.sql import Connection, is_postgres
from storage.values import as_int

__all__ = [
    "MAX_DISPLAY_NAME_LENGTH",
    "MAX_USERNAME_LENGTH",
    "Role",
    "UserExists",
    "UserRow",
    "count_admins",
    "count_users",
    "create_user",
    "delete_user",
    "get_user",
    "list_users",
    "record_login",
    "set_password",
    "update_user",
]


Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = get_args(Role)

MAX_USERNAME_LENGTH = 64
MAX_DISPLAY_NAME_LENGTH = 200
_USERNAME_PUNCTUATION = frozenset("._-@")


@dataclass(frozen=True, slots=True)
class UserRow:
    """A dashboard user as stored."""

    id: int
    username: str
    password_hash: str
    role: Role
    display_name: str
    must_change_password: bool
    created_at: int
    updated_at: int
    last_login_at: int | None


USER_NAMES_LOCK_KEY: Final = int.from_bytes(b"llm-user", "big")
"""The PostgreSQL advisory lock that a user's creation holds until its transaction ends."""


class UserExists(ValueError):
    """Another user has the same name, ignoring case."""


_USER_SELECT = """
SELECT id, username, password_hash, role, display_name, must_change_password,
       created_at, updated_at, last_login_at
FROM users
"""


# --- validation -------------------------------------------------------------------------------


def _check_username(value: str) -> str:
    """``value`` in NFC; ValueError unless 1..64 letters, digits or ``._-@``."""
    if not isinstance(value, str):
        raise ValueError("username must be text")
    value = unicodedata.normalize("NFC", value)
    if not value:
        raise ValueError("username must not be empty")
    if len(value) > MAX_USERNAME_LENGTH:
        raise ValueError(f"username must be at most {MAX_USERNAME_LENGTH} characters")
    for ch in value:
        category = unicodedata.category(ch)
        if not (category.startswith("L") or category == "Nd" or ch in _USERNAME_PUNCTUATION):
            raise ValueError(f"username may contain only letters, digits and . _ - @, not {ch!r}")
    return value


def _check_role(value: str) -> Role:
    """``value`` if it is a known role."""
    for role in ROLES:
        if value == role:
            return role
    raise ValueError(f"role must be one of {', '.join(ROLES)}, got {value!r}")


def _check_display_name(value: str) -> str:
    """``value`` stripped; ValueError when not text, too long or containing control characters."""
    if not isinstance(value, str):
        raise ValueError("display_name must be text")
    value = value.strip()
    if len(value) > MAX_DISPLAY_NAME_LENGTH:
        raise ValueError(f"display_name must be at most {MAX_DISPLAY_NAME_LENGTH} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("display_name must not contain control characters")
    return value


def _check_password_hash(value: str) -> str:
    """``value`` unless it is not non-empty text."""
    if not isinstance(value, str) or not value:
        raise ValueError("password_hash must be non-empty text")
    return value


def _check_bool(value: bool, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r}")
    return value


# --- rows ---------------------------------------------------------------------------------------


def _user_row(row: apsw.SQLiteValues) -> UserRow:
    (id_, username, password_hash, role, display_name, must_change, created, updated, login) = row
    return UserRow(
        id=as_int(id_),
        username=str(username),
        password_hash=str(password_hash),
        role=_check_role(str(role)),
        display_name=str(display_name),
        must_change_password=bool(must_change),
        created_at=as_int(created),
        updated_at=as_int(updated),
        last_login_at=None if login is None else as_int(login),
    )


def _find(conn: Connection, username: str) -> UserRow | None:
    """The user named ``username`` ignoring case; an exact match wins over a case-folded one."""
    wanted = fold_username(username)
    matches = [
        _user_row(row)
        for row in conn.execute(_USER_SELECT + " ORDER BY id").fetchall()
        if fold_username(str(row[1])) == wanted
    ]
    # Two names that fold alike exist only in a database older than this folding, or if someone
    # bypassed create_user: the exact spelling finds its own.
    exact = unicodedata.normalize("NFC", username)
    for user in matches:
        if user.username == exact:
            return user
    return matches[0] if matches else None


def _require(conn: Connection, username: str) -> UserRow:
    user = _find(conn, username)
    if user is None:
        raise LookupError(f"unknown user: {username}")
    return user


def _get_by_id(conn: Connection, user_id: int) -> UserRow:
    rows = conn.execute(_USER_SELECT + " WHERE id = ?", (user_id,)).fetchall()
    return _user_row(rows[0])


# --- reads --------------------------------------------------------------------------------------


def get_user(conn: Connection, username: str) -> UserRow | None:
    """The user named ``username`` (ignoring case), or None."""
    return _find(conn, username)


def list_users(conn: Connection) -> list[UserRow]:
    """Every user, ordered by username (ignoring case)."""
    users = [_user_row(row) for row in conn.execute(_USER_SELECT).fetchall()]
    return sorted(users, key=lambda user: (fold_username(user.username), user.username))


def count_users(conn: Connection) -> int:
    """How many users there are (0 on first start: the server then creates ``admin``)."""
    return as_int(conn.execute("SELECT count(*) FROM users").fetchall()[0][0])


def count_admins(conn: Connection) -> int:
    """How many users have the role ``admin``."""
    return as_int(conn.execute("SELECT count(*) FROM users WHERE role = 'admin'").fetchall()[0][0])


# --- writes -------------------------------------------------------------------------------------


def _count_admins_locked(conn: Connection) -> int:
    """``count_admins``, the admins' rows locked until the transaction ends: two gateways on one
    PostgreSQL could otherwise each remove one of the last two admins (SQLite's write lock
    already serialises them)."""
    if not is_postgres(conn):
        return count_admins(conn)
    # In id order, so two such transactions queue rather than deadlock.
    query = "SELECT id FROM users WHERE role = 'admin' ORDER BY id FOR UPDATE"
    return len(conn.execute(query).fetchall())


def create_user(
    conn: Connection,
    *,
    username: str,
    password_hash: str,
    role: Role,
    display_name: str = "",
    must_change_password: bool = False,
    now_ms: int,
) -> UserRow:
    """Create a user; UserExists if the name is taken, ignoring case."""
    username = _check_username(username)
    password_hash = _check_password_hash(password_hash)
    role = _check_role(role)
    display_name = _check_display_name(display_name)
    must_change_password = _check_bool(must_change_password, "must_change_password")
    if is_postgres(conn):
        # Names that fold alike are not a constraint the database knows: one gateway of a fleet
        # at a time looks and inserts, as SQLite's write lock makes it on one host.
        conn.execute("SELECT pg_advisory_xact_lock(?)", (USER_NAMES_LOCK_KEY,))
    existing = _find(conn, username)
    if existing is not None:
        raise UserExists(f"username {username!r} is taken (by {existing.username!r})")
    (user_id,) = conn.execute(
        "INSERT INTO users (username, password_hash, role, display_name, must_change_password,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (username, password_hash, role, display_name, int(must_change_password), now_ms, now_ms),
    ).fetchall()[0]
    return _get_by_id(conn, user_id)


def update_user(
    conn: Connection,
    username: str,
    *,
    role: Role | Unchanged = UNCHANGED,
    display_name: str | Unchanged = UNCHANGED,
    now_ms: int,
) -> UserRow:
    """Change only the fields given; refuses to demote the last admin. LookupError if unknown."""
    changes: dict[str, object] = {}
    if role is not UNCHANGED:
        changes["role"] = _check_role(role)
    if display_name is not UNCHANGED:
        changes["display_name"] = _check_display_name(display_name)
    user = _require(conn, username)
    if not changes:
        return user
    demoted = user.role == "admin" and changes.get("role", "admin") != "admin"
    if demoted and _count_admins_locked(conn) <= 1:
        raise ValueError(f"role: {user.username!r} is the last admin and cannot be demoted")
    # Column names come from the fixed set above, never from the caller.
    assignments = ", ".join(f"{column} = ?" for column in changes)
    conn.execute(
        f"UPDATE users SET {assignments}, updated_at = ? WHERE id = ?",
        (*changes.values(), now_ms, user.id),
    )
    return _get_by_id(conn, user.id)


def set_password(
    conn: Connection,
    username: str,
    password_hash: str,
    *,
    must_change_password: bool,
    now_ms: int,
) -> UserRow:
    """Replace a user's password hash; LookupError if unknown."""
    password_hash = _check_password_hash(password_hash)
    must_change_password = _check_bool(must_change_password, "must_change_password")
    user = _require(conn, username)
    conn.execute(
        "UPDATE users SET password_hash = ?, must_change_password = ?, updated_at = ? WHERE id = ?",
        (password_hash, int(must_change_password), now_ms, user.id),
    )
    return _get_by_id(conn, user.id)


def delete_user(conn: Connection, username: str) -> None:
    """Delete a user; refuses to delete the last admin. LookupError if unknown."""
    user = _require(conn, username)
    if user.role == "admin" and _count_admins_locked(conn) <= 1:
        raise ValueError(f"username: {user.username!r} is the last admin and cannot be deleted")
    conn.execute("DELETE FROM users WHERE id = ?", (user.id,))


def record_login(conn: Connection, username: str, *, now_ms: int) -> None:
    """Store a successful sign-in time, never moving it backwards.

    A user deleted since the password check is ignored, as a key deleted before its use is
    recorded is in ``record_key_use``.
    """
    user = _find(conn, username)
    if user is None:
        return
    conn.execute(
        "UPDATE users SET last_login_at = ?"
        " WHERE id = ? AND (last_login_at IS NULL OR last_login_at < ?)",
        (now_ms, user.id, now_ms),
    )
