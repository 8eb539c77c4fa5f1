"""API clients and their keys: plain functions of an APSW connection.

Write functions run inside the caller's transaction: the server passes them to
``StorageWriter.execute``, the CLI wraps them in its own ``BEGIN IMMEDIATE``. Timestamps are integer
Unix milliseconds passed in as ``now_ms``. Only a key's SHA-256, its first seven and last four
characters are stored; the plain key is returned once and never stored or logged.
"""

from __future__ import annotations

import enum
import json
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import apsw

from proxy.keys import generate_key, mask_key
from storage.sql import Connection, is_postgres
from storage.values import as_int, as_opt_float, as_opt_int

__all__ = [
    "AUTH_GENERATION_KEY",
    "CLIENT_ID_PREFIX",
    "MAX_NAME_LENGTH",
    "UNCHANGED",
    "ActiveKey",
    "ClientRow",
    "TokenRow",
    "Unchanged",
    "active_keys",
    "add_key",
    "auth_generation",
    "create_client",
    "delete_client",
    "get_client",
    "list_clients",
    "list_keys",
    "record_key_use",
    "revoke_client",
    "revoke_key",
    "update_client",
]

CLIENT_ID_PREFIX = "cl_"
AUTH_GENERATION_KEY = "auth_generation"
MAX_NAME_LENGTH = 200


class Unchanged(enum.Enum):
    """The type of :data:`UNCHANGED`."""

    UNCHANGED = enum.auto()


UNCHANGED: Final = Unchanged.UNCHANGED
"""Leave a field as it is: needed where ``None`` is a real value ("use the default")."""


@dataclass(frozen=True, slots=True)
class ClientRow:
    """A client with a summary of its keys."""

    id: str
    name: str
    description: str
    is_active: bool
    rate_limit_per_minute: int | None
    """Requests per minute; None: the configured default; 0: unlimited."""
    tokens_per_minute: int | None
    """Tokens per minute; None or 0: unlimited."""
    created_at: int
    updated_at: int
    key_count: int
    """Keys not revoked."""
    last_used_at: int | None
    """The latest use of any of its keys."""
    budget_day_usd: float | None = None
    """USD per UTC day; None: no daily budget."""
    budget_month_usd: float | None = None
    """USD per UTC calendar month; None: no monthly budget."""
    budget_warn_percent: int = 80
    """The percent of a budget at which it warns."""


@dataclass(frozen=True, slots=True)
class TokenRow:
    """One key of a client, as stored: never the plain key."""

    id: int
    client_id: str
    prefix: str
    last4: str
    name: str
    created_at: int
    last_used_at: int | None
    revoked_at: int | None

    @property
    def masked(self) -> str:
        """The display form, e.g. ``sk-AbCd…wxyz``."""
        return mask_key(self.prefix, self.last4)

    @property
    def revoked(self) -> bool:
        """Whether the key was revoked."""
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """A key that authenticates now (not revoked, its client active), with its client's limits."""

    token_id: int
    client_id: str
    token_sha256: str
    rate_limit_per_minute: int | None
    tokens_per_minute: int | None


_CLIENT_SELECT = """
SELECT c.id, c.name, c.description, c.is_active, c.rate_limit_per_minute, c.tokens_per_minute,
       c.created_at, c.updated_at,
       (SELECT count(*) FROM client_tokens AS t WHERE t.client_id = c.id AND t.revoked_at IS NULL),
       (SELECT max(t.last_used_at) FROM client_tokens AS t WHERE t.client_id = c.id),
       c.budget_day_usd, c.budget_month_usd, c.budget_warn_percent
FROM clients AS c
"""

# Ties between clients created in the same millisecond go by insertion order: SQLite's rowid;
# PostgreSQL has none, so its first key's id (a client is created with one, in the same
# transaction, and ids only grow), then the id for a client whose keys are all gone.
_CLIENT_ORDER: Final = {
    False: " ORDER BY c.created_at, c.rowid",
    True: " ORDER BY c.created_at,"
    " (SELECT min(t.id) FROM client_tokens AS t WHERE t.client_id = c.id) NULLS FIRST, c.id",
}

