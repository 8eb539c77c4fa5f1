"""Dashboard overrides of a provider's file config, and its optional prepaid credit balance.

Plain functions of an APSW connection; writes run inside the caller's transaction (see
``storage.clients``). A NULL column means "as configured in the file". API keys are never stored
here: they come from the config file, the environment or systemd credentials only.
"""

from __future__ import annotations

import math
import unicodedata
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import apsw

from storage.clients import UNCHANGED, Unchanged
from storage.sql import Connection, bytewise, for_update
from storage.values import as_int, as_opt_float

__all__ = [
    "MAX_BASE_URL_LENGTH",
    "MAX_CONCURRENCY",
    "ProviderSettingsRow",
    "debit_credit",
    "get_provider_settings",
    "list_provider_settings",
    "put_provider_settings",
]

MAX_BASE_URL_LENGTH = 2000
MAX_CONCURRENCY = 10_000
_MAX_NAME_LENGTH = 200


@dataclass(frozen=True, slots=True)
class ProviderSettingsRow:
    """A provider's overrides; None: as configured."""

    provider: str
    enabled: bool | None
    base_url: str | None
    default_model: str | None
    max_concurrency: int | None
    credit_balance_usd: float | None
    """Prepaid credit left; None: not tracked. Each priced call decrements it."""
    low_credit_threshold_usd: float | None
    """Warn when the balance falls below this; None: warn when it falls below zero."""
    updated_at: int


_SELECT = """
SELECT provider, enabled, base_url, default_model, max_concurrency, credit_balance_usd,
       low_credit_threshold_usd, updated_at
FROM provider_settings
"""


# --- validation -------------------------------------------------------------------------------


