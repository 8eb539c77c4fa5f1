"""The audit log: who changed what from the dashboard, with no secret in it.

Plain functions of an APSW connection; ``record_audit`` runs inside the caller's transaction (see
``storage.clients``).

A detail is refused when any key in it, at any depth, is named like a secret, so a password or an
API key cannot reach the log by mistake (``{"token": plain}``, ``{"new": {"apiKey": ...}}``).
Names are compared case-insensitively with camelCase, ``-``, ``.`` and spaces read as ``_``:

- a name that *is* a secret word is refused whatever its value: ``password``, ``passwd``,
  ``password_hash``, ``token``, ``api_key``, ``apikey``, ``key``, ``secret``;
- a name that *ends* in one (``new_password``, ``session_token``, ``x-api-key``,
  ``clientSecret``) is refused when its value could hold a secret: text, a list or an object.
  A flag or a count under such a name (``{"reset_password": true}``) is allowed.

Names that merely start with a secret word (``token_id``, ``key_name``, ``max_tokens``) pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import apsw

from storage.sql import Connection

__all__ = ["MAX_AUDIT_PAGE", "SECRET_NAMES", "AuditRow", "list_audit", "record_audit"]

SECRET_NAMES: frozenset[str] = frozenset(
    {"password", "passwd", "password_hash", "token", "api_key", "apikey", "key", "secret"}
)
"""Detail keys (normalised) that are refused wherever they appear."""

MAX_AUDIT_PAGE = 1000
_MAX_ACTION_LENGTH = 100
_MAX_TEXT_LENGTH = 1000

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[\s.\-]+")


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One dashboard mutation."""

    id: int
    ts_ms: int
    username: str
    action: str
    """What was done, e.g. ``user.create``."""
    target: str
    """What it was done to, e.g. a username or a client id; may be empty."""
    detail: dict[str, object]


# --- secrets ------------------------------------------------------------------------------------


def _normalise(name: str) -> str:
    """``apiKey``, ``API-Key`` and ``api key`` all become ``api_key``."""
    name = _CAMEL_BOUNDARY.sub("_", name)
    return _SEPARATORS.sub("_", name).lower().strip("_")


def _secret_name(name: str, value: object) -> bool:
    """Whether a detail entry named ``name`` with ``value`` may carry a secret."""
    normal = _normalise(name)
    if normal in SECRET_NAMES:
        return True
    could_hold_secret = isinstance(value, str | list | dict)
    return could_hold_secret and any(normal.endswith("_" + secret) for secret in SECRET_NAMES)


def _find_secret(detail: object) -> str | None:
    """The path of the first secret-named key in decoded JSON, or None."""
    stack: list[tuple[str, object]] = [("", detail)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for name, item in value.items():
                where = f"{path}.{name}" if path else str(name)
                if _secret_name(str(name), item):
                    return where
                stack.append((where, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None


# --- validation -------------------------------------------------------------------------------


def _check_text(value: str, what: str, *, required: bool, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    if required and not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{what} must be at most {limit} characters")
    return value


def _encode_detail(detail: Mapping[str, object] | None) -> str:
    """``detail`` as JSON; ValueError when it is not JSON or names a secret."""
    if detail is None:
        return "{}"
    if not isinstance(detail, Mapping):
        raise ValueError(f"detail must be a mapping, got {type(detail).__name__}")
    try:
        text = json.dumps(dict(detail), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"detail is not JSON-serialisable: {exc}") from None
    # Checked on the decoded JSON, exactly what would be stored: tuples, non-text keys and
    # objects JSON turns into text are all covered, and a cycle was refused above.
    where = _find_secret(json.loads(text))
    if where is not None:
        raise ValueError(f"detail must not contain secrets: {where!r} is named like one")
    return text


# --- writes and reads ----------------------------------------------------------------------------


def record_audit(
    conn: Connection,
    *,
    username: str,
    action: str,
    target: str = "",
    detail: Mapping[str, object] | None = None,
    now_ms: int,
) -> None:
    """Append one entry to the audit log; ValueError if ``detail`` names a secret."""
    username = _check_text(username, "username", required=False, limit=_MAX_TEXT_LENGTH)
    action = _check_text(action, "action", required=True, limit=_MAX_ACTION_LENGTH)
    target = _check_text(target, "target", required=False, limit=_MAX_TEXT_LENGTH)
    detail_json = _encode_detail(detail)
    conn.execute(
        "INSERT INTO audit_log (ts_ms, username, action, target, detail_json)"
        " VALUES (?, ?, ?, ?, ?)",
        (now_ms, username, action, target, detail_json),
    )


def list_audit(
    conn: Connection, *, limit: int = 100, before_id: int | None = None
) -> list[AuditRow]:
    """Up to ``limit`` entries, newest first; ``before_id`` pages on from the last one seen."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_AUDIT_PAGE:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_AUDIT_PAGE}, got {limit!r}")
    if before_id is not None and (isinstance(before_id, bool) or not isinstance(before_id, int)):
        raise ValueError(f"before_id must be a whole number, got {before_id!r}")
    select = "SELECT id, ts_ms, username, action, target, detail_json FROM audit_log"
    # Two statements rather than "?1 IS NULL OR id < ?1": each walks the rowid from the right end.
    if before_id is None:
        rows = conn.execute(select + " ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    else:
        rows = conn.execute(
            select + " WHERE id < ? ORDER BY id DESC LIMIT ?", (before_id, limit)
        ).fetchall()
    return [_row(row) for row in rows]


def _row(row: apsw.SQLiteValues) -> AuditRow:
    (id_, ts_ms, username, action, target, detail_json) = row
    if not isinstance(id_, int) or not isinstance(ts_ms, int):
        raise TypeError(f"expected integers from the database, got {id_!r}, {ts_ms!r}")
    detail = json.loads(str(detail_json))
    return AuditRow(
        id=id_,
        ts_ms=ts_ms,
        username=str(username),
        action=str(action),
        target=str(target),
        detail=detail if isinstance(detail, dict) else {"value": detail},
    )