_TOKEN_SELECT = """
SELECT id, client_id, prefix, last4, name, created_at, last_used_at, revoked_at
FROM client_tokens
"""


# --- validation -------------------------------------------------------------------------------


def _check_name(value: str, what: str, *, required: bool) -> str:
    """``value`` stripped; ValueError when empty (if ``required``), too long or multi-line."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    value = value.strip()
    if required and not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} must be at most {MAX_NAME_LENGTH} characters")
    # Names are printed one per line by the CLI: a newline or escape code would forge output.
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError(f"{what} must not contain control characters")
    return value


def _check_description(value: str) -> str:
    """``value`` stripped; ValueError when not text or too long."""
    if not isinstance(value, str):
        raise ValueError("description must be text")
    value = value.strip()
    if len(value) > 10 * MAX_NAME_LENGTH:
        raise ValueError(f"description must be at most {10 * MAX_NAME_LENGTH} characters")
    return value


def _check_limit(value: int | None, what: str) -> int | None:
    """``value`` unless it is not a whole number >= 0 (None passes: "use the default")."""
    if value is None:
        return None
    # bool is an int subclass: True would silently become a limit of 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value


# --- rows ---------------------------------------------------------------------------------------


def _client_row(row: apsw.SQLiteValues) -> ClientRow:
    (id_, name, description, active, rpm, tpm, created, updated, keys, last_used, *budget) = row
    day, month, warn = budget
    return ClientRow(
        id=str(id_),
        name=str(name),
        description=str(description),
        is_active=bool(active),
        rate_limit_per_minute=as_opt_int(rpm),
        tokens_per_minute=as_opt_int(tpm),
        created_at=as_int(created),
        updated_at=as_int(updated),
        key_count=as_int(keys),
        last_used_at=as_opt_int(last_used),
        budget_day_usd=as_opt_float(day),
        budget_month_usd=as_opt_float(month),
        budget_warn_percent=as_int(warn),
    )


def _token_row(row: apsw.SQLiteValues) -> TokenRow:
    (id_, client_id, prefix, last4, name, created, last_used, revoked) = row
    return TokenRow(
        id=as_int(id_),
        client_id=str(client_id),
        prefix=str(prefix),
        last4=str(last4),
        name=str(name),
        created_at=as_int(created),
        last_used_at=as_opt_int(last_used),
        revoked_at=as_opt_int(revoked),
    )


def _client_exists(conn: Connection, client_id: str) -> bool:
    rows = conn.execute("SELECT 1 FROM clients WHERE id = ?", (client_id,)).fetchall()
    return bool(rows)


def _unknown_client(client_id: str) -> LookupError:
    return LookupError(f"unknown client: {client_id}")


def _get_token(conn: Connection, token_id: int) -> TokenRow:
    rows = conn.execute(_TOKEN_SELECT + " WHERE id = ?", (token_id,)).fetchall()
    if not rows:
        raise LookupError(f"unknown key: {token_id}")
    return _token_row(rows[0])


def _insert_key(conn: Connection, client_id: str, name: str, now_ms: int) -> tuple[TokenRow, str]:
    """Store a new key's digest for ``client_id``; return its row and the plain key."""
    key = generate_key()
    (token_id,) = conn.execute(
        "INSERT INTO client_tokens (client_id, token_sha256, prefix, last4, name, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (client_id, key.sha256, key.prefix, key.last4, name, now_ms),
    ).fetchall()[0]
    token = TokenRow(
        id=token_id,
        client_id=client_id,
        prefix=key.prefix,
        last4=key.last4,
        name=name,
        created_at=now_ms,
        last_used_at=None,
        revoked_at=None,
    )
    return token, key.plain


# --- writes -------------------------------------------------------------------------------------


