"""Dashboard settings: the ``settings`` table's user-visible keys, JSON values.

Plain functions of an APSW connection; writes run inside the caller's transaction (see
``storage.clients``). Some rows of the table are the server's own bookkeeping (the API key change
counter): they are in :data:`INTERNAL_KEYS`, never listed and never writable from here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from storage.clients import AUTH_GENERATION_KEY
from storage.sql import Connection, bytewise

__all__ = ["INTERNAL_KEYS", "MAX_KEY_LENGTH", "get_settings", "put_settings"]

INTERNAL_KEYS: frozenset[str] = frozenset({AUTH_GENERATION_KEY})
"""Rows the server keeps for itself: a dashboard write here would forge the key cache state."""

MAX_KEY_LENGTH = 100
_KEY = re.compile(r"[a-z0-9_.]+")


def _check_key(key: str) -> str:
    """``key`` if it is a user-visible settings key."""
    if not isinstance(key, str):
        raise ValueError(f"settings key must be text, got {key!r}")
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise ValueError(
            f"settings key {key!r} must be 1 to {MAX_KEY_LENGTH} characters of a-z, 0-9, _ and ."
        )
    if key in INTERNAL_KEYS:
        raise ValueError(f"settings key {key!r} is internal and cannot be changed")
    return key


def _encode(key: str, value: object) -> str:
    """``value`` as JSON; ValueError naming ``key`` when it has no JSON form."""
    try:
        # allow_nan=False: NaN and Infinity are not JSON, and the table's json_valid() check
        # would refuse them anyway, with a less helpful error.
        return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"settings value for {key!r} is not JSON-serialisable: {exc}") from None


def get_settings(conn: Connection) -> dict[str, object]:
    """Every user-visible setting, by key, its value decoded from JSON."""
    order = bytewise(conn, "key")
    rows = conn.execute(f"SELECT key, value_json FROM settings ORDER BY {order}").fetchall()
    return {
        str(key): json.loads(str(value)) for key, value in rows if str(key) not in INTERNAL_KEYS
    }


def put_settings(
    conn: Connection, values: Mapping[str, object], *, now_ms: int
) -> dict[str, object]:
    """Create or replace each setting given; return every user-visible setting after.

    Every key and value is checked before anything is written: one bad entry changes nothing.
    """
    encoded = [(_check_key(key), _encode(key, value)) for key, value in values.items()]
    conn.executemany(
        "INSERT INTO settings (key, value_json, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value_json = excluded.value_json,"
        " updated_at = excluded.updated_at",
        [(key, value, now_ms) for key, value in encoded],
    )
    return get_settings(conn)