def _check_text(value: str, what: str) -> str:
    """``value`` unless it is empty, longer than 200 characters or has control characters."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text")
    if not value or len(value) > _MAX_NAME_LENGTH:
        raise ValueError(f"{what} must be 1 to {_MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in value):
        raise ValueError(f"{what} must not contain control characters")
    if value != value.strip():
        raise ValueError(f"{what} must not start or end with spaces")
    return value


def _check_base_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host and without user:password."""
    if not isinstance(value, str):
        raise ValueError("base_url must be text")
    if len(value) > MAX_BASE_URL_LENGTH:
        raise ValueError(f"base_url must be at most {MAX_BASE_URL_LENGTH} characters")
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("base_url must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"base_url is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("base_url must start with http:// or https://")
    # Credentials in a URL end up in logs and in the dashboard: keys belong in the config.
    if "@" in parts.netloc:
        raise ValueError("base_url must not contain a user name or password")
    if not parts.hostname:
        raise ValueError("base_url must name a host")
    return value


def _check_bool(value: bool, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r}")
    return value


def _check_concurrency(value: int) -> int:
    # bool is an int subclass: True would silently become a limit of 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"max_concurrency must be a whole number, got {value!r}")
    if not 1 <= value <= MAX_CONCURRENCY:
        raise ValueError(f"max_concurrency must be between 1 and {MAX_CONCURRENCY}, got {value}")
    return value


def _check_amount(value: float, what: str, *, minimum: float | None = None) -> float:
    """``value`` as a float unless it is not a finite number (or below ``minimum``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, got {value!r}")
    amount = float(value)
    if not math.isfinite(amount):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if minimum is not None and amount < minimum:
        raise ValueError(f"{what} must be at least {minimum:g}, got {value!r}")
    return amount


# --- rows ---------------------------------------------------------------------------------------


def _row(row: apsw.SQLiteValues) -> ProviderSettingsRow:
    (provider, enabled, base_url, model, concurrency, balance, threshold, updated) = row
    return ProviderSettingsRow(
        provider=str(provider),
        enabled=None if enabled is None else bool(enabled),
        base_url=None if base_url is None else str(base_url),
        default_model=None if model is None else str(model),
        max_concurrency=None if concurrency is None else as_int(concurrency),
        credit_balance_usd=as_opt_float(balance),
        low_credit_threshold_usd=as_opt_float(threshold),
        updated_at=as_int(updated),
    )


# --- reads --------------------------------------------------------------------------------------


def get_provider_settings(conn: Connection, provider: str) -> ProviderSettingsRow | None:
    """A provider's overrides, or None when it has none."""
    rows = conn.execute(_SELECT + " WHERE provider = ?", (provider,)).fetchall()
    return _row(rows[0]) if rows else None


def list_provider_settings(conn: Connection) -> list[ProviderSettingsRow]:
    """Every provider with overrides, by name."""
    return [
        _row(row)
        for row in conn.execute(_SELECT + " ORDER BY " + bytewise(conn, "provider")).fetchall()
    ]


# --- writes -------------------------------------------------------------------------------------


def put_provider_settings(
    conn: Connection,
    provider: str,
    *,
    enabled: bool | Unchanged | None = UNCHANGED,
    base_url: str | Unchanged | None = UNCHANGED,
    default_model: str | Unchanged | None = UNCHANGED,
    max_concurrency: int | Unchanged | None = UNCHANGED,
    credit_balance_usd: float | Unchanged | None = UNCHANGED,
    low_credit_threshold_usd: float | Unchanged | None = UNCHANGED,
    now_ms: int,
) -> ProviderSettingsRow:
    """Create or change a provider's overrides, only the fields given; None: back to the file.

    Nothing given: an existing row stays as it is (``updated_at`` too), a missing one is created
    empty.
    """
    provider = _check_text(provider, "provider")
    changes: dict[str, object] = {}
    if enabled is not UNCHANGED:
        changes["enabled"] = None if enabled is None else int(_check_bool(enabled, "enabled"))
    if base_url is not UNCHANGED:
        changes["base_url"] = None if base_url is None else _check_base_url(base_url)
    if default_model is not UNCHANGED:
        changes["default_model"] = (
            None if default_model is None else _check_text(default_model, "default_model")
        )
    if max_concurrency is not UNCHANGED:
        changes["max_concurrency"] = (
            None if max_concurrency is None else _check_concurrency(max_concurrency)
        )
    if credit_balance_usd is not UNCHANGED:
        changes["credit_balance_usd"] = (
            None
            if credit_balance_usd is None
            else _check_amount(credit_balance_usd, "credit_balance_usd")
        )
    if low_credit_threshold_usd is not UNCHANGED:
        changes["low_credit_threshold_usd"] = (
            None
            if low_credit_threshold_usd is None
            else _check_amount(low_credit_threshold_usd, "low_credit_threshold_usd", minimum=0.0)
        )
    if changes:
        # Column names come from the fixed set above, never from the caller.
        columns = ", ".join(changes)
        marks = ", ".join("?" for _ in changes)
        assignments = ", ".join(f"{column} = excluded.{column}" for column in changes)
        conn.execute(
            f"INSERT INTO provider_settings (provider, {columns}, updated_at)"
            f" VALUES (?, {marks}, ?) ON CONFLICT (provider)"
            f" DO UPDATE SET {assignments}, updated_at = excluded.updated_at",
            (provider, *changes.values(), now_ms),
        )
    else:
        conn.execute(
            "INSERT INTO provider_settings (provider, updated_at) VALUES (?, ?)"
            " ON CONFLICT (provider) DO NOTHING",
            (provider, now_ms),
        )
    row = get_provider_settings(conn, provider)
    if row is None:  # pragma: no cover - the upsert above guarantees a row
        raise RuntimeError(f"provider settings for {provider!r} vanished")
    return row


def debit_credit(
    conn: Connection, charges: Mapping[str, float], *, now_ms: int
) -> list[tuple[str, float, float | None]]:
    """Subtract each provider's cost from its balance, where a balance is set.

    Returns ``(provider, new_balance, threshold)`` for each provider whose balance crossed from at
    or above its threshold to below it in this call, so the warning fires once, not on every call
    after. Without a threshold the line is zero (running out), reported with ``threshold`` None.
    Charges that are not finite and positive are ignored: a NaN would poison the balance for good,
    and an unpriced call costs nothing here.
    """
    crossed: list[tuple[str, float, float | None]] = []
    for provider, cost in charges.items():
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            continue
        if not (math.isfinite(cost) and cost > 0):
            continue
        rows = conn.execute(
            "SELECT credit_balance_usd, low_credit_threshold_usd FROM provider_settings"
            " WHERE provider = ? AND credit_balance_usd IS NOT NULL" + for_update(conn),
            (provider,),
        ).fetchall()
        if not rows:
            continue
        before, threshold = (as_opt_float(value) for value in rows[0])
        if before is None:  # pragma: no cover - the WHERE clause excludes NULL
            continue
        after = before - float(cost)
        conn.execute(
            "UPDATE provider_settings SET credit_balance_usd = ?, updated_at = ?"
            " WHERE provider = ?",
            (after, now_ms, provider),
        )
        line = 0.0 if threshold is None else threshold
        if before >= line > after:
            crossed.append((provider, after, threshold))
    return crossed