def create_client(
    conn: Connection,
    *,
    name: str,
    description: str = "",
    rate_limit_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    key_name: str = "",
    now_ms: int,
) -> tuple[ClientRow, TokenRow, str]:
    """Create a client with its first key; return both rows and the plain key (shown once)."""
    name = _check_name(name, "name", required=True)
    description = _check_description(description)
    rpm = _check_limit(rate_limit_per_minute, "rate_limit_per_minute")
    tpm = _check_limit(tokens_per_minute, "tokens_per_minute")
    key_name = _check_name(key_name, "key name", required=False)
    client_id = CLIENT_ID_PREFIX + secrets.token_hex(8)
    conn.execute(
        "INSERT INTO clients (id, name, description, is_active, rate_limit_per_minute,"
        " tokens_per_minute, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
        (client_id, name, description, rpm, tpm, now_ms, now_ms),
    )
    token, plain = _insert_key(conn, client_id, key_name, now_ms)
    client = ClientRow(
        id=client_id,
        name=name,
        description=description,
        is_active=True,
        rate_limit_per_minute=rpm,
        tokens_per_minute=tpm,
        created_at=now_ms,
        updated_at=now_ms,
        key_count=1,
        last_used_at=None,
    )
    return client, token, plain


def add_key(
    conn: Connection, client_id: str, *, name: str = "", now_ms: int
) -> tuple[TokenRow, str]:
    """Add a key to a client; return its row and the plain key (shown once)."""
    name = _check_name(name, "key name", required=False)
    if not _client_exists(conn, client_id):
        raise _unknown_client(client_id)
    return _insert_key(conn, client_id, name, now_ms)


def revoke_key(conn: Connection, token_id: int, *, now_ms: int) -> TokenRow:
    """Revoke one key; revoking it again keeps the first ``revoked_at``."""
    conn.execute(
        "UPDATE client_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (now_ms, token_id),
    )
    return _get_token(conn, token_id)


def revoke_client(conn: Connection, client_id: str, *, now_ms: int) -> int:
    """Deactivate a client and revoke all its keys; return how many keys were revoked now."""
    if not _client_exists(conn, client_id):
        raise _unknown_client(client_id)
    conn.execute(
        "UPDATE clients SET is_active = 0, updated_at = ? WHERE id = ? AND is_active = 1",
        (now_ms, client_id),
    )
    conn.execute(
        "UPDATE client_tokens SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL",
        (now_ms, client_id),
    )
    return conn.changes()


def update_client(
    conn: Connection,
    client_id: str,
    *,
    now_ms: int,
    name: str | None = None,
    description: str | None = None,
    is_active: bool | None = None,
    rate_limit_per_minute: int | Unchanged | None = UNCHANGED,
    tokens_per_minute: int | Unchanged | None = UNCHANGED,
) -> ClientRow:
    """Change only the fields given; return the client as it is now."""
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = _check_name(name, "name", required=True)
    if description is not None:
        changes["description"] = _check_description(description)
    if is_active is not None:
        if not isinstance(is_active, bool):
            raise ValueError(f"is_active must be true or false, got {is_active!r}")
        changes["is_active"] = int(is_active)
    if rate_limit_per_minute is not UNCHANGED:
        changes["rate_limit_per_minute"] = _check_limit(
            rate_limit_per_minute, "rate_limit_per_minute"
        )
    if tokens_per_minute is not UNCHANGED:
        changes["tokens_per_minute"] = _check_limit(tokens_per_minute, "tokens_per_minute")
    if not _client_exists(conn, client_id):
        raise _unknown_client(client_id)
    renamed = "name" in changes and _current_name(conn, client_id) != changes["name"]
    if changes:
        # Column names come from the fixed set above, never from the caller.
        assignments = ", ".join(f"{column} = ?" for column in changes)
        conn.execute(
            f"UPDATE clients SET {assignments}, updated_at = ? WHERE id = ?",
            (*changes.values(), now_ms, client_id),
        )
    if renamed:
        # The triggers count only what authentication reads; the key table in memory also names
        # the live feed's calls, so a rename must reload it too. Counted here rather than by a
        # trigger (no migration), so a rename made by hand in SQL waits for the next reload.
        _bump_auth_generation(conn, now_ms)
    return get_client(conn, client_id)


def _current_name(conn: Connection, client_id: str) -> str:
    (row,) = conn.execute("SELECT name FROM clients WHERE id = ?", (client_id,)).fetchall()
    return str(row[0])


def _bump_auth_generation(conn: Connection, now_ms: int) -> None:
    """Move the change counter as the triggers do (the same SQL on both backends)."""
    conn.execute(
        "INSERT INTO settings (key, value_json, updated_at) VALUES (?, '1', ?)"
        " ON CONFLICT (key) DO UPDATE SET"
        " value_json = CAST(CAST(settings.value_json AS BIGINT) + 1 AS TEXT),"
        " updated_at = excluded.updated_at",
        (AUTH_GENERATION_KEY, now_ms),
    )


def delete_client(conn: Connection, client_id: str) -> None:
    """Delete a client, its keys (by cascade) and its stored responses; its request log stays.
    LookupError if unknown."""
    conn.execute("DELETE FROM clients WHERE id = ?", (client_id,))
    if conn.changes() == 0:
        raise _unknown_client(client_id)
    # Nobody can read them any more, and they may hold personal data: not kept until they expire.
    conn.execute("DELETE FROM stored_responses WHERE client_id = ?", (client_id,))


def record_key_use(conn: Connection, last_used: Mapping[int, int]) -> None:
    """Store when keys were last used (token id -> ms), never moving a time backwards."""
    if not last_used:
        return
    conn.executemany(
        "UPDATE client_tokens SET last_used_at = ?"
        " WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
        # In id order: gateways sharing a PostgreSQL then lock the rows they both update in the
        # same order, and one waits for the other instead of deadlocking.
        [(ms, token_id, ms) for token_id, ms in sorted(last_used.items())],
    )


# --- reads --------------------------------------------------------------------------------------


def get_client(conn: Connection, client_id: str) -> ClientRow:
    """One client; LookupError if unknown."""
    rows = conn.execute(_CLIENT_SELECT + " WHERE c.id = ?", (client_id,)).fetchall()
    if not rows:
        raise _unknown_client(client_id)
    return _client_row(rows[0])


def list_clients(conn: Connection) -> list[ClientRow]:
    """Every client, oldest first."""
    rows = conn.execute(_CLIENT_SELECT + _CLIENT_ORDER[is_postgres(conn)]).fetchall()
    return [_client_row(row) for row in rows]


def list_keys(conn: Connection, client_id: str) -> list[TokenRow]:
    """A client's keys, revoked ones too, oldest first; LookupError if the client is unknown."""
    if not _client_exists(conn, client_id):
        raise _unknown_client(client_id)
    rows = conn.execute(
        _TOKEN_SELECT + " WHERE client_id = ? ORDER BY created_at, id", (client_id,)
    ).fetchall()
    return [_token_row(row) for row in rows]


def active_keys(conn: Connection) -> list[ActiveKey]:
    """Every key that authenticates now: not revoked, of an active client."""
    rows = conn.execute(
        """
        SELECT t.id, t.client_id, t.token_sha256, c.rate_limit_per_minute, c.tokens_per_minute
        FROM client_tokens AS t JOIN clients AS c ON c.id = t.client_id
        WHERE t.revoked_at IS NULL AND c.is_active = 1
        ORDER BY t.id
        """
    ).fetchall()
    return [
        ActiveKey(
            token_id=as_int(token_id),
            client_id=str(client_id),
            token_sha256=str(digest),
            rate_limit_per_minute=as_opt_int(rpm),
            tokens_per_minute=as_opt_int(tpm),
        )
        for (token_id, client_id, digest, rpm, tpm) in rows
    ]


def auth_generation(conn: Connection) -> int:
    """The key change counter, bumped by triggers on every change to clients or keys."""
    rows = conn.execute(
        "SELECT value_json FROM settings WHERE key = ?", (AUTH_GENERATION_KEY,)
    ).fetchall()
    if not rows:
        return 0
    value = json.loads(str(rows[0][0]))
    return int(value)
